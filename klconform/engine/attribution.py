"""Which claim a wrong value breaks: the one whose known mistake reproduces it.

A case runs one call and compares it with the oracle, but the call exercises several
conventions at once (a mask, a temperature, the class axis, a divisor). When the value is
wrong, each hypothesis below recomputes in float64 what one specific mistake would have
returned for the same call; the one that reproduces the value, within the same budget,
names the claim it breaks, and only that claim fails. A value no hypothesis reproduces
falls on the case's own value claims, as before.
"""

import numpy as np

from klconform.adapters.base import PADDED_ROWS
from klconform.dtypes import UNIT_ROUNDOFF
from klconform.engine.diagnosis import explaining_mistakes
from klconform.engine.expectations import compare_with_oracle, effective_reduction
from klconform.engine.judging import CALL_CLAIM
from klconform.engine.outcome import CheckFailures
from klconform.oracle import float64 as oracle

PRECISION_CLAIM = "accuracy-in-dtype"
# Calls with more elements than this are not recomputed under every known mistake.
ATTRIBUTION_LIMIT = 1 << 16
# The claim engine.diagnosis's "inputs renormalised" mistake breaks.
RENORMALISED_CLAIM = "unnormalized-negative"
# The precision a function that computes below its dtype usually computes in.
LOWER_PRECISION = {"float64": "float32"}
# The claim a wrong divisor of a rescaled scalar output breaks, by what the record declares.
DIVISOR_CLAIM = {"mean-rows": "token-mean-divisor", "mean-batch": "reduction-batchmean",
                 "mean-elements": "reduction-mean", "sum": "reduction-sum"}


def _log_softmax(values, axis):
    with np.errstate(all="ignore"):
        top = np.max(values, axis=axis, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        return values - top - np.log(np.sum(np.exp(values - top), axis=axis, keepdims=True))


def _kl(x, t, call, mask="call"):
    """The oracle's value of the call's reduction on (log Q, P) = (x, t)."""
    return oracle.expected(x, t, reduction=effective_reduction(call), log_target=False,
                           dtype="float64",
                           mask=call.mask if isinstance(mask, str) else mask).value


def hypotheses(call, plan):
    """(claim, predicted value, mistake) for each known mistake that applies to the call."""
    x = np.asarray(call.input, dtype=np.float64)
    with np.errstate(all="ignore"):
        log_p = np.asarray(call.target, dtype=np.float64) if call.log_target \
            else np.log(np.asarray(call.target, dtype=np.float64))
        p = np.exp(log_p)
    scale = plan.scale
    found = []
    if x.shape != p.shape:
        return found

    def add(claim, value, mistake):
        found.append((claim, np.asarray(value, dtype=np.float64), mistake))

    correct = _kl(x, p, call)
    if call.mask is not None and not np.all(call.mask):
        add("mask-excludes-value", _kl(x, p, call, mask=None) * scale,
            "masked positions are counted in the value")
    for label, alternative in plan.divisors:
        claim = "mask-excludes-divisor" if label == PADDED_ROWS else \
            DIVISOR_CLAIM[plan.declared_meaning]
        add(claim, correct * scale * plan.declared_divisor / alternative,
            f"the total is divided by the {label} ({alternative:g}), not by the "
            f"{plan.declared_divisor:g} its record declares")
    temperature = call.temperature
    if temperature is not None and temperature != 1.0:
        t2 = temperature * temperature
        if scale != 1.0:
            add("temperature-scaling", correct, "T**2 is missing")
        else:
            add("temperature-scaling", correct * t2, "the value is multiplied by T**2, which "
                                                     "its record does not declare")
        if "target" in plan.normalised:
            # The teacher's logits are not divided by T: its softmax is P**T renormalised.
            add("temperature-scaling", _kl(x, np.exp(_log_softmax(temperature * log_p, -1)),
                                           call) * scale, "the teacher is not tempered")
        if "input" in plan.normalised:
            add("temperature-scaling", _kl(_log_softmax(temperature * x, -1), p, call) * scale,
                "the student is not tempered")
    if plan.normalised and x.ndim >= 2:
        for axis in range(x.ndim - 1):
            moved_x = _log_softmax(x, axis) if "input" in plan.normalised else x
            moved_p = np.exp(_log_softmax(log_p, axis)) if "target" in plan.normalised else p
            add("class-axis", _kl(moved_x, moved_p, call) * scale,
                f"normalised along axis {axis} of (..., classes), not the class axis")
            if "target" in plan.normalised and "input" in plan.normalised:
                add("class-axis", _kl(moved_x, p, call) * scale,
                    f"the student normalised along axis {axis}, not the class axis")
    with np.errstate(all="ignore"):
        add("roles", _kl(log_p, np.exp(x), call) * scale,
            "prediction and target are exchanged: KL(Q||P)")
    return found


def _misfit(got, predicted, allowed):
    """How far `got` is from a prediction, in budgets (the largest over the elements)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        error = np.abs(got - predicted) / (allowed + 1e-300)
    error = np.where(np.isnan(got) & np.isnan(predicted), 0.0, error)
    return float(np.nanmax(error)) if np.size(error) else 0.0


def in_lower_precision(values, dtype):
    """Computed in the lower precision and cast back: every value is one of its numbers (an
    epsilon or a clip computed in float64 is not, however small its error)."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = values.astype(LOWER_PRECISION[dtype]).astype(np.float64)
    return bool(np.all(~np.isfinite(values) | (values == rounded)))


def precision_mistake(dtype):
    return (f"computed in {LOWER_PRECISION[dtype]}: the error fits its budget, not "
            f"{dtype}'s")


def explaining(call, plan, value, expected):
    """(claim, mistake) of the hypothesis that reproduces `value`, else None: the plain KL's
    mistakes (engine.diagnosis) first, then the distillation form's. Vocabulary-sized calls
    are not tried (a dozen recomputations each): their failures fall on the case's claims."""
    if np.size(call.input) > ATTRIBUTION_LIMIT:
        return None
    got = np.asarray(value, dtype=np.float64)
    allowed = np.asarray(expected.budget, dtype=np.float64)
    if call.mask is None and plan.scale == 1.0 and np.shape(call.input) == np.shape(call.target):
        found, _ = explaining_mistakes(call, got, expected)
        # A library that takes logits renormalises them by its convention, not by mistake.
        found = [(mistake, claim, predicted) for mistake, claim, predicted in found
                 if claim and not (plan.normalised and claim == RENORMALISED_CLAIM)]
        if found:
            # Several can agree at a coarse dtype: the closest names the claim.
            mistake, claim, _ = min(found, key=lambda entry: _misfit(got, entry[2], allowed))
            return claim, mistake
    for claim, predicted, mistake in hypotheses(call, plan):
        if predicted.shape != got.shape:
            continue
        with np.errstate(invalid="ignore"):
            same = (np.abs(got - predicted) <= allowed) | (np.isnan(got) & np.isnan(predicted))
        if np.all(same):
            return claim, mistake
    return None


def judge_value(call, plan, value, expected, failures, claims, label="oracle", lower=None):
    """The oracle comparison, a failure blamed on the claim whose known mistake reproduces
    the value, else on `claims`. Returns (blamed claim or None, the Expected every other
    check of this call is to use).

    `lower` gives the oracle's Expected at the next lower precision (float32 for a float64
    call; called only for a wrong value): a value that fits it is a failure of the precision
    claim alone, and the call's other checks are then judged at the precision it has.
    """
    found = CheckFailures()
    compare_with_oracle(value, expected, found, label, claims, call.dtype)
    for note in found.notes:
        failures.note(note)
    if not found:
        return None, expected
    lowered = lower() if lower is not None else None
    if lowered is not None:
        coarse = CheckFailures()
        compare_with_oracle(value, lowered, coarse, label, claims, call.dtype)
        if not coarse and in_lower_precision(value, call.dtype):
            failures.add(found.lines[0], [PRECISION_CLAIM])
            failures.mistakes.append(precision_mistake(call.dtype))
            return PRECISION_CLAIM, lowered
    explained = explaining(call, plan, value, expected)
    blamed = None
    if explained:
        blamed, mistake = explained
        # The mistake becomes the outcome's diagnosis, the root cause's headline.
        claims = [blamed]
        failures.mistakes.append(mistake)
    for line in found.lines:
        failures.add(line, claims)
    return blamed, expected


def ratio_tolerance(dtype):
    """How far the ratios of a dtype's rounded gradients to exact ones spread."""
    return max(1e-3, 16 * UNIT_ROUNDOFF[dtype])


def constant_ratio(got, want, checked, dtype="float64"):
    """got / want where it is one constant over the checked, clearly non-zero entries."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return None
    large = checked & np.isfinite(got) & (np.abs(want) > 1e-6 * np.max(np.abs(want),
                                                                      initial=0.0))
    if not np.any(large):
        return None
    ratios = got[large] / want[large]
    ratio = float(np.median(ratios))
    return ratio if np.all(np.abs(ratios - ratio) <= ratio_tolerance(dtype) * abs(ratio)) \
        else None


def gradient_joins_value(call, plan, ratio, value, expected):
    """(claim, mistake) when a gradient wrong by `ratio` belongs to the value's root cause:
    the value itself is wrong by the same factor, and a known mistake explains it. None for
    a gradient bug of its own (the value right, or wrong otherwise)."""
    want = float(np.asarray(expected.value))
    got = float(np.asarray(value))
    if not np.isfinite(got) or want == 0 or abs(got - want) <= float(expected.budget):
        return None
    spread = ratio_tolerance(call.dtype)
    if abs(got / want - ratio) > spread * abs(ratio):
        return None
    explained = explaining(call, plan, value, expected)
    if explained:
        return explained
    for factor, claim, mistake in _factors(call, plan):
        if abs(ratio - factor) <= spread * abs(factor):
            return claim, mistake
    return None


def _factors(call, plan):
    """(factor, claim, mistake): constants a known mistake multiplies a gradient by."""
    shape = np.shape(call.input)
    found = [(plan.declared_divisor / alternative,
              "mask-excludes-divisor" if label == PADDED_ROWS
              else DIVISOR_CLAIM[plan.declared_meaning],
              f"the gradient, like the value, is divided by the {label}")
             for label, alternative in plan.divisors]
    reduction = effective_reduction(call)
    own = oracle.divisor_for(reduction, shape)
    for other in ("none", "sum", "mean", "batchmean"):
        alternative = oracle.divisor_for(other, shape)
        if alternative != own and alternative:
            found.append((own / alternative, CALL_CLAIM.get(call.reduction),
                          f"the gradient is divided by {alternative:g} ({other!r}'s "
                          f"divisor), not {own:g}"))
    if plan.scale != 1.0:
        found.append((1.0 / plan.scale, "temperature-scaling", "the gradient lacks T**2"))
    return [entry for entry in found if entry[1]]
