"""One case at one dtype against one adapter: build the call, run it, compare with the oracle.

This is where a case's expectations are read and dispatched to klconform.engine.expectations. The
result is an Outcome; turning it into a pytest result and a report entry happens elsewhere.
"""

from dataclasses import dataclass, replace

import numpy as np

from klconform.adapters.base import Call
from klconform.dtypes import UNIT_ROUNDOFF, round_to
from klconform.engine import prepared
from klconform.engine import snippets as reproduce
from klconform.engine.attribution import (
    LOWER_PRECISION,
    PRECISION_CLAIM,
    explaining,
    judge_value,
)
from klconform.engine.call_errors import CALL_NOT_COMPLETED
from klconform.engine.diagnosis import DIAGNOSIS_PREFIX, explain_mismatch
from klconform.engine.expectations import (
    check_cross_entropy,
    check_published,
    check_relation,
    check_sign,
    check_summation_accuracy,
    check_warnings,
    effective_reduction,
    oracle_for,
    pairwise_sum,
    representation_allowance,
)
from klconform.engine.judging import (
    CALL_CLAIM,
    DTYPE_CLAIM,
    claims_of_family,
    settle,
    unsupported_claims,
    value_claims,
)
from klconform.engine.outcome import CheckFailures, Outcome, errored_outcome, unsupported
from klconform.oracle import budget
from klconform.oracle import float64 as oracle
from klconform.short_text import describe_observed, first_line, summarize
from klconform.spec.claims import load_spec
from klconform.statuses import Level, Status


def make_call(case, dtype, device, arrays=None, call_args=None, mask=None, kept_by=None):
    """The call of `case` at `dtype`, or of `arrays` with `call_args`. `kept_by`: what owns
    `arrays` and keeps them unchanged (a replayed example): their rounding, and what is
    worked out from it, are then kept with it, as a case's own call's are (engine.prepared)."""
    args = case.call if call_args is None else call_args
    input_dtype, target_dtype = args.get("input_dtype"), args.get("target_dtype")

    def round_both():
        x, t = arrays if arrays is not None else case.arrays
        return _round_argument(x, input_dtype or dtype), _round_argument(t, target_dtype or dtype)

    if arrays is None and call_args is None:
        rounded_input, rounded_target = prepared.rounded_arrays(
            case, (dtype, input_dtype, target_dtype), round_both, case.mask)
    elif kept_by is not None:
        rounded_input, rounded_target = prepared.rounded_arrays(
            kept_by, (dtype, input_dtype, target_dtype), round_both, mask)
    else:
        rounded_input, rounded_target = round_both()
    return Call(
        input=rounded_input, target=rounded_target, dtype=dtype,
        reduction=args.get("reduction"), log_target=args.get("log_target"),
        legacy=dict(args.get("legacy", {})), device=device,
        input_dtype=input_dtype, target_dtype=target_dtype,
        temperature=args.get("temperature"),
        mask=case.mask if arrays is None else mask,
    )


def _round_argument(values, dtype):
    if dtype == "int64":
        return np.round(np.asarray(values, dtype=np.float64))
    return round_to(values, dtype)


def plan_refusal(adapter, call: Call):
    return adapter.plan(call).unsupported


@dataclass(frozen=True)
class Evidence:
    """What the checks of one case look at: the call, its result, the oracle's answer, and
    for a relation the second call's result and answer."""

    case: object
    call: Call
    observation: object
    value: np.ndarray
    expected: object
    other_value: np.ndarray | None = None
    other_expected: object = None


# expect key -> (families of the claims it judges, check). `oracle` is every value case's.
EXPECTATION_CHECKS = {}


def expectation(key, families=()):
    def register(check):
        EXPECTATION_CHECKS[key] = (families, check)
        return check
    return register


@expectation("published", ("worked-examples",))
def _published(evidence, failures, claims):
    check_published(evidence.case, evidence.call, evidence.value, evidence.expected, failures,
                    claims)


@expectation("sign", ("sign",))
def _sign(evidence, failures, claims):
    check_sign(evidence.case.expect, evidence.call, evidence.value, evidence.expected, failures,
               claims)


@expectation("cross_entropy", ("cross-entropy",))
def _cross_entropy(evidence, failures, claims):
    check_cross_entropy(evidence.case.expect, evidence.call, evidence.value, evidence.expected,
                        failures, claims)


@expectation("relation", ("roles", "reductions", "log-target", "pointwise", "sign"))
def _relation(evidence, failures, claims):
    check_relation(evidence.case.expect["relation"], evidence.value, evidence.expected,
                   evidence.other_value, evidence.other_expected, failures, claims)


@expectation("warns", ("warnings",))
def _warns(evidence, failures, claims):
    check_warnings(evidence.case.expect["warns"], evidence.observation, failures, claims)


@expectation("summation_accuracy", ("precision",))
def _summation_accuracy(evidence, failures, claims):
    return check_summation_accuracy(evidence.case.expect["summation_accuracy"], evidence.call,
                                    evidence.value, evidence.expected, failures, claims)


# Keys that are not checks of a value: they choose another kind of case.
NOT_VALUE_CHECKS = ("oracle", "raises", "probe", "probe_gradient")


def evaluate(case, dtype, adapter, device="cpu") -> Outcome:
    spec = load_spec()
    outcome = Outcome(Status.PASSED, case.id, dtype, case.claims, case.level)
    calls = _calls_of(case, dtype, device)
    call = calls[0]
    plans = [adapter.plan(each) for each in calls]
    for plan in plans:
        if plan.unsupported:
            claims = list(case.claims)
            if case.kind == "value" and dtype in LOWER_PRECISION:
                # Every value case at such a dtype judges the precision claim (engine.attribution).
                claims.append(PRECISION_CLAIM)
            return unsupported(outcome, f"{adapter.name} does not support {plan.unsupported}",
                               dict.fromkeys(claims))
    plan = plans[0]
    composed, values, judged, cannot = _judgement(case, call, plans, adapter, spec)
    if case.kind == "value" and zeros_lost(plan, call):
        return _zeros_recorded(adapter, call, case, judged, outcome)
    if all(claim in cannot for claim in judged):
        return unsupported(outcome, f"{adapter.name}: {'; '.join(sorted(set(cannot.values())))}",
                           judged, cannot)
    if plan.composed:
        outcome.notes.append(plan.composed)
    outcome.snippet = reproduce.snippet(adapter, call, case.id)
    if case.kind == "probe":
        return _probe(case, adapter, call, outcome)
    if case.kind == "raises":
        try:
            _expect_error(adapter, call, outcome)
        except CALL_NOT_COMPLETED as error:
            return errored_outcome(outcome, error, judged, cannot)
        outcome.claim_results = {claim: (Status.FAILED if outcome.status == Status.FAILED
                                          else Status.PASSED)
                                 for claim in case.claims}
        return outcome
    try:
        # Kept: the gradient test judges this value again where its gradients fail.
        observation = prepared.kept_observation(adapter, call)
    except Exception as error:  # the implementation's failure is a result, not a crash
        return errored_outcome(outcome, error, judged, cannot)
    failures = CheckFailures()
    expected = _expected(case, call, plan, budget_dtype(call, observation))
    if case.expect.get("sign") == "zero" and expected.reduction != "none":
        # The exact distributions give 0: an implementation closer to that than to the value
        # of the rounded inputs (one that renormalises, say) is right too.
        expected = replace(expected, budget=np.asarray(
            expected.budget + representation_allowance(call, expected)))
    outcome.expected = summarize(expected.value)
    outcome.actual = summarize(observation.value)
    outcome.budget = float(np.max(expected.budget)) if expected.budget.size else 0.0
    if observation.dtype != call.dtype:
        failures.add(f"result dtype {observation.dtype} != input dtype {call.dtype}",
                     [DTYPE_CLAIM])
        judged.append(DTYPE_CLAIM)
    if observation.shape != expected.value.shape:
        # A known mistake can change the shape ('none' summed per row); else the call's own
        # shape convention is what broke.
        blamed, mistake = explaining(call, plan, observation.value, expected) or (
            CALL_CLAIM.get(call.reduction, values[0] if values else None), None)
        failures.add(f"shape {observation.shape} != expected {expected.value.shape}",
                     [blamed] if blamed else values)
        if mistake:
            failures.mistakes.append(mistake)
        if blamed and blamed not in judged:
            judged.append(blamed)
            cannot.pop(blamed, None)
    else:
        before = len(failures.lines)
        judged_at, blamed = _judge_value(call, plan, observation.value, expected, failures,
                                         values, judged, cannot,
                                         own_outputs(adapter, call))
        # A value computed at a lower precision is that claim's failure; the case's other
        # checks, the second call's included, are judged at the precision it has.
        precision = None if judged_at is expected else LOWER_PRECISION[call.dtype]
        expected = judged_at
        # A wrong value makes the case's other value checks fail as its consequences: they
        # fall on the claim the value broke, not on claims of their own (one bug, one claim).
        consequence = None
        if len(failures.lines) > before and blamed != PRECISION_CLAIM:
            consequence = [blamed] if blamed else values
        evidence = Evidence(case, call, observation, observation.value, expected)
        other_consequence = None
        if "relation" in case.expect:
            evidence, other_consequence = _second_call(
                adapter, calls[1], plans[1], evidence, failures, outcome, values, precision)
        for key in case.expect:
            if key in NOT_VALUE_CHECKS or evidence is None:
                continue
            families, check = EXPECTATION_CHECKS[key]
            claims = claims_of_family(families, case.claims, call, spec, composed)
            cause = consequence or (other_consequence if key == "relation" else None)
            if cause and key != "warns":
                # A claim that follows from the broken one fails with it, as what it
                # states is then untrue ('mean' is the KL value when it divides by size(0)).
                claims = cause + [claim for claim in claims
                                  if set(cause) & set(spec.claims[claim].follows)]
            figures = check(evidence, failures, claims)
            if figures:
                outcome.message = figures
    if "warns" in case.expect and observation.shape != expected.value.shape:
        _warns(Evidence(case, call, observation, observation.value, expected), failures,
               claims_of_family(("warnings",), case.claims, call, spec, composed))
    for claim in failures.by_claim:
        # A claim a check blamed although the case does not name it (isolate's choice).
        if claim and claim not in judged:
            judged.append(claim)
            cannot.pop(claim, None)
    settle(outcome, failures, judged, cannot, spec)
    if outcome.status == Status.FAILED:
        # explain_mismatch() itself passes over mistakes whose shape differs from the result's. A
        # mistake that attributed the failure names it first: the root cause's headline.
        outcome.diagnosis = (f"{DIAGNOSIS_PREFIX} {failures.mistakes[0]}" if failures.mistakes
                             else explain_mismatch(call, observation.value, expected))
    return outcome


def _judge_value(call, plan, value, expected, failures, claims, judged, unsupported,
                 own=None):
    """The oracle comparison, blamed on one claim where a known mistake explains it
    (klconform.engine.attribution); that claim is then judged whatever the case names.
    Returns the Expected the case's other checks use (the lower precision's, for a value
    computed in it) and the claim blamed, if a known mistake was."""
    blamed, expected = judge_value(call, plan, value, expected, failures, claims,
                                   lower=lambda: lower_precision_expected(call, plan), own=own)
    if call.dtype in LOWER_PRECISION and PRECISION_CLAIM not in judged:
        judged.append(PRECISION_CLAIM)
    if blamed:
        if blamed not in judged:
            judged.append(blamed)
        unsupported.pop(blamed, None)
    return expected, blamed


def own_outputs(adapter, call):
    """reduction -> (the implementation's own value for `call` under that reduction, its
    Expected), or None where that reduction is not the library's own or the call raises:
    what engine.attribution.isolate judges a wrong value's stages by. Called only for a
    wrong value."""
    def own(reduction):
        other = replace(call, reduction=reduction)
        plan = adapter.plan(other)
        if plan.unsupported or plan.composed:
            return None
        try:
            observation = adapter.run(other)
        except Exception:  # the case that makes this call itself reports its error
            return None
        return observation.value, with_conversions(
            oracle_for(other, dtype=budget_dtype(other, observation)), other, plan)

    return own


def lower_precision_expected(call, plan):
    """The oracle at the precision a function that computes below the call's dtype uses."""
    lower = LOWER_PRECISION.get(call.dtype)
    return with_conversions(oracle_for(call, dtype=lower), call, plan) if lower else None


NEGINF_TARGET_CLAIM = "impl-log-target-neginf"
ZEROS_LOST = ("the target has zeros, which the library's log-space target can only state as "
              "-inf: implementation-defined (recorded under impl-log-target-neginf)")


def _calls_of(case, dtype, device):
    """The case's call, and its relation's second call where it has one."""
    calls = [make_call(case, dtype, device)]
    if "relation" in case.expect:
        other_arrays, other_args = case.other_call()
        calls.append(make_call(case, dtype, device, other_arrays, other_args, case.mask))
    return calls


def _judgement(case, call, plans, adapter, spec):
    """(whether a plan composes the reduction, the value claims, the claims judged, claim
    -> why it cannot be judged)."""
    composed = any(each.composed for each in plans)
    judged = list(case.claims)
    values = value_claims(case.claims, call, spec, composed) if case.kind == "value" else []
    judged += values
    cannot = {}
    for each in plans:
        cannot.update(unsupported_claims(judged, each, adapter.capabilities, spec))
    return composed, values, judged, cannot


def planned_case_calls(case, dtype, adapter, device="cpu"):
    """(method, Call) of every call the case makes of a function that passes it."""
    calls = _calls_of(case, dtype, device)
    plans = [adapter.plan(each) for each in calls]
    if any(plan.unsupported for plan in plans):
        return []
    made = [("run", calls[0])]
    if case.kind == "value" and zeros_lost(plans[0], calls[0]):
        return made
    _, _, judged, cannot = _judgement(case, calls[0], plans, adapter, load_spec())
    if all(claim in cannot for claim in judged):
        return []
    if case.kind == "probe" and case.expect.get("probe_gradient") \
            and adapter.capabilities.autograd:
        made.append(("run_gradients", calls[0]))
    if case.kind == "value" and "relation" in case.expect:
        made.append(("run", calls[1]))
    return made


def work_out_ahead(case, dtype, adapter, device="cpu"):
    """Work out now, for engine.prepared to keep, what judging a passing answer to each of
    the case's calls asks of the oracle (the run does this while the library loads); returns
    the case's own call, or None where the test makes no call."""
    made = planned_case_calls(case, dtype, adapter, device)
    for _, call in made:
        oracle_for(call)
    if not made:
        return None
    if "summation_accuracy" in case.expect:
        pairwise_sum(made[0][1])
    return made[0][1]


def _zeros_recorded(adapter, call, case, judged, outcome):
    """A target in log space (log-probabilities, logits) states P = 0 only as -inf, whatever
    the function: what it gives there is the implementation-defined -inf target's, recorded,
    and the case's own claims are not judged on it."""
    unsupported(outcome, "", judged, dict.fromkeys(judged, ZEROS_LOST))
    outcome.status = Status.RECORDED
    outcome.claims = (NEGINF_TARGET_CLAIM,)
    outcome.level = Level.IMPLEMENTATION_DEFINED
    outcome.claim_results[NEGINF_TARGET_CLAIM] = Status.RECORDED
    outcome.observed, _ = _observed(adapter, call)
    outcome.message = (f"{case.id}: P = 0 given as -inf to its log-space target: "
                       f"{describe_observed(outcome.observed)}")
    return outcome


def zeros_lost(plan, call):
    return any(conversion.startswith("target") for conversion in plan.conversions) \
        and not call.log_target and bool(np.any(np.asarray(call.target) == 0))


def _second_call(adapter, other_call, other_plan, evidence, failures, outcome, claims,
                 precision=None):
    """(evidence with the second call's value, the claims its own wrong value broke or
    None); (None, None), with a failure, if it raised. `precision`: the dtype whose budget
    it is judged at, where not its own."""
    try:
        other = adapter.run(other_call)
    except Exception as error:
        failures.add(f"relation: the second call raised {type(error).__name__}: "
                     f"{first_line(error)}", claims)
        return None, None
    outcome.snippet += "# second call of the relation:\n" + reproduce.snippet(
        adapter, other_call, evidence.case.id)
    # A result of a lower precision than the call (result-dtype's failure alone) is held
    # to what that precision can do, as the first call's is.
    other_expected = with_conversions(
        oracle_for(other_call, dtype=precision or budget_dtype(other_call, other)), other_call,
        other_plan)
    if np.shape(other.value) == np.shape(other_expected.value):
        # A wrong second value breaks the relation as its consequence: the failure is that
        # value's, blamed where its own mistake lies (batchmean's divisor, say).
        found = CheckFailures()
        blamed, _ = judge_value(other_call, other_plan, other.value, other_expected, found,
                                claims, "second call", own=own_outputs(adapter, other_call))
        if found:
            cause = [blamed] if blamed else claims
            for line in found.lines:
                failures.add(line, cause)
            failures.mistakes.extend(found.mistakes)
            return replace(evidence, other_value=other.value,
                           other_expected=other_expected), cause
    return replace(evidence, other_value=other.value, other_expected=other_expected), None


def with_conversions(expected, call, plan):
    """The oracle's Expected for what the plan says the library computes: plus the budget of
    klconform's own space conversions and of the library's own normalisation of logits, times
    the plan's scale (a distillation loss's T**2)."""
    extra = None
    x, t, log_target = call.input, call.target, bool(call.log_target)
    if plan.conversions:
        extra = budget.conversion_budget(x, t, log_target, plan.conversions, call.dtype)
        scaled = tuple(conversion.split()[1] for conversion in plan.conversions
                       if conversion.startswith("temperature"))
        if scaled:
            extra = extra + budget.temperature_budget(x, t, log_target, scaled, call.dtype)
    if plan.normalised:
        normalising = budget.normalisation_budget(x, t, log_target, plan.normalised,
                                                  call.dtype)
        extra = normalising if extra is None else extra + normalising
    if extra is not None:
        if call.mask is not None and np.ndim(extra):
            extra = np.where(np.asarray(call.mask, dtype=bool)[..., None], extra, 0.0)
        if expected.reduction == "none":
            widened = expected.budget + extra
        else:
            with np.errstate(invalid="ignore"):
                widened = np.asarray(expected.budget + np.sum(extra) / expected.divisor)
        expected = replace(expected, budget=widened)
    if plan.scale != 1.0:
        expected = replace(expected, value=np.asarray(expected.value * plan.scale),
                           budget=np.asarray(expected.budget * plan.scale))
    return expected


def budget_dtype(call, observation):
    """The precision a result is judged at: the call's dtype, or the result's own where the
    library returned a lower precision (that is `result-dtype`'s failure alone, and its
    values are then held to what that precision can do, not failed claim by claim)."""
    got = observation.dtype
    if got in UNIT_ROUNDOFF and call.dtype in UNIT_ROUNDOFF \
            and UNIT_ROUNDOFF[got] > UNIT_ROUNDOFF[call.dtype]:
        return got
    return call.dtype


def _expected(case, call, plan, dtype=None):
    expected = with_conversions(oracle_for(call, dtype=dtype), call, plan)
    if "published" in case.expect:
        # Worked examples: replace the float64 value by the extended-precision one. mpmath is
        # imported here, where one is judged: a process that judges none (the ahead child)
        # starts 18 ms sooner.
        from klconform.oracle import extended as precise

        exact = precise.as_float64(precise.kl_value(
            call.input, call.target, reduction=effective_reduction(call),
            log_target=bool(call.log_target)))
        expected = oracle.Expected(np.asarray(exact), expected.budget, expected.reduction,
                                   expected.divisor, expected.magnitude_sum,
                                   expected.abs_term_sum)
    return expected


def _expect_error(adapter, call, outcome):
    try:
        observation = adapter.run(call)
    except CALL_NOT_COMPLETED:
        raise
    except Exception as error:
        outcome.actual = f"{type(error).__name__}: {first_line(error)}"
        outcome.expected = "an error"
        return outcome
    outcome.status = Status.FAILED
    outcome.expected = "an error"
    outcome.actual = f"returned {summarize(observation.value)}"
    outcome.checks = [f"raises: expected an error, the call returned {outcome.actual[9:]}"]
    return outcome


def _observed(adapter, call):
    """(what a recorded call gave, as the report shows it; the observation or None)."""
    try:
        observation = adapter.run(call)
    except Exception as error:
        return {"raises": f"{type(error).__name__}: {first_line(error)}"}, None
    return {"value": summarize(observation.value), "dtype": observation.dtype,
            "shape": list(observation.shape), "warnings": list(observation.warnings)}, \
        observation


def _probe(case, adapter, call, outcome):
    outcome.status = Status.RECORDED
    outcome.observed, observation = _observed(adapter, call)
    if observation is not None:
        if case.expect.get("probe_gradient") and adapter.capabilities.autograd:
            try:
                grad_input, grad_target = adapter.run_gradients(call)
            except Exception as error:
                outcome.observed["gradient"] = f"raises {type(error).__name__}: " \
                                               f"{first_line(error)}"
            else:
                outcome.observed["gradient"] = (f"d/dinput {summarize(grad_input)}, "
                                                f"d/dtarget {summarize(grad_target)}")
    outcome.message = f"{case.expect['probe']}: {describe_observed(outcome.observed)}"
    return outcome
