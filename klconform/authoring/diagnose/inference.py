"""`klconform diagnose`: infer an unknown KL function's convention from probes, as a record.

The function is called on designed float64 arrays at every rank it takes (probes), through
the keywords its signature offers; every reading of it (hypotheses: argument order, spaces,
class axis, temperature, mask, and whether it is a KL at all) predicts a different answer,
and the one whose residual is within the probing dtype's tolerance wins (fitting). Two that
fit equally are reported as ambiguous, never guessed between. A bug is never explained away
as a convention: it is a finding, left out of the record (outputs, behaviour), so that the
run that follows fails on it.
"""

import inspect
import os
import re
import sys
from dataclasses import replace

import numpy as np

from klconform.adapters.arrays import BRIDGE_MODULES, bridge
from klconform.adapters.convention import resolve
from klconform.authoring.diagnose.behaviour import (
    TINY_PREDICTION,
    infer_autograd,
    infer_dtypes,
    infer_ranks,
    look_for_bugs,
)
from klconform.authoring.diagnose.evidence import Diagnosis, show
from klconform.authoring.diagnose.fitting import FIT_TOLERANCE, infer_arguments
from klconform.authoring.diagnose.outputs import (
    DEFAULT,
    UNKNOWN_REDUCTION,
    accepted_names,
    finest,
    infer_log_target,
    infer_meanings,
    names_it_knows,
)
from klconform.authoring.diagnose.probes import BASE_RANK, probe_set
from klconform.authoring.diagnose.subject import (
    DiagnoseError,
    Prober,
    Subject,
    array_candidates,
    keras_backend,
    read_signature,
)
from klconform.spec.conventions import MEANING_TEXT, Meaning, Role, record_from_fields

# The temperature probed where the keyword's default is 1 (or absent): T = 1 hides it.
PROBE_TEMPERATURE = 2.0


def diagnose(function_path, assume=None, device="cpu", call=None) -> Diagnosis:
    """Probe the function or loss class MODULE:ATTR on `device` and infer its record.
    `assume` (first, prediction, target, axis, scaled, output: render.ASSUMABLE) settles what
    the probes leave ambiguous, and what the function contradicts of it is a finding; `call`
    gives keywords passed on every call (the record's `call:`)."""
    assume, fixed = dict(assume or {}), dict(call or {})
    _prepare_keras(function_path)
    function = resolve(function_path, function_path)
    if not callable(function):
        raise DiagnoseError(f"diagnose: {function_path} is not callable")
    diagnosis = Diagnosis(function_path)
    signature = read_signature(function)
    missing = [name for name in signature.required if name not in fixed]
    if missing:
        raise DiagnoseError(
            f"diagnose: {function_path} requires {', '.join(map(repr, missing))}, which "
            f"klconform cannot choose: pass --call {missing[0]}=VALUE")
    keywords = {}
    if signature.temperature and signature.temperature not in fixed:
        default = signature.temperature_default
        keywords[signature.temperature] = PROBE_TEMPERATURE if default in (None, 1.0) \
            else default
    probe_temperature = keywords.get(signature.temperature, 1.0)
    prober, tolerance = _find_arrays(function, function_path, device, signature, fixed,
                                     keywords, diagnosis)

    reading = None
    for mask in _forms_from(signature, prober.mask):
        attempt = Diagnosis(function_path)
        candidate = Prober(prober.subject, prober.dtype, mask, keywords)
        variants, names, takes_anything, name_lines = _observe(candidate, signature)
        if not any(outcome.ok for _, outcome in variants[None]):
            continue
        hypothesis, judged = infer_arguments(variants, tolerance, assume, attempt, signature,
                                             probe_temperature)
        if hypothesis is not None or reading is None:
            reading = (attempt, candidate, variants, names, takes_anything, name_lines,
                       hypothesis, judged)
        if hypothesis is not None:
            break
    attempt, prober, variants, names, takes_anything, name_lines, hypothesis, tolerance = \
        reading
    diagnosis.absorb(attempt)
    if prober.mask:
        diagnosis.note("mask", ", ".join(f"{k}={v}" for k, v in prober.mask.items()))
    if hypothesis is None:
        return diagnosis
    if diagnosis.not_a_kl:
        if signature.beta and signature.beta not in fixed:
            diagnosis.ambiguities.append(
                f"pass --call {signature.beta}=0.0 for KL(target || prediction) or "
                f"--call {signature.beta}=1.0 for KL(prediction || target)")
        return diagnosis
    if signature.reduction and prober.mask:
        # A masked loss's reduction names are its own token-level API (TRL's 'batchmean' is
        # a mean over kept tokens): it is judged through its default call, as written.
        diagnosis.note("reduction names", f"keyword {signature.reduction!r} left at its "
                       "default: a masked loss is judged through its default call", name_lines)
        names = []
    elif signature.reduction:
        if takes_anything:
            names = names_it_knows(variants, names, hypothesis, tolerance)
            diagnosis.find(
                f"reduction={UNKNOWN_REDUCTION!r} is accepted without an error (an unknown "
                f"reduction name is not rejected); names whose output is the same as that "
                f"one's are taken as unknown to it", "invalid-reduction-rejected")
        diagnosis.note("reduction names", f"keyword {signature.reduction!r}: "
                       + (", ".join(map(repr, names)) or "no name accepted"), name_lines)
    meanings = infer_meanings(variants, hypothesis, tolerance, signature, names, diagnosis)
    # The gradients are checked against what the function computes, not what was meant.
    measured = meanings and (meanings.get(meanings.get(DEFAULT)) if names
                             else meanings.get(DEFAULT))
    if not names:
        meanings = _output_as_meant(meanings, assume.get("output"), prober, variants,
                                    diagnosis)
    if meanings is None:
        return diagnosis
    fields = _record_fields(function, function_path, prober, hypothesis, signature, names,
                            meanings, keywords, fixed, tolerance, diagnosis)
    accepted_ranks = {probe.rank for probe, outcome in variants[None] if outcome.ok}
    fields["ranks"] = infer_ranks(prober, accepted_ranks, diagnosis) or None
    # What the run does is judged as the run calls it: at T = 1 where T is a keyword.
    as_run = Prober(prober.subject, prober.dtype, prober.mask,
                    {name: 1.0 for name in keywords})
    at_run = replace(hypothesis, temperature=1.0) if keywords else hypothesis
    working, fields["result_dtype"] = infer_dtypes(as_run, {}, diagnosis)
    fields["dtypes"] = {device: working}
    # Gradients at the probing temperature: a missing 1 / T does not show at T = 1.
    fields["autograd"], detached = infer_autograd(prober, hypothesis, {}, diagnosis,
                                                  measured or None)
    fields["no_gradient"] = list(detached) or None
    look_for_bugs(as_run, at_run, finest(meanings, signature), tolerance, diagnosis)
    if diagnosis.imprecise is not None:
        _explain_imprecision(diagnosis, hypothesis, variants[None])
    diagnosis.record = record_from_fields(fields, source=f"klconform diagnose {function_path}")
    return diagnosis


# What an output that is not the meaning stated breaks.
OUTPUT_CLAIM = {Meaning.MEAN_ROWS: "token-mean-divisor", Meaning.MEAN_BATCH: "reduction-batchmean",
                Meaning.SUM: "reduction-sum", Meaning.MEAN_ELEMENTS: "reduction-mean",
                Meaning.ROWS: "none-pointwise", Meaning.ELEMENTWISE: "none-pointwise"}


def _output_as_meant(meanings, meant, prober, variants, diagnosis):
    """The plain output's meaning, where --assume output=MEANING or the mask says what it
    must be: a masked loss that takes only 2-D rows and divides by size(0) counts the
    masked rows (its size(0) is every row)."""
    found = meanings.get(DEFAULT) if meanings else None
    ranks = {probe.rank for probe, outcome in variants[None] if outcome.ok}
    if meant is None and prober.mask and found == Meaning.MEAN_BATCH and ranks == {2}:
        diagnosis.find("a masked loss on (rows, classes) only that divides by size(0): the "
                       "masked rows are counted by the divisor", "mask-excludes-divisor")
        return {**meanings, DEFAULT: Meaning.MEAN_ROWS}
    if meant is None or found == meant:
        return meanings
    diagnosis.find(f"--assume output={meant}, but the output is "
                   + (MEANING_TEXT[found] if found else "none of the meanings"),
                   OUTPUT_CLAIM[Meaning(meant)])
    if meanings is None:
        diagnosis.findings = [f for f in diagnosis.findings
                              if not f.startswith("its output matches no meaning")]
    return {**(meanings or {}), DEFAULT: Meaning(meant)}


def _explain_imprecision(diagnosis, hypothesis, plain):
    """A reading that fits only nearly: float32 inside (the float64 results are float32
    numbers, or nothing else shows), or an epsilon or a clip (it shows on a tiny prediction,
    far above the residual of the plain probes)."""
    outputs = [np.asarray(outcome.value) for _, outcome in plain if outcome.ok]
    float32_values = all(np.array_equal(v.astype(np.float32).astype(np.float64), v)
                         for v in outputs)
    edge = any(finding.startswith(f"on {TINY_PREDICTION}") for finding in diagnosis.findings)
    off = f"every output is {show(diagnosis.imprecise)} (relative) off {hypothesis.describe()}"
    if float32_values or not edge:
        diagnosis.find(f"computes at float32's accuracy: {off}"
                       + (", and the float64 results are float32 numbers" if float32_values
                          else ""), "accuracy-in-dtype")
    else:
        diagnosis.find(f"{off}: an epsilon or a clip inside (it shows on {TINY_PREDICTION})",
                       "none-pointwise")


def _forms_from(signature, first):
    forms = signature.mask_forms()
    return [first] + [form for form in forms if form != first]


def _observe(prober, signature):
    """(variants: reduction name or None -> [(probe, outcome)], names accepted, whether an
    unknown name is accepted, evidence lines)."""
    probes = probe_set(masked=prober.mask is not None)
    variants = {None: prober.observe(probes)}
    # Names are probed on what the plain call accepts (all probes if it accepts none).
    usable = [probe for probe, outcome in variants[None] if outcome.ok] or probes
    names, takes_anything, lines = [], False, []
    if signature.reduction:
        base = [probe for probe in usable if probe.rank == BASE_RANK] or usable[:4]
        names, takes_anything, lines = accepted_names(prober, signature, base)
        names = names + ([UNKNOWN_REDUCTION] if takes_anything else [])
        for name in names:
            variants[name] = prober.observe(usable, **{signature.reduction: name})
    return variants, names, takes_anything, lines


def _record_fields(function, function_path, prober, hypothesis, signature, names, meanings,
                   keywords, fixed, tolerance, diagnosis):
    fields = {
        "name": _record_name(function_path),
        "description": f"{function_path}, convention inferred by klconform diagnose",
        "loss_class" if inspect.isclass(function) else "function": function_path,
        "arrays": prober.subject.arrays,
        "arguments": _order(hypothesis, diagnosis.assumed),
        "spaces": dict(zip((Role.PREDICTION, Role.TARGET), hypothesis.spaces, strict=True)),
    }
    setup = {}
    if (getattr(function, "__module__", None) or "").split(".")[0] == "keras":
        # keras reads its backend once, at import: the run must import it the same way.
        setup["environment"] = {"KERAS_BACKEND": keras_backend()}
    if prober.subject.arrays == "jax":
        setup["jax_enable_x64"] = True
        # XLA compiles every operation for each new input shape: the run's properties then
        # draw from a fixed set of shapes (jax's run 544 s to 117 s, benchmarks/RESULTS.md).
        fields["compiles_per_shape"] = True
    fields["setup"] = setup or None
    fields["log_target"] = infer_log_target(prober, function_path, hypothesis, meanings,
                                            signature, tolerance, diagnosis)
    if signature.reduction and names:
        default = meanings.pop(DEFAULT)
        fields["reduction"] = {"keyword": signature.reduction,
                               **({"default": default} if default is not None else {}),
                               "names": meanings}
    else:
        fields["output"] = meanings[DEFAULT]
    if signature.axis:
        fields["axis"] = {"keyword": signature.axis, "value": signature.axis_default}
    elif int(diagnosis.assumed.get("axis", hypothesis.axis)) != -1:
        fields["axis"] = {"value": int(diagnosis.assumed.get("axis", hypothesis.axis))}
    fields["temperature"] = _temperature(hypothesis, signature, keywords, diagnosis)
    fields["mask"] = prober.mask
    fields["call"] = fixed or None
    return fields


def _order(hypothesis, assumed):
    """The argument order the record states: the fitted one, or the one --assume stated and
    the function contradicts (so that the run fails `roles`)."""
    if "first" not in assumed:
        return list(hypothesis.order)
    first = Role(assumed["first"])
    return [first, next(role for role in Role if role != first)]


def _temperature(hypothesis, signature, keywords, diagnosis):
    if signature.temperature and signature.temperature in keywords:
        default = signature.temperature_default
        given = {"keyword": signature.temperature,
                 **({"value": default} if default is not None else {})}
        if not hypothesis.tempered:
            diagnosis.find(f"{signature.temperature}={keywords[signature.temperature]:g} "
                           "changes nothing: the temperature is ignored",
                           "temperature-scaling")
            return {**given, "scaled": True}
        return {**given, "scaled": diagnosis.assumed.get("scaled", "yes" if hypothesis.scaled
                                                         else "no") == "yes"}
    if hypothesis.tempered:
        return {"value": hypothesis.temperature, "scaled": hypothesis.scaled}
    return None


def _record_name(function_path):
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", function_path.replace(":", "."))
    return name.strip("-._") or "diagnosed"


def _prepare_keras(function_path):
    """keras on jax computes in 64 bits only if jax's 64-bit mode precedes keras's import
    (as a record's setup arranges for `run`)."""
    if function_path.split(".")[0].split(":")[0] == "keras" and "keras" not in sys.modules \
            and os.environ.get("KERAS_BACKEND") == "jax" and "jax" in BRIDGE_MODULES:
        try:
            bridge("jax").setup({"jax_enable_x64": True})
        except ImportError:
            pass  # keras's own import then says what is missing


def _find_arrays(function, function_path, device, signature, fixed, keywords, diagnosis):
    """(Prober, fit tolerance) for the first array library the function takes and returns;
    the tolerance is the result's dtype's (a float64 call that returns float32, as keras's
    loss classes do, is judged at float32's)."""
    tried = []
    for arrays in array_candidates(function):
        try:
            subject = Subject(function, arrays, device, fixed)
        except Exception as error:  # a library that does not set up: say so, try the next
            tried.append(f"{arrays}: does not set up ({type(error).__name__})")
            continue
        for dtype in ("float64", "float32"):
            for mask in signature.mask_forms():
                prober = Prober(subject, dtype, mask, keywords)
                probe, outcome = prober.first_accepted(probe_set(masked=mask is not None))
                if outcome is not None:
                    tried.append(f"{arrays} {dtype} on {device}: takes them, returns "
                                 f"{outcome.dtype} (probe {probe.describe()})")
                    judged = outcome.dtype if outcome.dtype in FIT_TOLERANCE else dtype
                    diagnosis.note("arrays", f"{arrays} (probing in {dtype}, fit judged at "
                                   f"{judged})", tried)
                    return prober, FIT_TOLERANCE[judged]
            base = probe_set((BASE_RANK,), masked=mask is not None)[0]
            error = prober.call(base.first, base.second, base.kept).error
            tried.append(f"{arrays} {dtype}: {error}")
    raise DiagnoseError(f"diagnose: {function_path} takes none of "
                        f"{', '.join(array_candidates(function))} arrays on {device} at any "
                        "rank from 1-D to 4-D: " + "; ".join(tried))
