"""The diagnosis as text, the record as a file, and the `klconform diagnose` command."""

import os
import sys
import time

import yaml

from klconform.authoring.diagnose.hypotheses import MEANINGS, ROLES, SPACES
from klconform.authoring.diagnose.inference import diagnose
from klconform.authoring.diagnose.subject import DiagnoseError
from klconform.errors import KLConformError
from klconform.spec.conventions import record_yaml

# What the probes cannot tell from a bug, the user states: the order and spaces, the class
# axis, the T**2 factor, the output's meaning (a token mean, say).
ASSUMABLE = {"prediction": SPACES, "target": SPACES, "first": ROLES, "axis": ("-1", "1"),
             "scaled": ("yes", "no"), "output": MEANINGS}


def render(diagnosis) -> str:
    lines = [f"diagnose {diagnosis.function}"]
    for item in diagnosis.evidence:
        lines.append(f"  {item.topic}: {item.conclusion}")
        lines += [f"      {line}" for line in item.lines]
    if diagnosis.confidence:
        lines.append(f"  confidence: {diagnosis.confidence}")
    if diagnosis.not_a_kl:
        lines.append(f"  NOT A KL: it computes {diagnosis.not_a_kl}")
    for finding in diagnosis.findings:
        lines.append(f"  FINDING (a bug, not a convention; not in the record): {finding}")
    for ambiguity in diagnosis.ambiguities:
        lines.append(f"  UNDECIDED: {ambiguity}")
    return "\n".join(lines) + "\n"


def record_text(record) -> str:
    data = record.data
    header = ("# Written by klconform diagnose; check it, then\n"
              f"#   klconform run --impl {data.get('function') or data['loss_class']} "
              "--convention THIS_FILE\n")
    if data.get("compiles_per_shape") and not data.get("jit"):
        # Whether the training code compiles the function is not something a probe can see,
        # and the jitted program may round otherwise: the user says it.
        header += ("# If your code calls it under jax.jit (a train step usually does), add\n"
                   "#   jit: true\n"
                   "# so that the run calls it so too, one compiled program per shape instead "
                   "of one\n# per operation (a run measured 10 s against 42 s).\n")
    return record_yaml(record, header=header)


def parse_assumptions(pairs):
    """["prediction=logits", ...] -> {"prediction": "logits"}; DiagnoseError on a bad one."""
    assume = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in ASSUMABLE or value not in ASSUMABLE[key]:
            raise DiagnoseError(
                f"diagnose: --assume {pair!r}: expected one of "
                + ", ".join(f"{k}={'|'.join(v)}" for k, v in ASSUMABLE.items()))
        assume[key] = value
    return assume


def parse_calls(pairs):
    """["beta=0.0", ...] -> {"beta": 0.0}: each value read as one YAML scalar (safely)."""
    fixed = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        try:
            value = yaml.safe_load(text) if equals else None
        except yaml.YAMLError:
            value = None
        if not name.isidentifier() or not equals or not isinstance(
                value, (bool, int, float, str)):
            raise DiagnoseError(f"diagnose: --call {pair!r}: expected NAME=VALUE with a "
                                "number, a boolean or a string (beta=0.0)")
        fixed[name] = value
    return fixed


def diagnose_command(function_path, write_path, assume_pairs, out=None, device="cpu",
                     call_pairs=()):
    """The CLI: print the evidence; write the record if asked and one was inferred.
    Exit 0: inferred, no finding; 1: inferred with findings (bugs), undecided, or not a KL;
    2: the function could not be probed or the record not written."""
    out = out or sys.stdout
    if ":" not in function_path:
        print(f"diagnose: --impl {function_path!r}: expected MODULE:ATTR", file=sys.stderr)
        return 2
    # Like `klconform run` (python -m pytest), a module in the current directory is found.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    started = time.perf_counter()
    try:
        result = diagnose(function_path, parse_assumptions(assume_pairs), device,
                          parse_calls(call_pairs))
    except KLConformError as error:
        print(str(error) if str(error).startswith("diagnose") else f"diagnose: {error}",
              file=sys.stderr)
        return 2
    out.write(render(result))
    out.write(f"  took {time.perf_counter() - started:.1f} s\n")
    if result.record is None:
        out.write("diagnose: no record inferred\n")
        return 1
    text = record_text(result.record)
    if write_path:
        try:
            with open(write_path, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as error:
            print(f"diagnose: cannot write {write_path}: {error}", file=sys.stderr)
            return 2
        out.write(f"diagnose: wrote {write_path}; klconform run --impl {function_path} "
                  f"--convention {write_path}\n")
    else:
        out.write("record (--write FILE to save it):\n" + text)
    return 1 if result.findings else 0
