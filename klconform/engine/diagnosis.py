"""Naming the likeliest known mistake behind a wrong value.

Each hypothesis recomputes, in float64, what a specific well-known mistake would have
returned for the same call. A hypothesis explains the failure when the actual value is
within the budget of its prediction while the correct value is not.
"""

import math
from dataclasses import replace

import numpy as np

from klconform.constants import DIAGNOSIS_PREFIX
from klconform.dtypes import UNIT_ROUNDOFF, round_to
from klconform.engine import prepared
from klconform.engine.expectations import effective_reduction
from klconform.engine.judging import CALL_CLAIM
from klconform.oracle import float64 as oracle

LN2 = math.log(2.0)
KERAS_CLIP_FLOOR = 1e-7
# What a value wrong in its formula breaks (engine.attribution names what nothing explains
# with it too), and what an answer its own dtype could have held breaks.
POINTWISE_CLAIM = "none-pointwise"
PRECISION_CLAIM = "accuracy-in-dtype"
# The label smoothing factors training code uses (0.1 by far the most).
LABEL_SMOOTHING = (0.1, 0.05, 0.2, 0.01)
# How a named mistake is introduced (report.root_causes groups failures by what follows).


def _reduce(terms, reduction, shape):
    if reduction == "none":
        return terms
    with np.errstate(all="ignore"):
        return np.asarray(np.sum(terms) / oracle.divisor_for(reduction, shape))


def _renormalised(exp_x, t, log_target):
    """Both arguments renormalised along the last axis before the KL."""
    with np.errstate(all="ignore"):
        q = exp_x / np.sum(exp_x, axis=-1, keepdims=True)
        p = np.exp(t) if log_target else t
        p = p / np.sum(p, axis=-1, keepdims=True)
        return oracle.pointwise(np.log(q), p, False)


def _p_log_p(p):
    """P log P with 0 log 0 = 0, as oracle.pointwise computes it (the same operations, so
    P log P - P * x is bit for bit oracle.pointwise(x, P))."""
    p_log_p = np.asarray(p * np.log(p))
    p_log_p[p == 0] = 0.0
    return p_log_p


def hypotheses(call, reduction):
    """(description, predicted value, claim it breaks) for each known mistake that applies
    to this call."""
    x, t = np.asarray(call.input, np.float64), np.asarray(call.target, np.float64)
    log_target = bool(call.log_target)
    shape = x.shape
    numel = max(x.size, 1)
    found = []

    def add(text, value, claim):
        found.append((text, np.asarray(value, dtype=np.float64), claim))

    with np.errstate(all="ignore"):
        p = np.exp(t) if log_target else t
        # Shared by most hypotheses below (each a pass over inputs of up to millions of
        # elements): exp(input), and P log P for terms against P, P log P - P * (log Q).
        exp_x = np.exp(x)
        p_log_p = _p_log_p(p)
        terms = oracle.pointwise(x, t, True) if log_target else p_log_p - p * x
        correct = _reduce(terms, reduction, shape)
        # Q computed as exp(input) in the dtype is 0 below its smallest subnormal, and a
        # function that then takes Q = 0 with P > 0 as an infinite term answers inf where
        # log Q, and the KL, are finite numbers of the dtype. First: where it applies, the
        # inf that exchanged roles also give (P = 0 somewhere) is this call's underflow.
        underflows = (round_to(exp_x, call.dtype) == 0) & np.isfinite(x) & (p > 0)
        if np.any(underflows):
            add(f"Q = exp(input) computed in {call.dtype}, where it underflows to 0 (and the "
                f"term taken as inf) although log Q is finite",
                _reduce(np.where(underflows, np.inf, terms), reduction, shape),
                PRECISION_CLAIM)
        swapped_input = np.log(p)
        swapped = _reduce(oracle.pointwise(swapped_input, exp_x, False), reduction, shape)
        if reduction != "none" and call.reduction is None:
            # Said first: without a reduction argument the likelier slip is the default.
            add("default reduction is not 'mean' (looks like 'batchmean')",
                np.sum(terms) / (shape[0] if shape else 1), CALL_CLAIM[None])
        add("roles swapped: computed KL(Q||P) (input and target exchanged)", swapped, "roles")
        add("symmetrised: computed (KL(P||Q) + KL(Q||P)) / 2", (correct + swapped) / 2,
            "roles-asymmetric")
        if reduction != "none":
            total = np.sum(terms)
            batch = shape[0] if shape else 1
            for name, divisor in (("sum", 1), ("mean", numel), ("batchmean", batch)):
                if name != reduction:
                    add(f"{reduction!r} computed as {name!r} (divided by {divisor})",
                        total / divisor, CALL_CLAIM.get(call.reduction))
            if len(shape) >= 3:
                leading = math.prod(shape[:-1])
                add(f"{reduction!r} divided by every leading dimension ({leading}), "
                    f"not by size(0)", total / leading, CALL_CLAIM.get(call.reduction))
        # Before the next hypothesis, which predicts NaN wherever the input is negative and
        # so also "explains" any NaN result: where these apply they are the likelier cause.
        if log_target:
            add("log_target ignored: log-probability target used as probabilities",
                _reduce(oracle.pointwise(x, t, False), reduction, shape), "log-target")
        else:
            add("log_target applied although log_target=False",
                _reduce(oracle.pointwise(x, t, True), reduction, shape), "log-target")
            if np.any(t == 0):
                add("zero target gives nan: 0 * log 0 not taken as 0 (plain t * log t)",
                    _reduce(t * np.log(t) - t * x, reduction, shape), "zero-target")
        add("probabilities fed as log-probabilities: exp() never taken, input used as Q",
            _reduce(p_log_p - p * np.log(x), reduction, shape), "roles")
        # The same function where the result is the terms ('none'): the terms' claim first.
        add("negatives clamped to 0 (each pointwise term, before the reduction)",
            _reduce(np.maximum(terms, 0.0), reduction, shape), "none-negative-terms")
        add("negatives clamped to 0 (the result)", np.maximum(correct, 0.0),
            "unnormalized-negative")
        add("absolute value taken", np.abs(correct), "unnormalized-negative")
        add("sign flipped", -correct, "normalized-nonnegative")
        add("inputs renormalised (softmax/normalise over the last axis) before the KL",
            _reduce(_renormalised(exp_x, t, log_target), reduction, shape),
            "unnormalized-negative")
        add("target-entropy term dropped: computed cross-entropy -sum(target * input)",
            _reduce(-p * x, reduction, shape), "cross-entropy-decomposition")
        add("result in bits (log base 2), not nats", correct / LN2, "worked-examples")
        add("NaN swallowed: non-finite terms replaced by 0",
            _reduce(np.where(np.isnan(terms), 0.0, terms), reduction, shape), "nan-propagates")
        # The clip's bound as the library holds it: 1e-7 in float16 is 1.19e-7.
        floor = float(round_to(KERAS_CLIP_FLOOR, call.dtype))
        clipped = np.clip(p, floor, 1.0)
        add("probabilities clipped to [1e-7, 1] (keras-style)",
            _reduce(oracle.pointwise(np.log(np.clip(exp_x, floor, 1.0)), clipped, False),
                    reduction, shape), "zero-target")
        # torch.distributions' Categorical(probs=P) takes log(clamp(P, eps, 1 - eps)), eps
        # the dtype's machine epsilon (7.8e-3 in bfloat16): tiny and certain P move.
        machine_epsilon = 2 * UNIT_ROUNDOFF[call.dtype]
        clamped_log_p = np.log(np.clip(p, machine_epsilon, 1 - machine_epsilon))
        add(f"the target clamped to [eps, 1 - eps] inside the log (eps = "
            f"{machine_epsilon:.3g}, {call.dtype}'s machine epsilon; torch.distributions-style)",
            _reduce(np.where(p > 0, p * (clamped_log_p - x), 0.0), reduction, shape),
            POINTWISE_CLAIM)
        if shape and shape[-1] > 1:
            classes = shape[-1]
            for epsilon in LABEL_SMOOTHING:
                smoothed_p = (1 - epsilon) * p + epsilon / classes
                add(f"label smoothing {epsilon:g} applied to the target",
                    _reduce(oracle.pointwise(x, smoothed_p, False), reduction, shape),
                    "cross-entropy-one-hot")
                smoothed_x = np.log((1 - epsilon) * exp_x + epsilon / classes)
                add(f"label smoothing {epsilon:g} applied to the prediction",
                    _reduce(p_log_p - p * smoothed_x, reduction, shape),
                    "identical-zero")
        if reduction == "none":
            add("'none' reduced per row instead of returning pointwise terms",
                np.sum(terms, axis=-1) if terms.ndim else terms, "none-pointwise")
    return correct, found


def predictions(call, reduction):
    """(correct, ((text, exact prediction, claim, the prediction in the call's dtype), ...)):
    `hypotheses` with each prediction rounded, kept with a case's own call (the mutation
    self-test diagnoses the same call for many wrong functions)."""
    return prepared.derived(
        call, ("diagnosis", reduction, call.reduction, bool(call.log_target), call.dtype),
        lambda x, t: _predictions(replace(call, input=x, target=t), reduction))


def _predictions(call, reduction):
    correct, found = hypotheses(call, reduction)
    rounded = []
    for text, exact, claim in found:
        # What the dtype can hold of it: a mistake whose value overflows gives inf there.
        # Matches keep the exact prediction: two mistakes rounding to the same number are
        # told apart by which is closer.
        with np.errstate(over="ignore"):
            rounded.append((text, exact, claim, round_to(exact, call.dtype)))
    return correct, tuple(rounded)


def explaining_mistakes(call, actual, expected):
    """[(text, claim, predicted)] of the known mistakes that reproduce `actual`, likeliest
    first."""
    reduction = effective_reduction(call)
    actual = np.asarray(actual, dtype=np.float64)
    correct, found = predictions(call, reduction)
    tolerance = np.asarray(expected.budget, dtype=np.float64)
    # A mistake's value carries the dtype's own rounding, which the budget of the right value
    # does not bound.
    loose = 8 * max(UNIT_ROUNDOFF["float32"], UNIT_ROUNDOFF[call.dtype])
    matches = []
    for text, exact, claim, predicted in found:
        if predicted.shape != actual.shape:
            continue
        if predicted.shape != correct.shape:
            # Only per-row sums change the shape; a sum's budget is its terms' budgets summed.
            if _close(actual, predicted, np.sum(np.broadcast_to(tolerance, correct.shape),
                                                axis=-1), loose):
                matches.append((text, claim, exact))
            continue
        if _close(predicted, correct, tolerance, loose):
            continue  # indistinguishable from the right answer on this input
        if _close(actual, predicted, tolerance, loose):
            matches.append((text, claim, exact))
    return matches, correct


def explain_mismatch(call, actual, expected):
    """A 'looks like: ...' sentence, or None when no known mistake explains `actual`."""
    found, correct = explaining_mistakes(call, actual, expected)
    matches = [text for text, _, _ in found]
    actual = np.asarray(actual, dtype=np.float64)
    tolerance = np.asarray(expected.budget, dtype=np.float64)
    if not matches and actual.shape == correct.shape and call.dtype == "float64":
        error = np.abs(actual - correct)
        # Out of budget somewhere: a value within it is not a precision mistake.
        if np.all(np.isfinite(error)) and np.any(error > tolerance) and np.all(
                error <= 64 * UNIT_ROUNDOFF["float32"] * (expected.magnitude_sum + 1e-30)):
            matches.append("computed in float32 (or lower) although the inputs are float64")
    if not matches:
        return None
    return f"{DIAGNOSIS_PREFIX} " + matches[0] + (
        f" (also consistent with: {'; '.join(matches[1:])})" if len(matches) > 1 else "")


def _close(a, b, tolerance, relative):
    """a matches b: NaN where b is NaN, equal where b is infinite, within tolerance elsewhere."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape == b.shape and np.isfinite(b).all():
        # The usual case, asked some 50,000 times per mutant sweep of the self-test: a NaN in
        # `a` fails the comparison below as the NaN check would, so only it is needed.
        allowed = np.broadcast_to(tolerance + relative * np.abs(b), b.shape)
        with np.errstate(invalid="ignore"):
            return bool(np.all(np.abs(a - b) <= allowed))
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    finite = np.isfinite(b)
    if not np.array_equal(a[~finite & ~np.isnan(b)], b[~finite & ~np.isnan(b)]):
        return False
    allowed = np.broadcast_to(tolerance + relative * np.abs(np.where(finite, b, 0.0)), b.shape)
    with np.errstate(invalid="ignore"):
        return bool(np.all(np.abs(a - b)[finite] <= allowed[finite]))
