"""Gradient checks for adapters that declare autograd.

Three independent references, all in float64 numpy:
  * the analytic gradients (claims gradient-input, gradient-target);
  * central finite differences of the implementation's own forward values (first order);
  * central finite differences of the implementation's own gradients (second order).
Differences run along one fixed direction per argument, so a case costs a handful of
calls whatever its size. Target-gradient entries where target == 0 are implementation-
defined (log 0) and recorded by a probe case, not checked here.
"""

import math
from dataclasses import replace

import numpy as np

from klconform.adapters.base import Call
from klconform.constants import DTYPES
from klconform.dtypes import SMALLEST_NORMAL, UNIT_ROUNDOFF
from klconform.engine import gradient_mistakes, prepared
from klconform.engine.attribution import (
    LOWER_PRECISION,
    PRECISION_CLAIM,
    in_lower_precision,
    judge_value,
    precision_mistake,
)
from klconform.engine.diagnosis import DIAGNOSIS_PREFIX
from klconform.engine.evaluate import (
    ZEROS_LOST,
    budget_dtype,
    lower_precision_expected,
    make_call,
    oracle_for,
    own_outputs,
    plan_refusal,
    with_conversions,
    zeros_lost,
)
from klconform.engine.expectations import effective_reduction
from klconform.engine.judging import (
    distillation_case_not_applicable,
    unsupported_claims,
    value_claims,
)
from klconform.engine.outcome import CheckFailures, Outcome, unsupported
from klconform.oracle import budget
from klconform.oracle import float64 as oracle
from klconform.oracle.budget import K_ELEM
from klconform.short_text import summarize
from klconform.spec import tensors
from klconform.spec.claims import load_spec
from klconform.statuses import Level, Status

CLAIMS = ("gradient-input", "gradient-target")
# A gradient test's record names its case "grad:<case id>".
CASE_PREFIX = "grad:"
AMBIGUOUS = "the gradient is what several known mistakes give here: "
FORWARD_WRONG = ("the function's own value is wrong here (the value case's root cause): "
                 "KL's gradients are not its gradients, and below float64 no finite "
                 "difference of its own values can be judged")
# Judged where a case masks rows: their gradient is zero whatever the formula.
MASK_GRADIENT_CLAIM = "mask-excludes-gradient"
GRADIENT_DTYPES = DTYPES
# Finite differences only where float64 rounding leaves them meaningful.
FINITE_DIFFERENCE_DTYPE = "float64"
STEP = 1e-5
FINITE_DIFFERENCE_TOLERANCE = 1e-6


def eligible(case):
    """Value cases with finite inputs; relation and error cases add nothing here."""
    if case.kind != "value":
        return False
    # From the descriptions: collection asks this of every case, and building a
    # thorough-profile case's arrays in a default run would be most of collection's time.
    prediction, target = case.inputs["input"], case.inputs["target"]
    return bool(math.prod(tensors.shape_of(prediction)) and tensors.finite(prediction)
                and tensors.finite(target))


def _row_keep(call, shape):
    """Where rows count (the mask broadcast over the class axis); all True without a mask."""
    if call.mask is None or not len(shape):
        return np.ones(shape, dtype=bool)
    return np.broadcast_to(np.asarray(call.mask, dtype=bool)[..., None], shape)


def _scale(call, plan):
    """d value / d term: the plan's scale (T**2) over the canonical reduction's divisor."""
    shape = np.shape(call.input)
    return (plan.scale if plan else 1.0) / oracle.divisor_for(effective_reduction(call), shape)


def analytic(call: Call, plan=None):
    """(d input, d target, target mask) of sum(result) for the call, in float64.

    An argument the library takes as logits (plan.logits_gradients) is differentiated through
    its softmax: d/dx = scale (Q - P) for the prediction, and P (log P - x - KL of the row)
    for a log-space target; masked rows have zero gradient.
    """
    x = np.asarray(call.input, dtype=np.float64)
    t = np.asarray(call.target, dtype=np.float64)
    scale = _scale(call, plan)
    logits = plan.logits_gradients if plan else ()
    keep = _row_keep(call, x.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = np.exp(t) if call.log_target else t
        log_p = t if call.log_target else np.log(t)
        input_gradient = (np.exp(x) - p) if "input" in logits else -p
        if "target" in logits:
            row_kl = np.sum(np.where(p > 0, p * (log_p - x), 0.0), axis=-1, keepdims=True) \
                if x.ndim else np.where(p > 0, p * (log_p - x), 0.0)
            per_log_p = log_p - x - row_kl
        else:
            per_log_p = log_p - x + 1.0
        target_gradient = p * per_log_p if call.log_target else per_log_p
        checked = np.ones(t.shape, dtype=bool) if call.log_target else t > 0
    return (np.where(keep, input_gradient * scale, 0.0),
            np.where(keep, target_gradient * scale, 0.0), checked | ~keep)


def _budgets(call: Call, plan=None):
    conversions = plan.conversions if plan else ()
    logits = plan.logits_gradients if plan else ()
    x = np.abs(np.asarray(call.input, dtype=np.float64))
    t = np.asarray(call.target, dtype=np.float64)
    u, tiny = UNIT_ROUNDOFF[call.dtype], SMALLEST_NORMAL[call.dtype]
    scale = abs(_scale(call, plan))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
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
        if logits:
            # The library's own softmax: Q and P carry its rounding (oracle.budget), and the
            # row's KL is a sum over the row.
            finite_x = np.where(np.isfinite(x), x, 0.0)
            q = np.exp(-finite_x)
            error_q = budget.log_softmax_error(-finite_x, u)
            log_p = np.abs(np.log(np.where(p > 0, p, 1.0)))
            error_p = budget.log_softmax_error(np.where(p > 0, -log_p, 0.0), u)
            rows = (lambda values: np.sum(values, axis=-1, keepdims=True)) if x.ndim \
                else (lambda values: values)
            if "input" in logits:
                budget_input = budget_input + (K_ELEM * u * q + q * error_q
                                               + p * error_p) * scale
            if "target" in logits:
                spread = log_p + finite_x + rows(p * (log_p + finite_x)) + 2.0
                per = K_ELEM * u * spread + error_p * spread + rows(p * (error_p + error_q))
                budget_target = budget_target + (p * per if call.log_target else per) * scale
        # A subnormal P has no relative accuracy in the dtype: its term's gradient cannot be
        # bounded (as klconform.oracle.budget says of conversions).
        budget_target = np.where((p > 0) & (p < tiny), np.inf, budget_target)
    return budget_input, budget_target


def _direction(shape):
    # Fixed, irregular, sign-alternating: no symmetric cancellation hides an error.
    count = int(np.prod(shape))
    values = np.cos(np.arange(1, count + 1) * 1.7) + 0.25
    return values.reshape(shape)


def _total(adapter, call):
    return float(np.sum(adapter.run(call).value))


def _stepped_calls(call, plan, target_checked):
    """The calls whose totals the first-order finite differences take: the input moved
    both ways along the direction, then the target (None where it does not move)."""
    x = np.asarray(call.input, dtype=np.float64)
    t = np.asarray(call.target, dtype=np.float64)
    direction = _direction(x.shape)
    step_x = STEP * direction
    moved = _renormalised if "input" in plan.logits_gradients else (lambda values: values)
    # Target side: steps proportional to t keep t > 0 and leave zero targets alone.
    step_t = STEP * direction * np.where(target_checked, np.abs(t) if not call.log_target
                                         else 1.0, 0.0)
    if "target" in plan.logits_gradients:
        step_t = np.zeros_like(step_t)
    input_calls = (replace(call, input=moved(x + step_x)), replace(call, input=moved(x - step_x)))
    target_calls = ((replace(call, target=t + step_t), replace(call, target=t - step_t))
                    if np.any(step_t) else None)
    return step_x, step_t, input_calls, target_calls


def _wrong_a_step_away(adapter, case, call, plan, target_checked, failures):
    """(failures, mistakes): finite differences that fail because the function's value is
    wrong a step away (|KL| where KL crosses 0: right at the point, a kink beside it) are
    that value's failure, blamed where its mistake lies."""
    _, _, input_calls, target_calls = _stepped_calls(call, plan, target_checked)
    for stepped in input_calls + (target_calls or ()):
        blamed, found, _ = _value_judged(adapter, case, stepped, plan)
        if found and blamed and found.mistakes:
            return _moved(failures, (blamed,)), [found.mistakes[0]]
    return failures, []


def _value_judged(adapter, case, call, plan, lower=None, observation=None):
    """(claim blamed or None, CheckFailures, the case's value claims): the function's own
    value of `call` (its `observation` where already made) judged as the value case judges
    it; nothing found where its shape is not the oracle's (the value case reports that)."""
    if observation is None:
        observation = adapter.run(call)
    expected = with_conversions(oracle_for(call, dtype=budget_dtype(call, observation)),
                                call, plan)
    found = CheckFailures()
    values = value_claims(case.claims, call, load_spec(), bool(plan.composed))
    if np.shape(observation.value) != np.shape(expected.value):
        return None, found, values
    blamed, _ = judge_value(call, plan, observation.value, expected, found, values,
                            lower=lower, own=own_outputs(adapter, call))
    return blamed, found, values


# Which arguments require grad: both (the usual training loss), the input only
# (distillation with a detached teacher), the target only (VAEs, some RL losses). Libraries
# often have a separate backward path per combination, so each is checked on its own.
MODES = (("both", ("input", "target")), ("input only", ("input",)),
         ("target only", ("target",)))


def _masks_rows(call):
    # A case that masks rows judges their gradient too (n/a where no mask is declared).
    return call.mask is not None and not np.all(call.mask)


def _claims_of(call):
    return CLAIMS + ((MASK_GRADIENT_CLAIM,) if _masks_rows(call) else ())


def _unchecked(case, call, adapter):
    """(why the gradient test of `call` makes no call, or None; claim -> why it is not
    judged; the implementation's plan of the call, or None where it has none)."""
    reason = plan_refusal(adapter, call)
    if not adapter.capabilities.autograd:
        reason = "autograd"
    if reason:
        return f"{adapter.name} does not support {reason}", None, None
    plan = adapter.plan(call)
    spec = load_spec()
    not_applicable = distillation_case_not_applicable(case, plan, adapter.capabilities, spec)
    if not_applicable:
        return f"{adapter.name}: {not_applicable}", None, plan
    claims = _claims_of(call)
    unjudged = unsupported_claims(claims, plan, adapter.capabilities, spec)
    if "target" in plan.logits_gradients and not call.log_target \
            and np.any(np.asarray(call.target) == 0):
        # P = 0 reaches a logits target as -inf, whose softmax row has no finite gradient:
        # the -inf target's behaviour, recorded by the value case (impl-log-target-neginf).
        unjudged.setdefault("gradient-target", ZEROS_LOST)
    if len(unjudged) == len(claims):
        return f"{adapter.name}: {'; '.join(sorted(set(unjudged.values())))}", unjudged, plan
    return None, unjudged, plan


def planned_gradient_calls(case, dtype, adapter, device="cpu"):
    """(method, Call) of every call the gradient test makes of a function that passes it:
    each mode's gradients, then the finite differences'."""
    call = make_call(case, dtype, device)
    refusal, _, plan = _unchecked(case, call, adapter)
    if refusal:
        return []
    return [("run_gradients", replace(call, requires_grad=arguments))
            for _, arguments in MODES] + difference_calls(call, plan)


def _wanted(call, plan):
    """(analytic(), _budgets()) of the case's own call, kept with its arrays by
    engine.prepared (the key names every field of the plan they read)."""
    key = ("gradients", effective_reduction(call), bool(call.log_target), call.dtype,
           plan.scale, tuple(plan.logits_gradients), tuple(plan.conversions))
    return prepared.derived(call, key, lambda x, t: (
        analytic(replace(call, input=x, target=t), plan),
        _budgets(replace(call, input=x, target=t), plan)))


def work_out_ahead(case, dtype, adapter, device="cpu"):
    """Work out now, for engine.prepared to keep, what judging the gradients of a passing
    function asks of the oracle (the run does this while the library loads); returns the
    case's own call, or None where the test makes no call."""
    call = make_call(case, dtype, device)
    refusal, _, plan = _unchecked(case, call, adapter)
    if refusal:
        return None
    oracle_for(call)
    _wanted(call, plan)
    return call


def evaluate_gradients(case, dtype, adapter, device="cpu") -> Outcome:
    call = make_call(case, dtype, device)
    masks_rows = _masks_rows(call)
    outcome = Outcome(Status.PASSED, f"{CASE_PREFIX}{case.id}", dtype, _claims_of(call),
                      Level.MUST)
    refusal, unjudged, plan = _unchecked(case, call, adapter)
    if refusal:
        return unsupported(outcome, refusal, outcome.claims, unjudged)
    from klconform.engine import snippets as reproduce

    outcome.snippet = reproduce.snippet(adapter, call, case.id) + \
        "# gradients: adapter.run_gradients(Call(..., requires_grad=('input', 'target'))) " \
        "or result.sum().backward()\n"
    (want_input, want_target, target_checked), (budget_input, budget_target) = \
        _wanted(call, plan)
    masked = ~_row_keep(call, np.shape(call.input)) if masks_rows else None
    failures = []
    gradients = {}
    for mode, arguments in MODES:
        try:
            gradients[mode] = adapter.run_gradients(replace(call, requires_grad=arguments))
        except Exception as error:
            # Only the arguments this mode differentiates: a path that raises for the target
            # alone says nothing about the input's gradient.
            return _gradient_errored(outcome, error, f"{mode}: ",
                                   [f"gradient-{argument}" for argument in arguments])
        grad_input, grad_target = gradients[mode]
        kept = np.ones_like(target_checked) if masked is None else ~masked
        if "input" in arguments:
            _compare(f"{mode}: d/dinput", grad_input, want_input, budget_input,
                     kept, failures, "gradient-input")
        if "target" in arguments:
            _compare(f"{mode}: d/dtarget", grad_target, want_target, budget_target,
                     target_checked & kept, failures, "gradient-target")
        if masked is not None:
            # A gradient at a masked row is the mask's failure, not the formula's.
            for argument, got, want, allowed in (
                    ("input", grad_input, want_input, budget_input),
                    ("target", grad_target, want_target, budget_target)):
                if argument in arguments and got is not None:
                    _compare(f"{mode}: d/d{argument} at masked rows", got, want, allowed,
                             masked, failures, MASK_GRADIENT_CLAIM)
    if failures and dtype in LOWER_PRECISION:
        failures = _at_lower_precision(call, plan, gradients, want_input, want_target,
                                       target_checked, masked, failures)
    mistakes = []
    forward_wrong = False
    # Name only the claims that broke: a wrong d/dtarget says nothing about d/dinput, and a
    # claim not judged here has no failure to join anything.
    failures = [(claim, text) for claim, text in failures if claim not in unjudged]
    if any(claim in CLAIMS for claim, _ in failures) and not zeros_lost(plan, call):
        failures, mistakes, forward_wrong = _joined_to_forward(adapter, case, call, plan,
                                                               failures)
        if forward_wrong and dtype != FINITE_DIFFERENCE_DTYPE:
            for claim in CLAIMS:
                unjudged.setdefault(claim, FORWARD_WRONG)
        elif not forward_wrong:
            failures, mistakes = _gradient_mistake(adapter, call, plan, gradients, failures,
                                                   (budget_input, budget_target),
                                                   target_checked, want_input, want_target)
            if mistakes and mistakes[0].startswith(AMBIGUOUS):
                for claim in CLAIMS:
                    unjudged.setdefault(claim, mistakes[0])
                mistakes = []
    # A forward value at a lower precision than its dtype is no base for a float64 step.
    if (not failures or forward_wrong) and forward_wrong != PRECISION_CLAIM \
            and dtype == FINITE_DIFFERENCE_DTYPE:
        try:
            # Of a wrong function, only whether autograd differentiates what it computes.
            differences = _finite_differences(adapter, call, gradients, target_checked, plan,
                                              first_order_only=forward_wrong)
            # A claim left unjudged here (several mistakes give these gradients) is not
            # judged by a step either: the step would blame whichever its value fits.
            differences = [(claim, text) for claim, text in differences
                           if claim not in unjudged]
            if differences and not forward_wrong:
                differences, mistakes = _wrong_a_step_away(adapter, case, call, plan,
                                                           target_checked, differences)
            failures += differences
        except Exception as error:
            return _gradient_errored(outcome, error, "finite differences: ")
    grad_input, grad_target = gradients["both"]
    if any(claim == PRECISION_CLAIM for claim, _ in failures):
        outcome.diagnosis = f"{DIAGNOSIS_PREFIX} {precision_mistake(call.dtype)}"
    outcome.expected = f"d/dinput {summarize(want_input)}; d/dtarget {summarize(want_target)}"
    outcome.actual = f"d/dinput {summarize(grad_input)}; d/dtarget {summarize(grad_target)}"
    outcome.budget = float(np.max(budget_input))
    broken = {claim for claim, _ in failures}
    claims = CLAIMS + ((MASK_GRADIENT_CLAIM,) if masked is not None else ())
    claims += tuple(dict.fromkeys(claim for claim, _ in failures if claim not in claims))
    outcome.claim_results = {claim: (Status.UNSUPPORTED if claim in unjudged else
                                     Status.FAILED if claim in broken else Status.PASSED)
                             for claim in claims}
    outcome.claim_reasons = dict(unjudged)
    if failures:
        outcome.status = Status.FAILED
        outcome.claims = tuple(claim for claim in claims if claim in broken)
        outcome.checks = [text for _, text in failures]
        failing = [text for _, text in failures]
        outcome.actual = failing[0]
        if mistakes:
            # The value's root cause: the report groups both under one headline.
            outcome.diagnosis = f"{DIAGNOSIS_PREFIX} {mistakes[0]}"
    return outcome


def _at_lower_precision(call, plan, gradients, want_input, want_target, target_checked,
                        masked, failures):
    """Gradients whose every error fits the lower precision's budgets were computed in it:
    one failure of the precision claim, not of the gradient claims."""
    lower = LOWER_PRECISION[call.dtype]
    budget_input, budget_target = _budgets(replace(call, dtype=lower), plan)
    kept = np.ones_like(target_checked) if masked is None else ~masked
    coarse = []
    for mode, arguments in MODES:
        grad_input, grad_target = gradients[mode]
        if "input" in arguments:
            _compare(f"{mode}: d/dinput", grad_input, want_input, budget_input, kept, coarse,
                     "gradient-input")
        if "target" in arguments:
            _compare(f"{mode}: d/dtarget", grad_target, want_target, budget_target,
                     target_checked & kept, coarse, "gradient-target")
    computed = [gradient for pair in gradients.values() for gradient in pair
                if gradient is not None]
    if coarse or not all(in_lower_precision(gradient, call.dtype) for gradient in computed):
        return failures
    return [(PRECISION_CLAIM, failures[0][1])]


def _joined_to_forward(adapter, case, call, plan, failures):
    """(failures, mistakes, forward wrong): where the function's own value is wrong, KL's
    gradients are not the reference for its autograd, and their failures join the value's
    root cause (the claim and mistake the value case blames). None of that where the value
    is right: the gradient is then wrong on its own."""
    try:
        observation = prepared.kept_observation(adapter, call)
    except Exception:  # the value case reports the error
        return failures, [], False
    blamed, found, values = _value_judged(adapter, case, call, plan, observation=observation,
                                          lower=lambda: lower_precision_expected(call, plan))
    if not found:
        return failures, [], False
    # The third item is truthy: the value's blamed claim (PRECISION_CLAIM: no finite steps).
    return _moved(failures, (blamed or values[0],)), list(found.mistakes), blamed or True


def _gradient_mistake(adapter, call, plan, gradients, failures, budgets, target_checked,
                      want_input, want_target):
    """(failures, mistakes): gradient failures of a right value that a known mistake
    reproduces move to that mistake's claim (klconform.engine.gradient_mistakes)."""
    try:
        observation = prepared.kept_observation(adapter, call)
        expected = with_conversions(oracle_for(call, dtype=budget_dtype(call, observation)),
                                    call, plan)
        if call.reduction is None:
            # The default is judged by the function's own 'mean', as its value is.
            mean = adapter.run_gradients(replace(call, reduction="mean"))
            if not all(gradient_mistakes.within(got, want, allowed, checked)
                       for got, want, allowed, checked in zip(
                           gradients["both"], mean, budgets, (None, target_checked), strict=True)):
                found = ("default-reduction-mean",
                         "the default reduction is not the function's own 'mean'")
                return _moved(failures, found), [found[1]]
            call = replace(call, reduction="mean")
    except Exception:  # the value case reports the error
        return failures, []
    found = gradient_mistakes.explaining(call, plan, gradients, budgets, target_checked,
                                         observation.value, analytic, want_input,
                                         want_target, expected)
    claims = {claim for claim, _ in found}
    if len(claims) == 1:
        return _moved(failures, found[0]), [found[0][1]]
    if claims:
        # Known mistakes of different claims all give this gradient (at P = Q, -KL, |KL| and
        # KL(Q||P) negate it alike): not judged here; the value cases tell them apart.
        ambiguous = "; ".join(sorted({mistake for _, mistake in found}))
        return [(claim, text) for claim, text in failures if claim not in CLAIMS], [
            f"{AMBIGUOUS}{ambiguous}"]
    return failures, []


def _moved(failures, found):
    return [(found[0], text) if claim in CLAIMS else (claim, text) for claim, text in failures]


def _gradient_errored(outcome, error, where, claims=None):
    from klconform.engine.outcome import errored_outcome as errored

    errored(outcome, error, tuple(claims or ()))
    outcome.checks = [where + line for line in outcome.checks]
    if claims:
        outcome.claims = tuple(claims)
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


def _hessians(call, x, t, plan):
    """(d2/dtarget2, d2/dinput dtarget) of sum(result), elementwise (both are diagonal;
    the input's logits softmax term does not depend on the target)."""
    scale = _scale(call, plan) * _row_keep(call, x.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        if call.log_target:
            p = np.exp(t)
            return p * (t - x + 2.0) * scale, -p * scale
        return scale / t, -np.ones_like(t) * scale


def _renormalised(log_q):
    """log_softmax along the class axis: a step in logits keeps the rows normalised."""
    if not np.ndim(log_q):
        return log_q
    top = np.max(log_q, axis=-1, keepdims=True)
    return log_q - top - np.log(np.sum(np.exp(log_q - top), axis=-1, keepdims=True))


def _finite_differences(adapter, call, gradients, target_checked, plan,
                        first_order_only=False):
    """First order from the forward values, second order from each mode's gradients
    (KL's Hessians: not for a function whose value is not KL's, `first_order_only`).

    A logits prediction steps in logits (the rows renormalised), where its gradient lives; a
    logits target, which no step in P keeps normalised, is judged by its analytic gradient
    alone."""
    failures = []
    x = np.asarray(call.input, dtype=np.float64)
    t = np.asarray(call.target, dtype=np.float64)
    logits = plan.logits_gradients
    # First order along the direction, input side: the loss is linear in input.
    step_x, step_t, input_calls, target_calls = _stepped_calls(call, plan, target_checked)
    up, down = input_calls
    slope_x = (_total(adapter, up) - _total(adapter, down)) / 2.0
    slope_t = None
    if target_calls is not None:
        up, down = target_calls
        slope_t = (_total(adapter, up) - _total(adapter, down)) / 2.0
    hessian_tt, hessian_xt = _hessians(call, x, t, plan)
    # Each forward value carries its own rounding (a function normalising its logits rounds
    # near u even where the KL is 0): a difference of two is no finer than their budgets.
    noise = float(np.sum(with_conversions(oracle_for(call), call, plan).budget))
    mask = target_checked & (step_t != 0)
    for mode, arguments in MODES:
        grad_input, grad_target = gradients[mode]
        one_sided = replace(call, requires_grad=arguments)
        # An absent gradient has failed its analytic check already: nothing to step along.
        if "input" in arguments and grad_input is not None:
            _check_slope(f"{mode}: finite differences d/dinput", slope_x,
                         float(np.sum(grad_input * step_x)), failures, "gradient-input", noise)
        if "target" in arguments and slope_t is not None and grad_target is not None:
            _check_slope(f"{mode}: finite differences d/dtarget", slope_t,
                         float(np.sum(np.where(target_checked, grad_target, 0.0) * step_t)),
                         failures, "gradient-target", noise)
        if slope_t is None or first_order_only:
            continue
        along_target, along_input = _second_order_calls(one_sided, x, t, step_x, step_t,
                                                        arguments, logits)
        # Second order along the target step: gradients are diagonal in the target.
        up_input, up_target = adapter.run_gradients(along_target[0])
        down_input, down_target = adapter.run_gradients(along_target[1])
        if "target" in arguments:
            _check_second_order(f"{mode}: second order d2/dtarget2", up_target, down_target,
                                hessian_tt, step_t, mask, t, failures, "gradient-target")
        if "input" in arguments:
            # computed from d/dinput, so a wrong input gradient shows up here too. Through a
            # softmax, d/ds_i = c (Q_i sum_j P_j - P_i): a step in P moves every class.
            mixed = hessian_xt * step_t
            if "input" in logits and x.ndim:
                mixed = mixed - np.exp(x) * np.sum(hessian_xt * step_t, axis=-1,
                                                   keepdims=True)
            _check_second_order(f"{mode}: second order d2/dinput dtarget", up_input,
                                down_input, mixed, step_t, mask, t, failures,
                                "gradient-input", product=True)
        elif along_input is not None:
            # The mixed derivative from the target's side: d/dinput of d/dtarget.
            _, right_target = adapter.run_gradients(along_input[0])
            _, left_target = adapter.run_gradients(along_input[1])
            # d/dtarget is linear in the input: no truncation error to allow for.
            _check_second_order(f"{mode}: second order d2/dtarget dinput", right_target,
                                left_target, hessian_xt, step_x, target_checked, None,
                                failures, "gradient-target")
    return failures


def _second_order_calls(one_sided, x, t, step_x, step_t, arguments, logits):
    """The gradient calls of one mode's second-order checks: a step each way along the
    target, and, for the target alone where the input is not logits, along the input
    (else None)."""
    along_target = (replace(one_sided, target=t + step_t), replace(one_sided, target=t - step_t))
    along_input = None
    if "input" not in arguments and "target" in arguments and "input" not in logits:
        along_input = (replace(one_sided, input=x + step_x), replace(one_sided, input=x - step_x))
    return along_target, along_input


def difference_calls(call, plan):
    """(method, Call) of every call the finite differences make of a function whose
    gradients pass: what a run's calls made ahead plan for a gradient case
    (engine.planned_calls)."""
    if call.dtype != FINITE_DIFFERENCE_DTYPE:
        return []
    (_, _, target_checked), _ = _wanted(call, plan)
    x = np.asarray(call.input, dtype=np.float64)
    t = np.asarray(call.target, dtype=np.float64)
    step_x, step_t, input_calls, target_calls = _stepped_calls(call, plan, target_checked)
    calls = [("run", each) for each in input_calls + (target_calls or ())]
    if target_calls is None:
        return calls
    for _, arguments in MODES:
        along_target, along_input = _second_order_calls(
            replace(call, requires_grad=arguments), x, t, step_x, step_t, arguments,
            plan.logits_gradients)
        calls += [("run_gradients", each) for each in along_target + (along_input or ())]
    return calls


def _check_second_order(label, up, down, hessian, step, mask, t, failures, claim,
                        product=False):
    """Central differences of gradients along `step` against hessian * step, where `mask`.

    `t` (the target) when the difference runs along the target, whose 1/t curvature gives
    a truncation error growing with (step / t)^2; None when it runs along the input.
    `product`: `hessian` is already the Hessian times the step (not diagonal).
    """
    if up is None or down is None:
        failures.append((claim, f"{label}: no gradient (None)"))
        return
    observed = (np.asarray(up, dtype=np.float64) - np.asarray(down, dtype=np.float64)) / 2.0
    got = np.where(mask, observed, 0.0)
    with np.errstate(invalid="ignore"):  # inf * 0 at zero targets, masked out
        want = np.where(mask, hessian if product else hessian * step, 0.0)
    scale_of = np.abs(want)
    if t is not None:
        scale_of = scale_of + STEP * np.abs(step) / np.maximum(np.abs(t), 1e-300)
    if np.any(np.abs(got - want) > FINITE_DIFFERENCE_TOLERANCE * (scale_of + 1e-12) + 1e-12):
        failures.append((claim, f"{label}: finite differences of the gradients "
                                f"{summarize(got)} vs analytic {summarize(want)}"))


def _check_slope(label, slope, predicted, failures, claim, noise=0.0):
    if not np.isfinite(slope):
        # The forward values themselves are not finite here (a zero target where the
        # library gives nan): the value cases judge that; a slope says nothing.
        return
    if not abs(slope - predicted) <= FINITE_DIFFERENCE_TOLERANCE * (abs(predicted) + 1e-12) \
            + noise:
        failures.append((claim, f"{label}: forward values change by {slope:.10g}, the "
                                f"gradients predict {predicted:.10g}"))
