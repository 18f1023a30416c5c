"""Which known mistake a wrong gradient of a right value comes from.

A function can return the right value where its mistake happens not to show (identical
distributions give 0 whatever a wrong 'mean' divides by; a clamp does nothing to a positive
total) and still differentiate the mistake: the gradient is divided by the wrong count, is 0
where the clamp holds, flips sign with an absolute value, or is a softmax's. Each hypothesis
here predicts the gradient that mistake gives, named exactly as engine.diagnosis names it for
a value, so that the value's and the gradient's failures are one root cause under one claim.
"""

import math
from dataclasses import replace

import numpy as np

from klconform.adapters.base import PADDED_ROWS
from klconform.dtypes import round_to
from klconform.engine.attribution import ATTRIBUTION_LIMIT, DIVISOR_CLAIM
from klconform.engine.diagnosis import KERAS_CLIP_FLOOR, LABEL_SMOOTHING
from klconform.engine.expectations import effective_reduction
from klconform.engine.judging import CALL_CLAIM
from klconform.oracle import float64 as oracle

REDUCTIONS = ("sum", "mean", "batchmean")
LN2 = math.log(2.0)


def hypotheses(call, plan, want_input, want_target, value, analytic, expected):
    """(claim, mistake, d/dinput, d/dtarget) each mistake predicts for the call, given the
    right gradients (`want_*`), the function's own (right) value, its oracle `expected`, and
    `analytic(call, plan)` for the softmax's gradients."""
    found = []
    x = np.asarray(call.input, dtype=np.float64)
    t = np.asarray(call.target, dtype=np.float64)
    shape = x.shape
    reduction = effective_reduction(call)
    claim = CALL_CLAIM.get(call.reduction)

    def scaled(factor):
        return want_input * factor, want_target * factor

    if reduction != "none" and claim:
        own = oracle.divisor_for(reduction, shape)
        for name in REDUCTIONS:
            divisor = oracle.divisor_for(name, shape)
            if name != reduction and divisor != own:
                found.append((claim, f"{reduction!r} computed as {name!r} (divided by "
                                     f"{divisor})", *scaled(own / divisor)))
        if len(shape) >= 3:
            leading = math.prod(shape[:-1])
            found.append((claim, f"{reduction!r} divided by every leading dimension "
                                 f"({leading}), not by size(0)", *scaled(own / leading)))
    for label, alternative in plan.divisors:
        found.append(("mask-excludes-divisor" if label == PADDED_ROWS
                      else DIVISOR_CLAIM[plan.declared_meaning],
                      f"the total is divided by the {label} ({alternative:g}), not by the "
                      f"{plan.declared_divisor:g} its record declares",
                      *scaled(plan.declared_divisor / alternative)))
    with np.errstate(all="ignore"):
        p = np.exp(t) if call.log_target else t
        q = np.exp(x)
        log_p = t if call.log_target else np.log(t)
        factor = want_input / np.where(p != 0, -p, np.nan)  # the reduction's scale
        factor = np.nanmax(np.abs(factor)) if np.any(p != 0) else 0.0
        # KL(Q||P) = sum q (x - log p): d/dx = q (x - log p + 1), d/dp = -q / p.
        swapped_target = -q / p if not call.log_target else -q
        swapped_input = q * (x - log_p + 1.0) * factor
        found.append(("roles", "roles swapped: computed KL(Q||P) (input and target exchanged)",
                      swapped_input, swapped_target * factor))
        found.append(("roles-asymmetric", "symmetrised: computed (KL(P||Q) + KL(Q||P)) / 2",
                      (want_input + swapped_input) / 2,
                      (want_target + swapped_target * factor) / 2))
        # -sum p x: the input's gradient is KL's, the target's is -x.
        found.append(("cross-entropy-decomposition", "target-entropy term dropped: computed "
                      "cross-entropy -sum(target * input)", want_input,
                      (-x * p if call.log_target else -x) * factor))
    found.append(("worked-examples", "result in bits (log base 2), not nats",
                  *scaled(1.0 / LN2)))
    found.append(("normalized-nonnegative", "sign flipped", *scaled(-1.0)))
    if plan.scale != 1.0:
        found.append(("temperature-scaling", "T**2 is missing", *scaled(1.0 / plan.scale)))
    if np.size(x) > ATTRIBUTION_LIMIT:
        # The rest recompute logs and softmaxes over every element, several times each: at a
        # vocabulary's size, more than the rest of the run costs. Scaled gradients are cheap.
        return found
    if not call.log_target and x.ndim and shape[-1] > 1 and not plan.logits_gradients:
        classes = shape[-1]
        with np.errstate(all="ignore"):
            for epsilon in LABEL_SMOOTHING:
                # Of KL(P'||Q) with P' = (1-e) P + e/C, and of KL(P||Q') with Q' likewise.
                smoothed_p = (1 - epsilon) * t + epsilon / classes
                found.append(("cross-entropy-one-hot",
                              f"label smoothing {epsilon:g} applied to the target",
                              -smoothed_p * factor,
                              (1 - epsilon) * (np.log(smoothed_p) + 1.0 - x) * factor))
                smoothed_q = (1 - epsilon) * q + epsilon / classes
                found.append(("identical-zero",
                              f"label smoothing {epsilon:g} applied to the prediction",
                              -t * (1 - epsilon) * q / smoothed_q * factor,
                              (log_p + 1.0 - np.log(smoothed_q)) * factor))
    if not call.log_target and not plan.logits_gradients:
        floor = float(round_to(KERAS_CLIP_FLOOR, call.dtype))
        with np.errstate(all="ignore"):
            # KL of clip(P) and clip(Q): the clip passes no gradient where it holds.
            clipped_p = np.clip(t, floor, 1.0)
            clipped_q = np.clip(q, floor, 1.0)
            inside_p = (t > floor) & (t < 1.0)
            inside_q = (q > floor) & (q < 1.0)
            found.append(("zero-target", "probabilities clipped to [1e-7, 1] (keras-style)",
                          np.where(inside_q, -clipped_p, 0.0) * factor,
                          np.where(inside_p, np.log(clipped_p / clipped_q) + 1.0, 0.0)
                          * factor))
    if not plan.logits_gradients and not plan.normalised:
        softmax_input, softmax_target, _ = analytic(
            call, replace(plan, logits_gradients=("input", "target")))
        if not call.log_target and x.ndim:
            # t / sum(t) differentiated where a t is 0: autograd's 0 * log 0 is nan, and the
            # sum spreads it over the row.
            softmax_target = np.where(np.any(t == 0, axis=-1, keepdims=True), np.nan,
                                      softmax_target)
        found.append(("unnormalized-negative", "inputs renormalised (softmax/normalise over "
                      "the last axis) before the KL", softmax_input, softmax_target))
    if not call.log_target and x.ndim and "target" not in plan.logits_gradients:
        # A probability target divided by its row's sum (torch.distributions' probs=): the
        # value is the same on normalised rows, the gradient loses the row's constant.
        with np.errstate(all="ignore"):
            rows = oracle.pointwise(x, t, False)
            row_kl = np.sum(np.where(t > 0, rows, 0.0), axis=-1, keepdims=True)
            renormalised = np.where(t > 0, np.log(t) - x - row_kl, -x - row_kl) * factor
        found.append(("gradient-target", "the target divided by its row's sum before the KL "
                      "(its gradient loses the row's constant)", want_input, renormalised))
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(all="ignore"):
        terms = oracle.pointwise(x, t, bool(call.log_target))
    positive_terms = np.broadcast_to(terms > 0, want_input.shape)
    found.append(("none-negative-terms",
                  "negatives clamped to 0 (each pointwise term, before the reduction)",
                  np.where(positive_terms, want_input, 0.0),
                  np.where(positive_terms, want_target, 0.0)))
    if reduction != "none":
        # The function's own total decides where a clamp or an absolute value acts; one
        # within the budget of 0 may have been rounded to either side of it.
        correct = float(np.asarray(expected.value))
        signs = {np.sign(correct)} if abs(correct) > float(expected.budget) else {1.0, -1.0}
        if -1.0 in signs:
            found.append(("unnormalized-negative", "negatives clamped to 0 (the result)",
                          np.zeros_like(want_input), np.zeros_like(want_target)))
        for sign in signs - {1.0}:
            found.append(("unnormalized-negative", "absolute value taken",
                          want_input * sign, want_target * sign))
    return found


def explaining(call, plan, gradients, budgets, target_checked, value, analytic,
               want_input, want_target, expected):
    """[(claim, mistake)] of the hypotheses that reproduce every computed gradient of every
    mode and that the value cannot tell from the right one here (a mistake that would have
    changed the value is not what happened: the value is right). Several claims among them:
    the gradient cannot say which mistake it is."""
    budget_input, budget_target = budgets
    missing = _no_gradient(gradients, want_input, want_target, budgets, target_checked)
    other_right = missing is not None and (
        within(gradients["both"][0], want_input, budget_input, None)
        if missing[0] == "gradient-target" else
        within(gradients["both"][1], want_target, budget_target, target_checked))
    if missing and missing[2] and other_right:
        # An absent gradient beside a right one is its own mistake: every other hypothesis
        # would "fit" it (nothing to compare).
        return [missing[:2]]
    # A gradient of exactly 0 is one candidate among those predicting 0 there (|KL| at 0).
    found = [missing[:2]] if missing and not missing[2] else []
    reproducing = []
    wrong = _wrong_elements(gradients, want_input, want_target, budgets, target_checked)
    wants = (want_input, want_target)
    for claim, mistake, *predicted in hypotheses(
            call, plan, want_input, want_target, value, analytic, expected):
        # Where the gradients are wrong first: one that misses there misses.
        if (wrong is None or _reproduces(gradients, predicted, wants, budgets,
                                         target_checked, wrong)) \
                and _reproduces(gradients, predicted, wants, budgets, target_checked):
            reproducing.append((claim, mistake))
    if reproducing:
        # Predicting every mistake's value is the costly part (large-vocabulary inputs): only
        # done where some mistake reproduces the gradients.
        silent = _silent_in_value(call, plan, expected)
        found += [(claim, mistake) for claim, mistake in reproducing
                  if silent.get(mistake, True)]
    return found


# Of the elements where the computed gradients are wrong, how many a hypothesis is tried on
# before every element: one it misses there cannot reproduce the gradients.
WRONG_ELEMENTS_TRIED = 16


def _wrong_elements(gradients, want_input, want_target, budgets, target_checked):
    """Flat indices of up to WRONG_ELEMENTS_TRIED elements, per mode and argument, where a
    computed gradient is not KL's within its budget; None where the gradients' shapes are
    not all the arguments' (the full check alone decides then)."""
    shape = np.shape(want_input)
    if np.shape(want_target) != shape:
        return None
    picked = []
    for got_input, got_target in gradients.values():
        for got, want, allowed, checked in ((got_input, want_input, budgets[0], None),
                                            (got_target, want_target, budgets[1],
                                             target_checked)):
            if got is None:
                continue
            if np.shape(got) != shape:
                return None
            with np.errstate(invalid="ignore"):
                bad = ~(np.abs(np.asarray(got, dtype=np.float64) - want) <= allowed)
            if checked is not None:
                bad &= np.asarray(checked, dtype=bool)
            picked.append(np.flatnonzero(bad)[:WRONG_ELEMENTS_TRIED])
    return np.unique(np.concatenate(picked)) if picked else None


def _reproduces(gradients, predicted, wants, budgets, target_checked, elements=None):
    """Whether every computed gradient of every mode is the `predicted` one (input, target)
    within its budget at the prediction's magnitude; at `elements` alone (flat indices)
    where given. A prediction not of the arguments' shape is checked whole."""
    shape = np.shape(wants[0])
    if elements is not None and any(np.shape(each) != shape for each in predicted):
        elements = None

    def at(array, dtype=np.float64):
        if elements is None or array is None:
            return array
        return np.broadcast_to(np.asarray(array, dtype=dtype), shape).reshape(-1)[elements]

    predicted = tuple(at(each) for each in predicted)
    allowed = tuple(_at_magnitude(at(budget), each, at(want))
                    for budget, each, want in zip(budgets, predicted, wants, strict=True))
    checked = at(target_checked, bool)
    return all(within(at(got_input), predicted[0], allowed[0], None)
               and within(at(got_target), predicted[1], allowed[1], checked)
               for got_input, got_target in gradients.values())


def _at_magnitude(allowed, predicted, want):
    """The right gradient's budget, grown where a mistake's gradient is larger: the function
    computes that gradient, and this module predicts it, at its own magnitude (a 'mean'
    divided by 1 instead of 7 rounds at 7 times the size; measured, one unit in the last
    place of the prediction exceeded the right gradient's float64 budget)."""
    with np.errstate(all="ignore"):
        ratio = np.abs(np.asarray(predicted, dtype=np.float64)) / np.abs(want)
    return allowed * np.where(np.isfinite(ratio) & (ratio > 1.0), ratio, 1.0)


def _no_gradient(gradients, want_input, want_target, budgets, target_checked):
    """(claim, mistake, absent) where an argument's gradient is absent (None) or exactly 0
    while KL's is not, else None. A KL gradient within its budget of 0 (the logits'
    Q - P at P = Q) is not one: an exact 0 is then right."""
    wants = (("gradient-input", "input", want_input, budgets[0], None),
             ("gradient-target", "target", want_target, budgets[1], target_checked))
    for index, (claim, role, want, allowed, checked) in enumerate(wants):
        want = np.asarray(want, dtype=np.float64)
        if checked is not None:
            want = np.where(np.asarray(checked, dtype=bool), want, 0.0)
        if not np.any(np.isfinite(want) & (want != 0)):
            continue
        # The mode that asks for both: another mode leaves the argument it holds fixed None.
        got = gradients["both"][index]
        if got is None:
            return claim, f"no gradient reaches the {role} (None)", True
        with np.errstate(invalid="ignore"):
            zero_is_wrong = np.any(np.isfinite(want) & (np.abs(want) > allowed))
        if zero_is_wrong and not np.any(np.asarray(got, dtype=np.float64)):
            return claim, f"the gradient with respect to the {role} is exactly 0", False
    return None


def _silent_in_value(call, plan, expected):
    """mistake -> whether the value it predicts is the right one within the budget here."""
    from klconform.engine import attribution, diagnosis

    allowed = np.asarray(expected.budget, dtype=np.float64)
    correct = np.asarray(expected.value, dtype=np.float64)
    predictions = {}
    if call.mask is None and plan.scale == 1.0:
        _, found = diagnosis.predictions(call, effective_reduction(call))
        predictions.update({text: value for text, value, _, _ in found})
    predictions.update({mistake: value for _, value, mistake in
                        attribution.hypotheses(call, plan)})
    silent = {}
    for mistake, value in predictions.items():
        value = np.asarray(value, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            silent[mistake] = value.shape == correct.shape and bool(np.all(
                (np.abs(value - correct) <= allowed) | (value == correct)))
    return silent


def within(got, predicted, allowed, checked):
    if got is None:
        return True
    got = np.asarray(got, dtype=np.float64)
    if got.shape != np.shape(predicted):
        return False
    mask = np.ones(got.shape, dtype=bool) if checked is None else checked
    with np.errstate(invalid="ignore"):
        return bool(np.all(~mask | (np.abs(got - predicted) <= allowed)
                           | (np.isnan(got) & np.isnan(predicted)) | (got == predicted)))
