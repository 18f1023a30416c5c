"""One case at one dtype against one adapter: build the call, run it, compare with the oracle.

This is where a case's expectations are read and dispatched to klconform.engine.expectations. The
result is an Outcome; turning it into a pytest result and a report entry happens elsewhere.
"""

import numpy as np

from klconform.adapters.base import Call
from klconform.constants import DEFAULT_TIMEOUT_S
from klconform.dtypes import round_to
from klconform.engine import snippets as reproduce
from klconform.engine.expectations import (
    check_cross_entropy,
    check_published,
    check_relation,
    check_sign,
    check_warnings,
    compare_with_oracle,
    effective_reduction,
    oracle_for,
)
from klconform.engine.isolation import call_with_timeout
from klconform.engine.outcome import CheckFailures, Outcome, describe_observed, errored_outcome
from klconform.oracle import extended as precise
from klconform.oracle import float64 as oracle
from klconform.short_text import first_line, summarize


class Guarded:
    """The adapter with every call under the per-call timeout; attributes pass through."""

    def __init__(self, adapter, timeout):
        self._adapter = adapter
        self._timeout = timeout

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def run(self, call):
        return call_with_timeout(self._adapter.run, call, timeout=self._timeout)

    def run_gradients(self, call):
        return call_with_timeout(self._adapter.run_gradients, call, timeout=self._timeout)

    def snippet(self, call):
        return self._adapter.snippet(call)


def make_call(case, dtype, device, arrays=None, call_args=None):
    x, t = arrays if arrays is not None else case.arrays
    args = case.call if call_args is None else call_args
    input_dtype, target_dtype = args.get("input_dtype"), args.get("target_dtype")
    return Call(
        input=_round_argument(x, input_dtype or dtype),
        target=_round_argument(t, target_dtype or dtype), dtype=dtype,
        reduction=args.get("reduction"), log_target=args.get("log_target"),
        legacy=dict(args.get("legacy", {})), device=device,
        input_dtype=input_dtype, target_dtype=target_dtype,
    )


def _round_argument(values, dtype):
    if dtype == "int64":
        return np.round(np.asarray(values, dtype=np.float64))
    return round_to(values, dtype)


def unsupported_reason(adapter, call: Call):
    return adapter.plan(call).unsupported


def evaluate(case, dtype, adapter, device="cpu", timeout=DEFAULT_TIMEOUT_S) -> Outcome:
    adapter = Guarded(adapter, timeout)
    outcome = Outcome("passed", case.id, dtype, case.claims, case.level)
    call = make_call(case, dtype, device)
    calls = [call]
    if "relation" in case.expect:
        other_arrays, other_args = case.other_call()
        calls.append(make_call(case, dtype, device, other_arrays, other_args))
    for each in calls:
        reason = unsupported_reason(adapter, each)
        if reason:
            outcome.status = "unsupported"
            outcome.message = f"{adapter.name} does not support {reason}"
            return outcome
    outcome.snippet = reproduce.snippet(adapter, call, case.id)
    if case.kind == "probe":
        return _probe(case, adapter, call, outcome)
    if case.kind == "raises":
        return _expect_error(adapter, call, outcome)
    try:
        observation = adapter.run(call)
    except Exception as error:  # the implementation's failure is a result, not a crash
        return errored_outcome(outcome, error)
    failures = CheckFailures()
    expected = _expected(case, call)
    outcome.expected = summarize(expected.value)
    outcome.actual = summarize(observation.value)
    outcome.budget = float(np.max(expected.budget)) if expected.budget.size else 0.0
    if observation.dtype != call.dtype:
        failures.add(f"result dtype {observation.dtype} != input dtype {call.dtype}")
    if observation.shape != expected.value.shape:
        failures.add(f"shape {observation.shape} != expected {expected.value.shape}")
    else:
        compare_with_oracle(observation.value, expected, failures, "oracle")
        check_published(case, call, observation.value, expected, failures)
        check_sign(case.expect, call, observation.value, expected, failures)
        check_cross_entropy(case.expect, call, observation.value, expected, failures)
        check_relation(case, adapter, calls, observation.value, expected, failures, outcome)
    check_warnings(case, observation, failures)
    if failures:
        outcome.status = "failed"
        outcome.checks = failures.lines
        from klconform.engine.diagnosis import diagnose

        # diagnose() itself passes over mistakes whose shape differs from the result's.
        outcome.diagnosis = diagnose(call, observation.value, expected)
    return outcome


def _expected(case, call):
    expected = oracle_for(call)
    if "published" in case.expect:
        # Worked examples: replace the float64 value by the extended-precision one.
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
    except Exception as error:
        outcome.actual = f"{type(error).__name__}: {first_line(error)}"
        outcome.expected = "an error"
        return outcome
    outcome.status = "failed"
    outcome.expected = "an error"
    outcome.actual = f"returned {summarize(observation.value)}"
    outcome.checks = [f"raises: expected an error, the call returned {outcome.actual[9:]}"]
    return outcome


def _probe(case, adapter, call, outcome):
    outcome.status = "recorded"
    try:
        observation = adapter.run(call)
    except Exception as error:
        outcome.observed = {"raises": f"{type(error).__name__}: {first_line(error)}"}
    else:
        outcome.observed = {"value": summarize(observation.value), "dtype": observation.dtype,
                            "shape": list(observation.shape),
                            "warnings": list(observation.warnings)}
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
