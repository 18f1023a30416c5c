"""`klconform diagnose`: infer an unknown KL function's convention from probes, as a record.

The function is called on small float64 arrays designed so that every hypothesis about its
convention predicts a different answer: which positional argument is the prediction, the
space of each (probabilities, log-probabilities, logits), and what each output computes.
Each hypothesis's prediction comes from the float64 oracle's pointwise terms
(klconform.oracle.float64.pointwise) and the record's meanings (klconform.spec.conventions);
the hypothesis whose residual is within the tolerance of the probing dtype wins. Two that
fit equally are reported as ambiguous, never guessed between.

A bug is never explained away as a convention: a standard reduction name keeps its standard
meaning relative to the output unit ('batchmean' = total / size(0) whatever 'mean' does), and
a clip, an epsilon, a renormalisation or a swallowed NaN is reported as a finding and left
out of the record, so that the run that follows fails on it.
"""

import inspect
import math
import re
import warnings
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from klconform.adapters.arrays import BRIDGE_MODULES, bridge
from klconform.adapters.convention import resolve
from klconform.constants import DTYPES
from klconform.errors import KLConformError
from klconform.oracle.float64 import pointwise
from klconform.spec.conventions import MEANING_TEXT, divisor

SPACES = ("probabilities", "log-probabilities", "logits")
ROLES = ("prediction", "target")
MEANINGS = ("elementwise", "rows", "sum", "mean-elements", "mean-rows", "mean-batch")
# What a standard reduction name must compute, relative to the function's finest output.
STANDARD_MEANING = {
    "none": {"elementwise": "elementwise", "rows": "rows"},
    "sum": {"elementwise": "sum", "rows": "sum"},
    "mean": {"elementwise": "mean-elements", "rows": "mean-rows"},
    "batchmean": {"elementwise": "mean-batch", "rows": "mean-batch"},
}
# Names worth trying when neither the signature nor the docstring lists the accepted values.
USUAL_REDUCTION_NAMES = ("none", "sum", "mean", "batchmean", "sum_over_batch_size")
UNKNOWN_REDUCTION = "klconform-no-such-reduction"
# Relative residual under which a hypothesis fits. The designed pairs make wrong hypotheses
# differ by more than DESIGNED_SEPARATION relative; the tolerance only has to absorb the
# probing dtype's rounding (and float64 computed through float32 transcendental
# approximations, as mlx does).
FIT_TOLERANCE = {"float64": 1e-6, "float32": 1e-3}
DESIGNED_SEPARATION = 1e-2
# Where no hypothesis fits, one that alone comes this close is the convention, and its
# residual a finding (an epsilon or a clip on every input), not a reason to give up.
NEAR_FIT = 1e-2
# How close a reduced-precision result must be to count that dtype as working.
DTYPE_TOLERANCE = {"float64": 1e-6, "float32": 1e-4, "float16": 2e-2, "bfloat16": 1e-1}
PROBE_SHAPES = ((3,), (2, 3), (2, 3, 4))
# Modules whose functions take their own arrays: that bridge is tried first.
HOME_ARRAYS = {"torch": "torch", "torchmetrics": "torch", "liger_kernel": "torch",
               "jax": "jax", "optax": "jax", "flax": "jax", "mlx": "mlx",
               "paddle": "paddle", "mindspore": "mindspore", "tensorflow": "tensorflow"}


class DiagnoseError(KLConformError):
    """The function cannot be probed at all (not callable, no array type works)."""


# -- the designed inputs --------------------------------------------------------------------

def _rows(shape, seed, offset):
    """Probability rows (last axis sums to 1), asymmetric and far from uniform."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.15, 1.0, size=shape) ** 3 + offset
    return raw / np.sum(raw, axis=-1, keepdims=True)


@dataclass(frozen=True)
class Probe:
    """Two arrays handed to the function as its first and second positional arguments."""
    kind: tuple           # the space each array is normalised in, e.g. ("probabilities", ...)
    first: np.ndarray
    second: np.ndarray

    @property
    def shape(self):
        return self.first.shape

    def describe(self):
        return f"{'x'.join(map(str, self.shape)) or 'scalar'} ({self.kind[0]}, {self.kind[1]})"


def probes_for(shape):
    """Each argument normalised as probabilities or as log-probabilities, in all four pairs:
    a function that validates its arguments accepts at least one pair."""
    found = []
    for first_space, second_space in product(("probabilities", "log-probabilities"), repeat=2):
        first, second = _rows(shape, 11, 0.02), _rows(shape, 23, 0.05)
        found.append(Probe(
            (first_space, second_space),
            np.log(first) if first_space == "log-probabilities" else first,
            np.log(second) if second_space == "log-probabilities" else second))
    return found


# -- hypotheses -------------------------------------------------------------------------------

def _log_softmax(values):
    shifted = values - np.max(values, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


@dataclass(frozen=True)
class Hypothesis:
    order: tuple          # roles of the first and second positional arguments
    spaces: tuple         # (prediction space, target space)

    def terms(self, first, second):
        """KL(P || Q) terms of the arrays read this way, by the float64 oracle."""
        by_role = dict(zip(self.order, (first, second), strict=True))
        prediction_space, target_space = self.spaces
        with np.errstate(all="ignore"):
            prediction = by_role["prediction"]
            log_q = {"probabilities": np.log(prediction), "log-probabilities": prediction,
                     "logits": _log_softmax(prediction)}[prediction_space]
            target = by_role["target"]
            if target_space == "probabilities":
                return pointwise(log_q, target)
            log_p = target if target_space == "log-probabilities" else _log_softmax(target)
            return pointwise(log_q, log_p, log_target=True)

    def describe(self):
        return ", ".join(f"{role} ({self.spaces[ROLES.index(role)]})" for role in self.order)


ALL_HYPOTHESES = tuple(Hypothesis(order, spaces) for order in (ROLES, ROLES[::-1])
                       for spaces in product(SPACES, repeat=2))


def expected_output(terms, meaning, shape):
    if meaning == "elementwise":
        return terms
    if meaning == "rows":
        return np.sum(terms, axis=-1)
    return np.asarray(np.sum(terms) / divisor(meaning, shape))


def residual(observed, expected):
    """Largest error relative to the size of the expected output; inf on a shape mismatch
    or a non-finite value where a finite one belongs."""
    observed, expected = np.asarray(observed), np.asarray(expected)
    if observed.shape != expected.shape:
        return math.inf
    if not np.all(np.isfinite(observed)):
        return math.inf
    scale = max(float(np.max(np.abs(expected))), 1e-300)
    return float(np.max(np.abs(observed - expected))) / scale


# -- calling the function ---------------------------------------------------------------------

@dataclass
class Outcome:
    value: np.ndarray = None
    dtype: str = None
    error: str = None

    @property
    def ok(self):
        return self.error is None


class Subject:
    """The function (or loss class) under diagnosis, called through one array bridge.

    A loss class takes its reduction and flags as constructor keywords and is then called
    on the two arrays; a function takes them as keywords of the call."""

    def __init__(self, function, arrays, device="cpu"):
        self.function = function
        self.arrays = arrays
        self.device = device
        self.bridge = bridge(arrays)
        if arrays == "jax":
            self.bridge.setup({"jax_enable_x64": True})

    @staticmethod
    def invoke(target, a, b, keywords):
        if inspect.isclass(target):
            return target(**keywords)(a, b)
        return target(a, b, **keywords)

    def call(self, first, second, dtype="float64", function=None, **keywords):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = self.bridge.from_numpy(first, dtype, self.device)
                b = self.bridge.from_numpy(second, dtype, self.device)
                result = self.invoke(function or self.function, a, b, keywords)
                value, result_dtype, _ = self.bridge.to_numpy(result)
        except Exception as error:  # the function's own errors are evidence, not crashes
            return Outcome(error=f"{type(error).__name__}: {' '.join(str(error).split())[:120]}")
        return Outcome(np.asarray(value, dtype=np.float64), result_dtype)

    def gradients(self, first, second, **keywords):
        a = self.bridge.from_numpy(first, "float64", self.device)
        b = self.bridge.from_numpy(second, "float64", self.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.bridge.gradients(
                lambda x, y: self.invoke(self.function, x, y, keywords), a, b)


def array_candidates(function):
    """Array libraries to try, the function's own first, then numpy, then the rest."""
    import importlib.util

    home = _home_arrays(function)
    order = [home] if home else []
    order += [name for name in ("numpy", "torch", "jax", "mlx", "paddle", "mindspore",
                                "tensorflow") if name not in order]
    return [name for name in order if name in BRIDGE_MODULES
            and importlib.util.find_spec(name) is not None]


def _home_arrays(function):
    """The array library a function's own package computes with: keras's is its backend
    (KERAS_BACKEND, fixed when keras was imported)."""
    top = (getattr(function, "__module__", None) or "").split(".")[0]
    if top == "keras":
        return keras_backend()
    return HOME_ARRAYS.get(top)


def keras_backend():
    import sys

    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None


# -- the signature and the docstring ----------------------------------------------------------

@dataclass
class Signature:
    reduction: str = None            # the reduction keyword, if any
    reduction_default: object = None
    flags: dict = field(default_factory=dict)   # boolean keyword -> its default
    axis: str = None                 # the class-axis keyword, if any
    documented_names: tuple = ()     # quoted words of the docstring


def read_signature(function):
    """The keywords a function takes after its two arrays, or a loss class's constructor
    keywords (through the base classes' where a constructor passes **kwargs on, as
    LigerKLDIVLoss does to nn.KLDivLoss)."""
    found = Signature()
    try:
        parameters = _keyword_parameters(function)
    except (TypeError, ValueError):
        return found
    named = [p.name for p in parameters]
    # 'reduction' itself, else a string-valued keyword named like it (not torch's legacy
    # boolean `reduce`).
    wanted = "reduction" if "reduction" in named else next(
        (p.name for p in parameters if "reduc" in p.name.lower()
         and isinstance(p.default, str)), None)
    for parameter in parameters:
        default = parameter.default
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.name == wanted:
            found.reduction = parameter.name
            found.reduction_default = None if default is parameter.empty else default
        elif isinstance(default, bool):
            found.flags[parameter.name] = default
        elif parameter.name in ("axis", "dim") and (default is parameter.empty
                                                    or isinstance(default, int)):
            found.axis = parameter.name
    doc = inspect.getdoc(function) or ""
    quoted = re.findall(r"""[`'"]{1,2}([A-Za-z_][A-Za-z0-9_]*)[`'"]{1,2}""", doc)
    found.documented_names = tuple(dict.fromkeys(quoted))
    return found


def _keyword_parameters(function):
    if not inspect.isclass(function):
        return list(inspect.signature(function).parameters.values())[2:]
    found = {}
    for klass in function.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        for parameter in parameters:
            found.setdefault(parameter.name, parameter)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return list(found.values())


# -- the diagnosis ----------------------------------------------------------------------------

@dataclass
class Evidence:
    topic: str
    conclusion: str
    lines: list = field(default_factory=list)


@dataclass
class Diagnosis:
    function: str
    evidence: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    ambiguities: list = field(default_factory=list)
    record: dict = None
    confidence: str = None

    def note(self, topic, conclusion, lines=()):
        self.evidence.append(Evidence(topic, conclusion, list(lines)))


def _fits(outcomes, hypothesis, meaning, tolerance):
    """Worst residual of one (hypothesis, meaning) over the informative probes, and how many
    there were: a probe whose expected value is not finite says nothing."""
    worst, informative = 0.0, 0
    for probe, outcome in outcomes:
        if not outcome.ok:
            continue
        terms = hypothesis.terms(probe.first, probe.second)
        if not np.all(np.isfinite(terms)):
            continue
        informative += 1
        worst = max(worst, residual(outcome.value, expected_output(terms, meaning,
                                                                   probe.shape)))
    return (worst if informative else math.inf), informative


def _meaning_fits(outcomes, hypothesis, tolerance):
    """meaning -> residual, for the meanings that fit one variant's outcomes."""
    fitting = {}
    for meaning in MEANINGS:
        worst, informative = _fits(outcomes, hypothesis, meaning, tolerance)
        if informative and worst <= tolerance:
            fitting[meaning] = worst
    return fitting


def _best_meaning_residual(outcomes, hypothesis):
    return min(_fits(outcomes, hypothesis, meaning, 0)[0] for meaning in MEANINGS)


def _pick_meaning(fitting, name, unit):
    """One meaning of several that fit equally (they agree on every shape the function
    accepts): a standard name's own meaning, else the finest."""
    standard = STANDARD_MEANING.get(name, {}).get(unit)
    if standard in fitting:
        return standard
    return min(fitting, key=MEANINGS.index)


def diagnose(function_path, assume=None, device="cpu") -> Diagnosis:
    """Probe the function or loss class MODULE:ATTR on `device` and infer its record;
    `assume` ({"prediction": space, "target": space, "first": role}) settles what the probes
    leave ambiguous."""
    assume = dict(assume or {})
    _prepare_keras(function_path)
    function = resolve(function_path, function_path)
    if not callable(function):
        raise DiagnoseError(f"diagnose: {function_path} is not callable")
    diagnosis = Diagnosis(function_path)
    signature = read_signature(function)

    subject, dtype, tolerance = _find_arrays(function, function_path, device, diagnosis)

    # The reduction names it accepts: the signature's default, the docstring, the usual ones.
    names = []
    if signature.reduction:
        candidates = dict.fromkeys(
            [signature.reduction_default] if isinstance(signature.reduction_default, str)
            else [])
        candidates.update(dict.fromkeys(signature.documented_names))
        candidates.update(dict.fromkeys(USUAL_REDUCTION_NAMES))
        base = probes_for((2, 3))
        accepted = [name for name in candidates
                    if _first_accepted(subject, base, dtype, {signature.reduction: name})]
        takes_anything = _first_accepted(subject, base, dtype,
                                         {signature.reduction: UNKNOWN_REDUCTION}) is not None
        rejected = [name for name in candidates if name not in accepted]
        name_lines = [f"tried {len(candidates)} names (signature default, docstring, usual "
                      f"ones); accepted: {', '.join(map(repr, accepted)) or 'none'}",
                      f"rejected: {', '.join(map(repr, rejected[:12])) or 'none'}"]
        names = accepted + ([UNKNOWN_REDUCTION] if takes_anything else [])

    observations = {None: [(probe, subject.call(probe.first, probe.second, dtype))
                           for shape in PROBE_SHAPES for probe in probes_for(shape)]}
    accepted_shapes = {len(probe.shape) for probe, outcome in observations[None] if outcome.ok}
    # Names are probed on what the plain call accepts (all probes if it accepts none).
    usable = [probe for probe, outcome in observations[None] if outcome.ok] or [
        probe for probe, _ in observations[None]]
    for name in names:
        observations[name] = [(probe, subject.call(probe.first, probe.second, dtype,
                                                   **{signature.reduction: name}))
                              for probe in usable]

    hypothesis, tolerance = _infer_arguments(observations, tolerance, assume, diagnosis)
    if hypothesis is None:
        return diagnosis
    if signature.reduction:
        if takes_anything:
            names = _names_it_knows(observations, names, hypothesis, tolerance)
            diagnosis.findings.append(
                f"reduction={UNKNOWN_REDUCTION!r} is accepted without an error (an unknown "
                f"reduction name is not rejected); names whose output is the same as that "
                f"one's are taken as unknown to it")
        diagnosis.note("reduction names", f"keyword {signature.reduction!r}: "
                       + (", ".join(map(repr, names)) or "no name accepted"), name_lines)
    meanings = _infer_meanings(observations, hypothesis, tolerance, signature, names,
                               diagnosis)
    if meanings is None:
        return diagnosis
    record = {
        "name": _record_name(function_path),
        "description": f"{function_path}, convention inferred by klconform diagnose",
        "loss_class" if inspect.isclass(function) else "function": function_path,
        "arrays": subject.arrays,
    }
    setup = {}
    if (getattr(function, "__module__", None) or "").split(".")[0] == "keras":
        # keras reads its backend once, at import: the run must import it the same way.
        setup["environment"] = {"KERAS_BACKEND": keras_backend()}
    if subject.arrays == "jax":
        setup["jax_enable_x64"] = True
    if setup:
        record["setup"] = setup
    record["arguments"] = list(hypothesis.order)
    record["spaces"] = dict(zip(ROLES, hypothesis.spaces, strict=True))
    finest = _finest(meanings, signature)
    log_target = _infer_log_target(subject, function, function_path, hypothesis, meanings,
                                   signature, dtype, tolerance, diagnosis)
    if log_target:
        record["log_target"] = log_target
    if signature.reduction and names:
        default = meanings.pop("(default)")
        record["reduction"] = {"keyword": signature.reduction}
        if default is not None:
            record["reduction"]["default"] = default
        record["reduction"]["names"] = meanings
    else:
        record["output"] = meanings["(default)"]
    if signature.axis:
        record["axis"] = {"keyword": signature.axis, "value": -1}
    ranks = _infer_ranks(subject, hypothesis, accepted_shapes, dtype, diagnosis)
    if ranks:
        record["ranks"] = ranks
    dtypes, result_dtype = _infer_dtypes(subject, hypothesis, diagnosis)
    record["dtypes"] = {device: dtypes}
    if result_dtype:
        record["result_dtype"] = result_dtype
    record["autograd"] = _infer_autograd(subject, diagnosis)
    _look_for_bugs(subject, hypothesis, finest, dtype, tolerance, diagnosis)
    diagnosis.record = record
    return diagnosis


def _record_name(function_path):
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", function_path.replace(":", "."))
    return name.strip("-._") or "diagnosed"


def _first_accepted(subject, probes, dtype, keywords):
    for probe in probes:
        outcome = subject.call(probe.first, probe.second, dtype, **keywords)
        if outcome.ok:
            return outcome
    return None


def _prepare_keras(function_path):
    """keras on jax computes in 64 bits only if jax's 64-bit mode precedes keras's import
    (as a record's setup arranges for `run`)."""
    import os
    import sys

    if function_path.split(".")[0].split(":")[0] == "keras" and "keras" not in sys.modules \
            and os.environ.get("KERAS_BACKEND") == "jax" and "jax" in BRIDGE_MODULES:
        try:
            bridge("jax").setup({"jax_enable_x64": True})
        except ImportError:
            pass  # keras's own import then says what is missing


def _find_arrays(function, function_path, device, diagnosis):
    """(Subject, probing dtype, fit tolerance) for the first array library the function
    takes and returns; the tolerance is the result's dtype's (a float64 call that returns
    float32, as keras's loss classes do, is judged at float32's)."""
    tried = []
    for arrays in array_candidates(function):
        try:
            subject = Subject(function, arrays, device)
        except Exception as error:
            tried.append(f"{arrays}: does not set up ({type(error).__name__})")
            continue
        for dtype in ("float64", "float32"):
            errors = []
            for probe in probes_for((2, 3)):
                outcome = subject.call(probe.first, probe.second, dtype)
                if outcome.ok:
                    tried.append(f"{arrays} {dtype} on {device}: takes them, returns "
                                 f"{outcome.dtype} (probe {probe.describe()})")
                    judged = outcome.dtype if outcome.dtype in FIT_TOLERANCE else dtype
                    diagnosis.note("arrays", f"{arrays} (probing in {dtype}, fit judged at "
                                   f"{judged})", tried)
                    return subject, dtype, FIT_TOLERANCE[judged]
                errors.append(outcome.error)
            tried.append(f"{arrays} {dtype}: {errors[0]}")
    raise DiagnoseError(f"diagnose: {function_path} takes none of "
                        f"{', '.join(array_candidates(function))} arrays on {device}: "
                        + "; ".join(tried))


def _names_it_knows(observations, names, hypothesis, tolerance):
    """For a function that takes any string: the names it treats differently from an unknown
    one, and standard names that compute their standard meaning (paddle's 'none' is the
    elementwise terms, which is also what it returns for a name it does not know)."""
    known = []
    for name in names:
        if name == UNKNOWN_REDUCTION:
            continue
        fitting = _meaning_fits(observations[name], hypothesis, tolerance)
        standard = set(STANDARD_MEANING.get(name, {}).values())
        if not _same_output(observations[name], observations[UNKNOWN_REDUCTION]) \
                or standard & set(fitting):
            known.append(name)
    return known


def _infer_arguments(observations, tolerance, assume, diagnosis):
    """The argument order and spaces: the hypotheses whose residual, over every variant and
    probe, is within the tolerance."""
    scored = []
    for hypothesis in ALL_HYPOTHESES:
        # The best-explained output decides: one buggy reduction must not hide the arguments.
        worst = min(_best_meaning_residual(outcomes, hypothesis)
                    for outcomes in observations.values()
                    if any(outcome.ok for _, outcome in outcomes))
        scored.append((worst, hypothesis))
    scored.sort(key=lambda item: item[0])
    accepted_probes = sorted({probe.describe() for outcomes in observations.values()
                              for probe, outcome in outcomes if outcome.ok})
    lines = [f"probes accepted: {len(accepted_probes)} of "
             f"{len(PROBE_SHAPES) * 4} ({'; '.join(accepted_probes[:6])}"
             f"{' ...' if len(accepted_probes) > 6 else ''})",
             f"candidates (residual relative to the output; fits below {tolerance:g}):"]
    lines += [f"  f({hypothesis.describe()}): {_show(worst)}" for worst, hypothesis in scored[:6]]
    fitting = [hypothesis for worst, hypothesis in scored if worst <= tolerance]
    near = [(worst, hypothesis) for worst, hypothesis in scored if worst <= NEAR_FIT
            and _agrees(hypothesis, assume)]
    if not fitting and len(near) == 1:
        worst, chosen = near[0]
        diagnosis.findings.append(
            f"every output is {_show(worst)} (relative) off f({chosen.describe()}), the only "
            f"convention within {NEAR_FIT:g}: an epsilon, a clip or a lower precision inside")
        diagnosis.confidence = "medium (the nearest convention, not an exact fit)"
        diagnosis.note("arguments", f"f({chosen.describe()}), nearly", lines)
        return chosen, max(tolerance, 10 * worst)
    pinned = [hypothesis for hypothesis in fitting if _agrees(hypothesis, assume)]
    if len(pinned) == 1:
        chosen = pinned[0]
        runner_up = next((worst for worst, hypothesis in scored if hypothesis != chosen
                          and _agrees(hypothesis, assume)), math.inf)
        best = next(worst for worst, hypothesis in scored if hypothesis == chosen)
        if len(fitting) > 1:
            diagnosis.confidence = "settled by --assume"
        else:
            margin = runner_up / max(best, 1e-16)
            # High when the next hypothesis is far outside the tolerance, or at least as far
            # off as the probes were designed to put every wrong one (float32's tolerance
            # is too wide for a thousandfold margin).
            clear = min(1e3 * tolerance, DESIGNED_SEPARATION)
            diagnosis.confidence = ("high" if runner_up > clear else "low") + (
                f" (next hypothesis residual {_show(runner_up)}, {margin:.1e} x the best)")
        diagnosis.note("arguments", f"f({chosen.describe()})", lines)
        return chosen, tolerance
    if not fitting:
        diagnosis.note("arguments", "no convention fits", lines)
        diagnosis.ambiguities.append(
            f"no convention explains the outputs: the nearest, f({scored[0][1].describe()}), "
            f"is off by {_show(scored[0][0])} (not a KL of these arguments, or a bug in "
            "every output)")
        return None, tolerance
    diagnosis.note("arguments", "ambiguous", lines)
    options = sorted({f"{key}={value}" for hypothesis in pinned or fitting
                      for key, value in _assumptions(hypothesis).items()
                      if len({_assumptions(h)[key] for h in pinned or fitting}) > 1})
    diagnosis.ambiguities.append(
        "these fit equally: " + "; ".join(f"f({h.describe()})" for h in pinned or fitting)
        + f"; the probes cannot tell them apart: pass one of --assume {', '.join(options)}")
    return None, tolerance


def _assumptions(hypothesis):
    return {"first": hypothesis.order[0], "prediction": hypothesis.spaces[0],
            "target": hypothesis.spaces[1]}


def _agrees(hypothesis, assume):
    return all(_assumptions(hypothesis)[key] == value for key, value in assume.items())


def _show(value):
    return "no informative probe" if value == math.inf else f"{value:.2e}"


def _unit_of(fitting_by_name):
    for unit in ("elementwise", "rows"):
        if any(unit in fitting for fitting in fitting_by_name.values()):
            return unit
    return None


def _infer_meanings(observations, hypothesis, tolerance, signature, names, diagnosis):
    """Native name -> meaning, plus "(default)" -> the default's name (or the output's
    meaning where there is no reduction argument)."""
    fitting_by_name = {label: _meaning_fits(observations[label], hypothesis, tolerance)
                       for label in (None, *names)}
    unit = _unit_of(fitting_by_name)
    meanings, lines = {}, []
    for name in names:
        fitting = fitting_by_name[name]
        standard = STANDARD_MEANING.get(name, {}).get(unit)
        if not fitting:
            diagnosis.findings.append(
                f"reduction={name!r} computes none of the meanings (best residual "
                f"{_show(_best_meaning_residual(observations[name], hypothesis))})"
                + (f"; recorded as {standard!r}, its standard meaning" if standard else ""))
            if standard is None:
                diagnosis.ambiguities.append(
                    f"reduction={name!r}: no meaning fits and the name has no standard one")
                return None
            meanings[name] = standard
            continue
        measured = _pick_meaning(fitting, name, unit)
        if standard and standard not in fitting:
            looks_like = next((other for other, by_unit in STANDARD_MEANING.items()
                               if by_unit.get(unit) == measured), None)
            diagnosis.findings.append(
                f"looks like: {name!r} computed as {looks_like!r}" if looks_like else
                f"reduction={name!r} computes {MEANING_TEXT[measured]}, not "
                f"{MEANING_TEXT[standard]}")
            measured = standard
        ties = [m for m in fitting if m != measured]
        lines.append(f"{name!r}: {measured}" + (
            f" (equal to {', '.join(ties)} on every shape it accepts)" if ties else ""))
        meanings[name] = measured
    default_fits = fitting_by_name[None]
    if names:
        same = [name for name in names if _same_output(observations[None], observations[name])]
        preferred = signature.reduction_default
        default = preferred if preferred in same else (same[0] if same else None)
        if default is None and signature.reduction_default is not None:
            diagnosis.findings.append(
                f"the call without {signature.reduction!r} matches none of the accepted names "
                f"(the signature says {signature.reduction_default!r})")
        lines.append(f"default (no {signature.reduction!r}): "
                     + (repr(default) if default else "none of the names"))
        meanings["(default)"] = default
    else:
        if not default_fits:
            diagnosis.findings.append("its output matches no meaning")
            return None
        meanings["(default)"] = _pick_meaning(default_fits, None, unit)
        ties = [m for m in default_fits if m != meanings["(default)"]]
        lines.append(f"no reduction argument; output: {meanings['(default)']}" + (
            f" (equal to {', '.join(ties)} on every shape it accepts)" if ties else ""))
    diagnosis.note("output", f"unit {unit or 'scalar only'}", lines)
    return meanings


def _same_output(first, second):
    by_probe = {probe.describe(): outcome for probe, outcome in second}
    pairs = [(a.value, by_probe[probe.describe()].value) for probe, a in first
             if a.ok and probe.describe() in by_probe and by_probe[probe.describe()].ok]
    return bool(pairs) and all(a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=0,
                                                                 equal_nan=True)
                               for a, b in pairs)


def _infer_log_target(subject, function, function_path, hypothesis, meanings, signature, dtype,
                      tolerance, diagnosis):
    """A boolean keyword, or a sibling function, that takes the target in log space."""
    if hypothesis.spaces[1] != "probabilities":
        return None
    # Probed through the finest output: the plainest view of the target's space.
    reduction, probed_meaning = _finest(meanings, signature)
    forms = [({"keyword": name}, None, {name: not default, **reduction})
             for name, default in signature.flags.items() if default is False]
    module_name, _, attribute = function_path.partition(":")
    try:
        module = resolve(module_name + ":" + attribute.rsplit(".", 1)[0], function_path) \
            if "." in attribute else __import__(module_name, fromlist=["_"])
    except Exception:
        module = None
    base = attribute.rsplit(".", 1)[-1]
    for name in sorted(dir(module)) if module is not None else ():
        if name != base and name.startswith(base) and "log" in name[len(base):]:
            sibling = getattr(module, name)
            if callable(sibling):
                forms.append(({"function": f"{module_name}:{attribute[:-len(base)]}{name}"},
                              sibling, dict(reduction)))
    lines = []
    for form, sibling, keywords in forms:
        outcomes = [(probe, subject.call(probe.first, probe.second, dtype,
                                         function=sibling, **keywords))
                    for shape in ((2, 3), (2, 3, 4)) for probe in probes_for(shape)]
        # The target in log space is log-probabilities, or logits where the form normalises
        # it (Categorical(logits=log P)); the prediction may move to log space with it. The
        # stricter reading comes first: where only normalised rows are accepted both fit.
        for prediction_space, target_space in product(
                dict.fromkeys((hypothesis.spaces[0], "log-probabilities")),
                ("log-probabilities", "logits")):
            moved = Hypothesis(hypothesis.order, (prediction_space, target_space))
            worst, informative = _fits(outcomes, moved, probed_meaning, tolerance)
            label = ", ".join(f"{k}={v}" for k, v in form.items())
            lines.append(f"{label}: f({moved.describe()}) residual {_show(worst)}")
            if informative and worst <= tolerance:
                if prediction_space != hypothesis.spaces[0]:
                    form = {**form, "prediction": prediction_space}
                if target_space != "log-probabilities":
                    form = {**form, "target": target_space}
                diagnosis.note("log target", label, lines)
                return form
    diagnosis.note("log target", "none" if forms else "no candidate keyword or function",
                   lines)
    return None


def _finest(meanings, signature):
    """(keywords, meaning) of the least reduced call: a reduction name's, else the plain
    call's (the function has no reduction argument)."""
    if signature.reduction and len(meanings) > 1:
        name = min((n for n in meanings if n != "(default)"),
                   key=lambda n: MEANINGS.index(meanings[n]))
        return {signature.reduction: name}, meanings[name]
    return {}, meanings["(default)"]


def _infer_ranks(subject, hypothesis, accepted_shapes, dtype, diagnosis):
    scalar = subject.call(np.asarray(0.3), np.asarray(0.6), dtype)
    accepted = set(accepted_shapes) | ({0} if scalar.ok else set())
    if not accepted:
        return None
    ranks = {}
    if min(accepted) > 0:
        ranks["min"] = min(accepted)
    if max(len(shape) for shape in PROBE_SHAPES) not in accepted:
        ranks["max"] = max(accepted)
    diagnosis.note("ranks", ", ".join(map(str, sorted(accepted))) + " accepted",
                   [f"0-d: {'accepted' if scalar.ok else scalar.error}"])
    return ranks


def _infer_dtypes(subject, hypothesis, diagnosis):
    probe = next(p for p in probes_for((2, 3)) if subject.call(p.first, p.second).ok)
    reference = subject.call(probe.first, probe.second)
    working, results, lines = [], {}, []
    for dtype in DTYPES:
        outcome = subject.call(probe.first, probe.second, dtype)
        if not outcome.ok:
            lines.append(f"{dtype}: {outcome.error}")
            continue
        error = residual(outcome.value, reference.value)
        if error > DTYPE_TOLERANCE[dtype]:
            lines.append(f"{dtype}: runs, but {error:.1e} off the float64 result")
            continue
        working.append(dtype)
        results[dtype] = outcome.dtype
        lines.append(f"{dtype}: ok, returns {outcome.dtype}")
    result_dtype = None
    if working and all(results[d] == d for d in working):
        result_dtype = "same"
    elif working and len(set(results.values())) == 1 and next(iter(results.values())) in (
            "float32", "float64"):
        result_dtype = next(iter(results.values()))
    else:
        for dtype in working:
            if results[dtype] != dtype:
                diagnosis.findings.append(f"{dtype} input returns a {results[dtype]} result")
    diagnosis.note("dtypes", ", ".join(working) or "none", lines)
    return working, result_dtype


def _infer_autograd(subject, diagnosis):
    probe = next(p for p in probes_for((2, 3)) if subject.call(p.first, p.second).ok)
    try:
        grad_first, grad_second = subject.gradients(probe.first, probe.second)
    except NotImplementedError:
        diagnosis.note("autograd", "none", [f"{subject.arrays} arrays have no autograd"])
        return "none"
    except Exception as error:
        diagnosis.note("autograd", "none", [f"{type(error).__name__}: {error}"[:160]])
        return "none"
    flowing = [g is not None and np.all(np.isfinite(g)) and np.any(g != 0)
               for g in (grad_first, grad_second)]
    if not any(flowing):
        diagnosis.note("autograd", "none", ["no gradient reaches either argument"])
        return "none"
    if not all(flowing):
        missing = "first" if not flowing[0] else "second"
        diagnosis.findings.append(f"no gradient reaches the {missing} argument")
    diagnosis.note("autograd", subject.arrays, [f"gradients reach: first {flowing[0]}, "
                                                f"second {flowing[1]}"])
    return subject.arrays


def _look_for_bugs(subject, hypothesis, finest, dtype, tolerance, diagnosis):
    """Inputs on which a clip, an epsilon, a renormalisation or a swallowed NaN shows: the
    inferred convention predicts the finest output; a difference is a finding."""
    keywords, meaning = finest
    by_space = {"probabilities": lambda p: p, "log-probabilities": np.log,
                "logits": lambda p: np.log(p) + 0.7}
    prediction_p = np.array([[1e-12, 0.5, 0.5 - 1e-12], [0.2, 0.3, 0.5]])
    target_p = np.array([[0.5, 0.5, 0.0], [0.6, 0.1, 0.3]])
    if hypothesis.spaces[1] != "probabilities":
        target_p = np.where(target_p == 0, 1e-30, target_p)
    prediction_space, target_space = hypothesis.spaces
    checks = []
    with np.errstate(divide="ignore"):
        extreme = (by_space[prediction_space](prediction_p), by_space[target_space](target_p))
    checks.append(("a tiny prediction and a zero target (a clip or an epsilon shows here)",
                   extreme))
    scaled = {"probabilities": lambda v: 2.0 * v, "log-probabilities": lambda v: v + 0.4,
              "logits": lambda v: v}
    plain = _rows((2, 3), 5, 0.05), _rows((2, 3), 7, 0.05)
    unnormalised = (scaled[prediction_space](by_space[prediction_space](plain[0])),
                    scaled[target_space](by_space[target_space](plain[1])))
    checks.append(("rows that do not sum to 1 (a renormalisation or a clip at 1 shows here)",
                   unnormalised))
    lines = []
    for label, (prediction, target) in checks:
        by_role = {"prediction": prediction, "target": target}
        first, second = (by_role[role] for role in hypothesis.order)
        outcome = subject.call(first, second, dtype, **keywords)
        terms = hypothesis.terms(first, second)
        want = expected_output(terms, meaning, first.shape)
        if not outcome.ok:
            lines.append(f"{label}: raised {outcome.error}")
            continue
        error = residual(outcome.value, want)
        lines.append(f"{label}: residual {_show(error)}")
        if error > tolerance:
            diagnosis.findings.append(
                f"on {label}: {_short(outcome.value)} where the formula gives {_short(want)}")
    for role in ROLES:
        prediction, target = (by_space[prediction_space](plain[0]),
                              by_space[target_space](plain[1]))
        by_role = {"prediction": prediction.copy(), "target": target.copy()}
        by_role[role][0, 1] = np.nan
        first, second = (by_role[r] for r in hypothesis.order)
        outcome = subject.call(first, second, dtype, **keywords)
        if not outcome.ok:
            lines.append(f"NaN in the {role}: raised {outcome.error}")
            continue
        value = np.asarray(outcome.value)
        affected = value if value.ndim == 0 else value[0] if value.ndim < first.ndim else \
            value[0, 1]
        if np.any(np.isnan(affected)):
            lines.append(f"NaN in the {role}: propagates")
        else:
            diagnosis.findings.append(f"a NaN in the {role} gives {_short(affected)}, not NaN "
                                      "(swallowed)")
            lines.append(f"NaN in the {role}: gives {_short(affected)}")
    diagnosis.note("bugs", f"{len(diagnosis.findings)} finding(s)", lines)


def _short(value):
    value = np.asarray(value)
    if value.ndim == 0:
        return f"{float(value):.6g}"
    return np.array2string(value.ravel()[:4], precision=6) + (" ..." if value.size > 4 else "")


# -- text -------------------------------------------------------------------------------------

def render(diagnosis: Diagnosis) -> str:
    lines = [f"diagnose {diagnosis.function}"]
    for item in diagnosis.evidence:
        lines.append(f"  {item.topic}: {item.conclusion}")
        lines += [f"      {line}" for line in item.lines]
    if diagnosis.confidence:
        lines.append(f"  confidence: {diagnosis.confidence}")
    for finding in diagnosis.findings:
        lines.append(f"  FINDING (a bug, not a convention; not in the record): {finding}")
    for ambiguity in diagnosis.ambiguities:
        lines.append(f"  UNDECIDED: {ambiguity}")
    return "\n".join(lines) + "\n"


def record_text(record: dict) -> str:
    import yaml

    return ("# Written by klconform diagnose; check it, then\n"
            f"#   klconform run --impl {record.get('function') or record['loss_class']} "
            "--convention THIS_FILE\n"
            + yaml.safe_dump(record, sort_keys=False, default_flow_style=None, width=100))


ASSUMABLE = {"prediction": SPACES, "target": SPACES, "first": ROLES}


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


def diagnose_command(function_path, write_path, assume_pairs, out=None, device="cpu"):
    """The CLI: print the evidence; write the record if asked and one was inferred.
    Exit 0: inferred, no finding; 1: inferred with findings (bugs), or undecided; 2: the
    function could not be probed or the record not written."""
    import os
    import sys
    import time

    out = out or sys.stdout
    if ":" not in function_path:
        print(f"diagnose: --impl {function_path!r}: expected MODULE:ATTR", file=sys.stderr)
        return 2
    # Like `klconform run` (python -m pytest), a module in the current directory is found.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    started = time.perf_counter()
    try:
        result = diagnose(function_path, parse_assumptions(assume_pairs), device)
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
