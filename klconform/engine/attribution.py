"""Which claim a wrong value breaks: the one whose known mistake reproduces it.

A case runs one call and compares it with the oracle, but the call exercises several
conventions at once (a mask, a temperature, the class axis, a divisor). When the value is
wrong, each hypothesis below recomputes in float64 what one specific mistake would have
returned for the same call; the one that reproduces the value, within the same budget,
names the claim it breaks, and only that claim fails.

Before the hypotheses, the implementation's own outputs isolate the stage that is wrong
(`isolate`): a default call equal to its own explicit 'mean' leaves the default right, and
a reduction over correct 'none' terms of its own is the reduction's failure, whatever the
rest of the case names. A value that nothing explains falls on the pointwise formula
(none-pointwise), never on every claim the case is tagged with; only a distillation case,
whose claims are each about one feature of the loss, keeps its own claims.
"""

from dataclasses import replace

import numpy as np

from klconform.adapters.base import PADDED_ROWS
from klconform.constants import ALSO_FITS, ALSO_FITS_SEPARATOR
from klconform.engine.diagnosis import POINTWISE_CLAIM, PRECISION_CLAIM, explaining_mistakes
from klconform.engine.expectations import compare_with_oracle, effective_reduction
from klconform.engine.judging import CALL_CLAIM
from klconform.engine.outcome import CheckFailures
from klconform.oracle import float64 as oracle
from klconform.spec.claims import load_spec

# Calls with more elements than this are not recomputed under every known mistake (a
# vocabulary-sized distillation call is softmaxed along every axis by its hypotheses).
ATTRIBUTION_LIMIT = 1 << 16
# The plain KL's mistakes are cheap: recomputed up to the suite's largest case (8 x 128000).
PLAIN_ATTRIBUTION_LIMIT = 1 << 21
NAN_CLAIM = "nan-propagates"
UNEXPLAINED = ("the pointwise terms are not target * (log target - input), and no known "
               "mistake explains how")
REDUCTION_FORMULA = {"sum": "the total", "mean": "the total / numel",
                     "batchmean": "the total / size(0)"}
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
    allowed = np.asarray(allowed, dtype=np.float64)
    if allowed.ndim and allowed.shape != np.shape(predicted):
        # A mistake that sums each row ('none' per row): its budget is the row's.
        allowed = np.sum(allowed, axis=-1) if allowed.shape[:-1] == np.shape(predicted) \
            else np.max(allowed)
    with np.errstate(invalid="ignore", divide="ignore"):
        error = np.abs(got - predicted) / (allowed + 1e-300)
    error = np.where((np.isnan(got) & np.isnan(predicted)) | (got == predicted), 0.0, error)
    return float(np.max(np.where(np.isnan(error), np.inf, error))) if np.size(error) else 0.0


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
    """(claim, mistake) of the hypothesis that reproduces `value` best, else None; the
    mistake names the others that reproduce it, of other claims (`best_of`)."""
    return best_of(candidates(call, plan, value, expected))


def best_of(found):
    """The first of [(claim, mistake)], its mistake followed by those of other claims that
    fit as well: on raw logits -KL and |KL| are one function, and only the rest of the run
    tells which mistake it is."""
    if not found:
        return None
    claim, mistake = found[0]
    others = list(dict.fromkeys(other for other_claim, other in found[1:]
                                if other_claim != claim and other != mistake))
    if others:
        mistake += ALSO_FITS + ALSO_FITS_SEPARATOR.join(others) + ")"
    return claim, mistake


def candidates(call, plan, value, expected):
    """[(claim, mistake)] of the hypotheses that reproduce `value`, closest first: the plain
    KL's mistakes (engine.diagnosis), else the distillation form's. Vocabulary-sized calls
    are not tried under the distillation form's (a softmax along every axis each)."""
    if np.size(call.input) > PLAIN_ATTRIBUTION_LIMIT:
        return []
    got = np.asarray(value, dtype=np.float64)
    allowed = np.asarray(expected.budget, dtype=np.float64)
    if call.mask is None and plan.scale == 1.0 and np.shape(call.input) == np.shape(call.target):
        found, _ = explaining_mistakes(call, got, expected)
        # A library that takes logits renormalises them by its convention, not by mistake;
        # a mistake the budget cannot tell from KL itself (bfloat16 on a vocabulary) is no
        # explanation of anything.
        found = [(mistake, claim, predicted) for mistake, claim, predicted in found
                 if claim and not (plan.normalised and claim == RENORMALISED_CLAIM)
                 and not _agrees(predicted, expected.value, allowed)]
        if found:
            # Several can agree at a coarse dtype: the closest names the claim (a stable
            # sort: on a tie, the likelier one diagnosis lists first).
            found.sort(key=lambda entry: _misfit(got, entry[2], allowed))
            return [(claim, mistake) for mistake, claim, _ in found]
    if np.size(call.input) > ATTRIBUTION_LIMIT:
        return []
    found = []
    for claim, predicted, mistake in hypotheses(call, plan):
        if predicted.shape != got.shape or _agrees(predicted, expected.value, allowed):
            continue
        with np.errstate(invalid="ignore"):
            same = (np.abs(got - predicted) <= allowed) | (np.isnan(got) & np.isnan(predicted))
        if np.all(same):
            found.append((claim, mistake))
    return found


def judge_value(call, plan, value, expected, failures, claims, label="oracle", lower=None,
                own=None):
    """The oracle comparison, a failure blamed on the one claim it breaks (`isolate`).
    Returns (blamed claim or None, the Expected every other check of this call is to use).

    `lower` gives the oracle's Expected at the next lower precision (float32 for a float64
    call; called only for a wrong value): a value that fits it is a failure of the precision
    claim alone, and the call's other checks are then judged at the precision it has.
    `own(reduction)` gives the implementation's own output for the same arrays under another
    reduction of its own, with that call's Expected, or None (see `isolate`).
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
            return _precision_failure(call, found, failures, lowered)
    blamed, mistake = isolate(call, plan, value, expected, claims, own)
    if mistake:
        # The mistake becomes the outcome's diagnosis, the root cause's headline.
        failures.mistakes.append(mistake)
    for line in found.lines:
        failures.add(line, [blamed] if blamed else claims)
    return blamed, expected


def _precision_failure(call, found, failures, lowered):
    failures.add(found.lines[0], [PRECISION_CLAIM])
    failures.mistakes.append(precision_mistake(call.dtype))
    return PRECISION_CLAIM, lowered


def isolate(call, plan, value, expected, claims, own=None):
    """(claim, mistake) that a wrong value breaks; (None, None) leaves it on `claims`.

    With the implementation's own outputs (`own`), the stage that went wrong is found
    first: a default call is judged by its own explicit 'mean', a reduction by its own
    'none' terms. Then the known mistakes name the claim; what none explains falls on the
    pointwise formula, except in a distillation case (`claims` all about the loss's
    features), whose claims stay its own.
    """
    if own is not None and not plan.composed:
        if call.reduction is None and effective_reduction(call) == "mean":
            mean = own("mean")
            if mean is not None and not _agrees(value, mean[0], expected.budget):
                return explaining(call, plan, value, expected) or (
                    CALL_CLAIM[None], "the default reduction is not the function's own 'mean'")
            if mean is not None:
                # The default is its own 'mean': what is wrong is wrong in 'mean' too.
                call = replace(call, reduction="mean")
        reduction = effective_reduction(call)
        if reduction != "none" and call.mask is None and plan.scale == 1.0:
            terms = own("none")
            if terms is not None and _right(terms[0], terms[1], call.dtype) and not _agrees(
                    value, _reduced(terms[0], reduction, np.shape(call.input)),
                    expected.budget):
                # Right terms and a value that is not their reduction: the reduction broke.
                reduction_claim = CALL_CLAIM.get(call.reduction)
                if reduction_claim:
                    explained = explaining(call, plan, value, expected)
                    return reduction_claim, explained[1] if explained else (
                        f"{reduction!r} is not {REDUCTION_FORMULA[reduction]} of the "
                        f"function's own 'none' terms")
            if terms is not None:
                # The terms are wrong too: the mistake is the one both values agree on (the
                # terms tell a flipped sign from an absolute value, the total a clamped
                # result from clamped terms).
                reduced = candidates(call, plan, value, expected)
                # At a vocabulary's size each mistake's terms are a pass over every element:
                # the total alone names it there (and lists what else fits).
                at_terms = candidates(replace(call, reduction="none"), plan, *terms) if (
                    np.size(call.input) <= ATTRIBUTION_LIMIT) else []
                both = [entry for entry in reduced if entry[1] in {m for _, m in at_terms}]
                chosen = (both or reduced or at_terms)[:1]
                if chosen:
                    # What fits the total alone, or the terms alone, is named beside it.
                    return best_of(chosen + both + reduced + at_terms)
    explained = explaining(call, plan, value, expected)
    if explained:
        return explained
    with np.errstate(invalid="ignore"):
        swallowed = np.isnan(np.asarray(expected.value, dtype=np.float64)) & ~np.isnan(
            np.asarray(value, dtype=np.float64)) if np.shape(value) == np.shape(
            expected.value) else False
    if np.any(swallowed):
        # NaN where KL is NaN is what nan-propagates says, whatever else the case is about.
        return NAN_CLAIM, "a NaN in the arguments does not give NaN"
    spec = load_spec()
    if claims and all(spec.claims[claim].family == "distillation" for claim in claims):
        return None, None
    return POINTWISE_CLAIM, UNEXPLAINED


def _reduced(terms, reduction, shape):
    with np.errstate(all="ignore"):
        return np.sum(np.asarray(terms, dtype=np.float64)) / oracle.divisor_for(reduction, shape)


def _agrees(value, other, allowed):
    value = np.asarray(value, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if value.shape != other.shape:
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.all((np.abs(value - other) <= allowed)
                           | (np.isnan(value) & np.isnan(other)) | (value == other)))


def _right(value, expected, dtype):
    found = CheckFailures()
    if np.shape(value) != np.shape(expected.value):
        return False
    compare_with_oracle(value, expected, found, "own terms", (), dtype)
    return not found
