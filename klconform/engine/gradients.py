"""Gradient checks for adapters that declare autograd.

Three independent references, all in float64 numpy:
  * the analytic gradients (claims gradient-input, gradient-target);
  * central finite differences of the implementation's own forward values (first order);
  * central finite differences of the implementation's own gradients (second order).
Differences run along one fixed direction per argument, so a case costs a handful of
calls whatever its size. Target-gradient entries where target == 0 are implementation-
defined (log 0) and recorded by a probe case, not checked here.
"""

from dataclasses import replace

import numpy as np

from klconform.adapters.base import Call
from klconform.constants import DEFAULT_TIMEOUT_S, DTYPES
from klconform.dtypes import SMALLEST_NORMAL, UNIT_ROUNDOFF
from klconform.engine.evaluate import Guarded, make_call, unsupported_reason
from klconform.engine.expectations import effective_reduction
from klconform.engine.outcome import Outcome
from klconform.oracle import float64 as oracle
from klconform.oracle.budget import K_ELEM
from klconform.short_text import summarize

CLAIMS = ("gradient-input", "gradient-target")
GRADIENT_DTYPES = DTYPES
# Finite differences only where float64 rounding leaves them meaningful.
FINITE_DIFFERENCE_DTYPE = "float64"
STEP = 1e-5
FINITE_DIFFERENCE_TOLERANCE = 1e-6


def eligible(case):
    """Value cases with finite inputs; relation and error cases add nothing here."""
    if case.kind != "value":
        return False
    x, t = case.arrays
    return bool(np.all(np.isfinite(x)) and np.all(np.isfinite(t)) and x.size)


def analytic(call: Call):
    """(d input, d target, target mask) of sum(result) for the call, in float64."""
    x = np.asarray(call.input, dtype=np.float64)
    t = np.asarray(call.target, dtype=np.float64)
    scale = 1.0 / oracle.divisor_for(effective_reduction(call), x.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        if call.log_target:
            p = np.exp(t)
            return -p * scale, p * (t - x + 1.0) * scale, np.ones(t.shape, dtype=bool)
        return -t * scale, (np.log(t) + 1.0 - x) * scale, t > 0


def _budgets(call: Call, conversions=()):
    x = np.abs(np.asarray(call.input, dtype=np.float64))
    t = np.asarray(call.target, dtype=np.float64)
    u, tiny = UNIT_ROUNDOFF[call.dtype], SMALLEST_NORMAL[call.dtype]
    scale = 1.0 / oracle.divisor_for(effective_reduction(call), x.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        if call.log_target:
            p = np.exp(t)
            budget_input = K_ELEM * u * (p * scale + tiny)
            budget_target = K_ELEM * u * (p * (np.abs(t) + x + 1.0) * scale + tiny)
        else:
            p = t
            budget_input = K_ELEM * u * (np.abs(t) * scale + tiny)
            budget_target = K_ELEM * u * ((np.abs(np.log(t)) + 1.0 + x) * scale + tiny)
        if conversions:
            # klconform rounded exp(input) or log(target) once more for the library: the
            # gradient moves by that relative error times what it multiplies.
            log_p = np.abs(np.log(np.where(p > 0, p, 1.0)))
            budget_input = budget_input + K_ELEM * u * p * (log_p + 1.0) * scale
            budget_target = budget_target + K_ELEM * u * (log_p * (log_p + x + 2.0) + 1.0) \
                * scale
    return budget_input, budget_target


def _direction(shape):
    # Fixed, irregular, sign-alternating: no symmetric cancellation hides an error.
    count = int(np.prod(shape))
    values = np.cos(np.arange(1, count + 1) * 1.7) + 0.25
    return values.reshape(shape)


def _total(adapter, call):
    return float(np.sum(adapter.run(call).value))


# Which arguments require grad: both (the usual training loss), the input only
# (distillation with a detached teacher), the target only (VAEs, some RL losses). Libraries
# often have a separate backward path per combination, so each is checked on its own.
MODES = (("both", ("input", "target")), ("input only", ("input",)),
         ("target only", ("target",)))


def evaluate_gradients(case, dtype, adapter, device="cpu", timeout=DEFAULT_TIMEOUT_S) -> Outcome:
    adapter = Guarded(adapter, timeout)
    outcome = Outcome("passed", f"grad:{case.id}", dtype, CLAIMS, "must")
    call = make_call(case, dtype, device)
    reason = unsupported_reason(adapter, call)
    if not adapter.capabilities.autograd:
        reason = "autograd"
    if reason:
        outcome.status, outcome.message = "unsupported", f"{adapter.name} does not support {reason}"
        return outcome
    from klconform.engine.judging import unsupported_claims
    from klconform.spec.claims import load_spec

    plan = adapter.plan(call)
    unjudged = unsupported_claims(CLAIMS, plan, adapter.capabilities, load_spec())
    if len(unjudged) == len(CLAIMS):
        outcome.status = "unsupported"
        outcome.message = f"{adapter.name}: {'; '.join(sorted(set(unjudged.values())))}"
        outcome.claim_reasons = dict(unjudged)
        outcome.claim_results = {claim: "unsupported" for claim in CLAIMS}
        return outcome
    from klconform.engine import snippets as reproduce

    outcome.snippet = reproduce.snippet(adapter, call, case.id) + \
        "# gradients: adapter.run_gradients(Call(..., requires_grad=('input', 'target'))) " \
        "or result.sum().backward()\n"
    want_input, want_target, target_checked = analytic(call)
    budget_input, budget_target = _budgets(call, adapter.plan(call).conversions)
    failures = []
    gradients = {}
    for mode, arguments in MODES:
        try:
            gradients[mode] = adapter.run_gradients(replace(call, requires_grad=arguments))
        except Exception as error:
            return errored_outcome(outcome, error, f"{mode}: ")
        grad_input, grad_target = gradients[mode]
        if "input" in arguments:
            _compare(f"{mode}: d/dinput", grad_input, want_input, budget_input,
                     np.ones_like(target_checked), failures, "gradient-input")
        if "target" in arguments:
            _compare(f"{mode}: d/dtarget", grad_target, want_target, budget_target,
                     target_checked, failures, "gradient-target")
    if not failures and dtype == FINITE_DIFFERENCE_DTYPE:
        try:
            failures += _finite_differences(adapter, call, gradients, target_checked)
        except Exception as error:
            return errored_outcome(outcome, error, "finite differences: ")
    grad_input, grad_target = gradients["both"]
    outcome.expected = f"d/dinput {summarize(want_input)}; d/dtarget {summarize(want_target)}"
    outcome.actual = f"d/dinput {summarize(grad_input)}; d/dtarget {summarize(grad_target)}"
    outcome.budget = float(np.max(budget_input))
    # Name only the claims that broke: a wrong d/dtarget says nothing about d/dinput.
    failures = [(claim, text) for claim, text in failures if claim not in unjudged]
    broken = {claim for claim, _ in failures}
    outcome.claim_results = {claim: ("unsupported" if claim in unjudged else
                                     "failed" if claim in broken else "passed")
                             for claim in CLAIMS}
    outcome.claim_reasons = dict(unjudged)
    if failures:
        outcome.status = "failed"
        outcome.claims = tuple(claim for claim in CLAIMS if claim in broken)
        outcome.checks = [text for _, text in failures]
        failing = [text for _, text in failures]
        outcome.actual = failing[0]
    return outcome


def errored_outcome(outcome, error, where):
    from klconform.engine.outcome import errored_outcome as errored

    errored(outcome, error)
    outcome.checks = [where + line for line in outcome.checks]
    return outcome


def _compare(label, got, want, budget, mask, failures, claim):
    if got is None:
        failures.append((claim, f"{label}: no gradient (None)"))
        return
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        failures.append((claim, f"{label}: shape {got.shape} != {want.shape}"))
        return
    with np.errstate(invalid="ignore"):
        bad = mask & ~(np.abs(got - want) <= budget)
    if np.any(bad):
        index = tuple(int(i[0]) for i in np.nonzero(bad))
        failures.append((claim, f"{label}: expected {want[index]:.10g} at index {list(index)}, "
                                f"got {got[index]:.10g} (budget {budget[index]:.3g})"))


def _hessians(call, x, t):
    """(d2/dtarget2, d2/dinput dtarget) of sum(result), elementwise (both are diagonal)."""
    scale = 1.0 / oracle.divisor_for(effective_reduction(call), x.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        if call.log_target:
            p = np.exp(t)
            return p * (t - x + 2.0) * scale, -p * scale
        return scale / t, -np.ones_like(t) * scale


def _finite_differences(adapter, call, gradients, target_checked):
    """First order from the forward values, second order from each mode's gradients."""
    failures = []
    x = np.asarray(call.input, dtype=np.float64)
    t = np.asarray(call.target, dtype=np.float64)
    direction = _direction(x.shape)
    # First order along `direction`, input side: the loss is linear in input.
    step_x = STEP * direction
    slope_x = (_total(adapter, replace(call, input=x + step_x))
               - _total(adapter, replace(call, input=x - step_x))) / 2.0
    # Target side: steps proportional to t keep t > 0 and leave zero targets alone.
    step_t = STEP * direction * np.where(target_checked, np.abs(t) if not call.log_target
                                         else 1.0, 0.0)
    slope_t = None
    if np.any(step_t):
        slope_t = (_total(adapter, replace(call, target=t + step_t))
                   - _total(adapter, replace(call, target=t - step_t))) / 2.0
    hessian_tt, hessian_xt = _hessians(call, x, t)
    mask = target_checked & (step_t != 0)
    for mode, arguments in MODES:
        grad_input, grad_target = gradients[mode]
        one_sided = replace(call, requires_grad=arguments)
        if "input" in arguments:
            _check_slope(f"{mode}: finite differences d/dinput", slope_x,
                         float(np.sum(grad_input * step_x)), failures, "gradient-input")
        if "target" in arguments and slope_t is not None:
            _check_slope(f"{mode}: finite differences d/dtarget", slope_t,
                         float(np.sum(np.where(target_checked, grad_target, 0.0) * step_t)),
                         failures, "gradient-target")
        if slope_t is None:
            continue
        # Second order along the target step: gradients are diagonal in the target.
        up_input, up_target = adapter.run_gradients(replace(one_sided, target=t + step_t))
        down_input, down_target = adapter.run_gradients(replace(one_sided, target=t - step_t))
        if "target" in arguments:
            _check_second_order(f"{mode}: second order d2/dtarget2", up_target, down_target,
                                hessian_tt, step_t, mask, t, failures, "gradient-target")
        if "input" in arguments:
            # computed from d/dinput, so a wrong input gradient shows up here too
            _check_second_order(f"{mode}: second order d2/dinput dtarget", up_input,
                                down_input, hessian_xt, step_t, mask, t, failures,
                                "gradient-input")
        elif "target" in arguments:
            # The mixed derivative from the target's side: d/dinput of d/dtarget.
            _, right_target = adapter.run_gradients(replace(one_sided, input=x + step_x))
            _, left_target = adapter.run_gradients(replace(one_sided, input=x - step_x))
            # d/dtarget is linear in the input: no truncation error to allow for.
            _check_second_order(f"{mode}: second order d2/dtarget dinput", right_target,
                                left_target, hessian_xt, step_x, target_checked, None,
                                failures, "gradient-target")
    return failures


def _check_second_order(label, up, down, hessian, step, mask, t, failures, claim):
    """Central differences of gradients along `step` against hessian * step, where `mask`.

    `t` (the target) when the difference runs along the target, whose 1/t curvature gives
    a truncation error growing with (step / t)^2; None when it runs along the input.
    """
    if up is None or down is None:
        failures.append((claim, f"{label}: no gradient (None)"))
        return
    observed = (np.asarray(up, dtype=np.float64) - np.asarray(down, dtype=np.float64)) / 2.0
    got = np.where(mask, observed, 0.0)
    with np.errstate(invalid="ignore"):  # inf * 0 at zero targets, masked out
        want = np.where(mask, hessian * step, 0.0)
    scale_of = np.abs(want)
    if t is not None:
        scale_of = scale_of + STEP * np.abs(step) / np.maximum(np.abs(t), 1e-300)
    if np.any(np.abs(got - want) > FINITE_DIFFERENCE_TOLERANCE * (scale_of + 1e-12) + 1e-12):
        failures.append((claim, f"{label}: finite differences of the gradients "
                                f"{summarize(got)} vs analytic {summarize(want)}"))


def _check_slope(label, slope, predicted, failures, claim):
    if not np.isfinite(slope):
        # The forward values themselves are not finite here (a zero target where the
        # library gives nan): the value cases judge that; a slope says nothing.
        return
    if not abs(slope - predicted) <= FINITE_DIFFERENCE_TOLERANCE * (abs(predicted) + 1e-12):
        failures.append((claim, f"{label}: forward values change by {slope:.10g}, the "
                                f"gradients predict {predicted:.10g}"))
