"""What the function does beyond its convention: the ranks and dtypes it takes, its gradients,
and the inputs on which a bug shows (a clip, an epsilon, a renormalisation, a swallowed NaN,
nan for a zero target). Each bug is a finding naming the claim the run fails on it, and is left
out of the record, so that the run that follows fails on it."""

import numpy as np

from klconform.adapters.convention import GRADIENT_CLAIM
from klconform.authoring.diagnose.evidence import short, show
from klconform.authoring.diagnose.hypotheses import residual
from klconform.authoring.diagnose.probes import (
    BASE_RANK,
    RANK_SHAPES,
    in_space,
    normalised,
    probe_set,
)
from klconform.constants import DTYPES
from klconform.spec.conventions import Role, Space

TINY_PREDICTION = "a tiny prediction (a clip or an epsilon shows here)"
# How close a reduced-precision result must be to count that dtype as working.
DTYPE_TOLERANCE = {"float64": 1e-6, "float32": 1e-4, "float16": 2e-2, "bfloat16": 1e-1}


def infer_ranks(prober, accepted_ranks, diagnosis):
    """The record's `ranks` where the function takes fewer than 0-d to 4-D inputs."""
    scalar = prober.call(np.asarray(0.3), np.asarray(0.6))
    accepted = set(accepted_ranks) | ({0} if scalar.ok else set())
    if not accepted:
        return None
    ranks = {}
    if min(accepted) > 0:
        ranks["min"] = min(accepted)
    if max(RANK_SHAPES) not in accepted:
        ranks["max"] = max(accepted)
    gaps = sorted(set(range(min(accepted), max(accepted) + 1)) - accepted)
    if gaps:
        diagnosis.find(f"takes ranks {sorted(accepted)} but not {gaps} between them: the "
                       "record can state only a range", None)
    diagnosis.note("ranks", ", ".join(map(str, sorted(accepted))) + " accepted",
                   [f"0-d: {'accepted' if scalar.ok else scalar.error}"])
    return ranks


def _reference_probe(prober, keywords):
    probe, outcome = prober.first_accepted(probe_set((BASE_RANK,), prober.mask is not None),
                                           **keywords)
    if probe is None:  # a function that takes only higher ranks
        probe, outcome = prober.first_accepted(probe_set(tuple(RANK_SHAPES),
                                                         prober.mask is not None), **keywords)
    return probe, outcome


def infer_dtypes(prober, keywords, diagnosis):
    """(dtypes that work, the record's result_dtype or None)."""
    probe, reference = _reference_probe(prober, keywords)
    working, results, lines = [], {}, []
    for dtype in DTYPES:
        outcome = prober.call(probe.first, probe.second, probe.kept, dtype=dtype, **keywords)
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
                diagnosis.find(f"{dtype} input returns a {results[dtype]} result", "result-dtype")
    diagnosis.note("dtypes", ", ".join(working) or "none", lines)
    return working, result_dtype


# Relative error under which a gradient agrees with the reading's derivative (central
# differences in float64 are good to ~1e-9 here).
GRADIENT_TOLERANCE = 1e-5


def _numeric_gradients(hypothesis, probe, meaning):
    """d sum(output) / d first and / d second of the reading, by central differences."""
    def total(first, second):
        return float(np.sum(hypothesis.reduce(hypothesis.terms(first, second), meaning,
                                              probe.kept)))

    found = []
    for index in (0, 1):
        arrays = [probe.first.copy(), probe.second.copy()]
        gradient = np.zeros_like(arrays[index])
        for position in np.ndindex(gradient.shape):
            step = 1e-6 * max(1.0, abs(arrays[index][position]))
            original = arrays[index][position]
            arrays[index][position] = original + step
            up = total(*arrays)
            arrays[index][position] = original - step
            down = total(*arrays)
            arrays[index][position] = original
            gradient[position] = (up - down) / (2 * step)
        found.append(gradient)
    return found


def _check_gradient(role, observed, expected, probe, hypothesis, diagnosis, lines):
    scale = max(float(np.max(np.abs(expected))), 1e-12)
    wrong = np.abs(observed - expected) > GRADIENT_TOLERANCE * scale
    off = float(np.max(np.abs(observed - expected))) / scale
    lines.append(f"gradient of the {role}: {show(off)} (relative) off the reading's derivative")
    if not np.any(wrong):
        return
    claim = GRADIENT_CLAIM[role]
    if probe.kept is not None and probe.rank:
        rows = np.expand_dims(probe.kept, hypothesis.axis % probe.rank)
        if not np.any(wrong & np.broadcast_to(rows, wrong.shape)):
            claim = "mask-excludes-gradient"  # wrong only where the mask drops rows
    diagnosis.find(f"the gradient of the {role} is {short(observed)} where the reading's "
                   f"derivative is {short(expected)}", claim)


def infer_autograd(prober, hypothesis, keywords, diagnosis, meaning=None):
    """(autograd library or "none", roles that get no gradient); where `meaning` (the plain
    call's) is given, each gradient that flows is checked against the reading's derivative."""
    subject = prober.subject
    probe, _ = _reference_probe(prober, keywords)
    try:
        gradients = subject.gradients(probe.first, probe.second, probe.kept, prober.mask,
                                      **{**prober.keywords, **keywords})
    except NotImplementedError:
        diagnosis.note("autograd", "none", [f"{subject.arrays} arrays have no autograd"])
        return "none", ()
    except Exception as error:  # the function's own: it does not differentiate
        diagnosis.note("autograd", "none", [f"{type(error).__name__}: {error}"[:160]])
        return "none", ()
    flowing = {role: gradient is not None and bool(np.all(np.isfinite(gradient)))
               and bool(np.any(gradient != 0))
               for role, gradient in zip(hypothesis.order, gradients, strict=True)}
    if not any(flowing.values()):
        diagnosis.note("autograd", "none", ["no gradient reaches either argument"])
        return "none", ()
    if not flowing[Role.PREDICTION]:
        diagnosis.find("no gradient reaches the prediction", "gradient-input")
    # A teacher's logits detached is a distillation convention: declared, not a bug. A
    # distribution target that gets no gradient is a KL's missing gradient.
    detached = ()
    if not flowing[Role.TARGET] and hypothesis.spaces[1] == Space.LOGITS:
        detached = (Role.TARGET,)
    elif not flowing[Role.TARGET]:
        diagnosis.find("no gradient reaches the target", "gradient-target")
    lines = ["gradients reach: " + ", ".join(f"{role} {flows}" for role, flows in flowing.items())
             + ("; the target is detached (no_gradient: [target])" if detached else "")]
    if meaning is not None:
        expected = dict(zip(hypothesis.order, _numeric_gradients(hypothesis, probe, meaning),
                            strict=True))
        observed = dict(zip(hypothesis.order, gradients, strict=True))
        for role, flows in flowing.items():
            if flows:
                _check_gradient(role, observed[role], expected[role], probe, hypothesis,
                                diagnosis, lines)
    diagnosis.note("autograd", subject.arrays, lines)
    return subject.arrays, detached


def _bug_inputs(hypothesis):
    """(label, claim, prediction, target) the run also judges; claim None: the run records
    what the function gives (implementation-defined), so diagnose only shows it."""
    prediction_space, target_space = hypothesis.spaces
    plain = normalised((2, 3), 5, 0.05), normalised((2, 3), 7, 0.05)
    tiny = np.array([[1e-12, 0.5, 0.5 - 1e-12], [0.2, 0.3, 0.5]])
    yield (TINY_PREDICTION, "none-pointwise",
           in_space(tiny, prediction_space), in_space(plain[1], target_space))
    zero = np.array([[0.5, 0.5, 0.0], [0.6, 0.1, 0.3]])
    yield ("a zero target (it contributes 0)" if target_space == Space.PROBABILITIES else
           "a zero target, as -inf (implementation-defined where the target is in log space: "
           "the run records it)", "zero-target" if target_space == Space.PROBABILITIES
           else None, in_space(plain[0], prediction_space), in_space(zero, target_space))
    if set(hypothesis.spaces) != {Space.LOGITS}:
        # Scaled rows: a logits argument is the same distribution, the others are not.
        off_by = {Space.PROBABILITIES: lambda p: 2.0 * p,
                  Space.LOG_PROBABILITIES: lambda p: np.log(p) + 0.4,
                  Space.LOGITS: lambda p: in_space(p, Space.LOGITS)}
        yield ("rows that do not sum to 1 (a renormalisation or a clip at 1 shows here)",
               "unnormalized-negative", off_by[prediction_space](plain[0]),
               off_by[target_space](plain[1]))


def look_for_bugs(prober, hypothesis, finest, tolerance, diagnosis):
    """The inputs on which the run's edge claims are judged: the inferred reading predicts
    the finest output; a difference is a finding on that claim."""
    keywords, meaning = finest
    lines = []
    for label, claim, prediction, target in _bug_inputs(hypothesis):
        by_role = {Role.PREDICTION: prediction, Role.TARGET: target}
        first, second = (by_role[role] for role in hypothesis.order)
        outcome = prober.call(first, second, **keywords)
        want = hypothesis.reduce(hypothesis.terms(first, second), meaning)
        if not outcome.ok:
            lines.append(f"{label}: raised {outcome.error}")
            continue
        error = residual(outcome.value, want)
        lines.append(f"{label}: residual {show(error)}" + (
            "" if claim or error <= tolerance else f" (gives {short(outcome.value)})"))
        if error > tolerance and claim:
            diagnosis.find(f"on {label}: {short(outcome.value)} where the formula gives "
                           f"{short(want)}", claim)
    _nan_checks(prober, hypothesis, keywords, diagnosis, lines)
    diagnosis.note("bugs", f"{len(diagnosis.findings)} finding(s)", lines)


def _nan_checks(prober, hypothesis, keywords, diagnosis, lines):
    plain = normalised((2, 3), 5, 0.05), normalised((2, 3), 7, 0.05)
    for role in (Role.PREDICTION, Role.TARGET):
        by_role = {Role.PREDICTION: in_space(plain[0], hypothesis.spaces[0]),
                   Role.TARGET: in_space(plain[1], hypothesis.spaces[1])}
        by_role[role][0, 1] = np.nan
        first, second = (by_role[r] for r in hypothesis.order)
        outcome = prober.call(first, second, **keywords)
        if not outcome.ok:
            lines.append(f"NaN in the {role}: raised {outcome.error}")
            continue
        value = np.asarray(outcome.value)
        affected = value if value.ndim == 0 else value[0] if value.ndim < first.ndim else \
            value[0, 1]
        if np.any(np.isnan(affected)):
            lines.append(f"NaN in the {role}: propagates")
        else:
            diagnosis.find(f"a NaN in the {role} gives {short(affected)}, not NaN (swallowed)",
                           "nan-propagates")
            lines.append(f"NaN in the {role}: gives {short(affected)}")
