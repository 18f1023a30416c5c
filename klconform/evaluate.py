"""One case at one dtype against one adapter: build the call, run it, compare with the oracle.

This is the only place where a case's expectations are interpreted. The result is an
Outcome; turning it into a pytest result and a report entry happens elsewhere.
"""

from dataclasses import dataclass, field

import numpy as np

from klconform import oracle, precise, reproduce
from klconform.adapters.base import REDUCTIONS, Call
from klconform.dtypes import UNIT_ROUNDOFF, round_to
from klconform.isolation import DEFAULT_TIMEOUT_S, call_with_timeout

DEFAULT_REDUCTION = "mean"  # claim default-reduction-mean


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


@dataclass
class Outcome:
    status: str                 # passed | failed | errored | unsupported | recorded
    case_id: str
    dtype: str
    claims: tuple
    level: str
    message: str = ""
    checks: list = field(default_factory=list)   # one line per failed check
    expected: str | None = None
    actual: str | None = None
    budget: float | None = None
    diagnosis: str | None = None
    snippet: str | None = None
    observed: dict | None = None                  # probes: what the implementation did


class CheckFailures:
    def __init__(self):
        self.lines = []

    def add(self, line):
        self.lines.append(line)

    def __bool__(self):
        return bool(self.lines)


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
    caps = adapter.capabilities
    if call.dtype not in caps.dtypes:
        return f"dtype {call.dtype}"
    if call.device.split(":")[0] not in caps.devices:
        return f"device {call.device} (has {', '.join(caps.devices)})"
    if call.reduction is None and not caps.default_reduction:
        return "calls without a reduction argument"
    if call.reduction is not None:
        if not caps.reductions:
            return "a reduction argument"
        if call.reduction in REDUCTIONS and call.reduction not in caps.reductions:
            return f"reduction {call.reduction!r}"
    if call.log_target is not None and not caps.log_target:
        return f"a log_target argument (log_target={call.log_target})"
    if call.legacy and not caps.legacy_args:
        return "legacy size_average/reduce arguments"
    return None


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
        _check_published(case, call, observation.value, expected, failures)
        check_sign(case.expect, call, observation.value, expected, failures)
        check_cross_entropy(case.expect, call, observation.value, expected, failures)
        _check_relation(case, adapter, calls, observation.value, expected, failures, outcome)
    _check_warnings(case, observation, failures)
    if failures:
        outcome.status = "failed"
        outcome.checks = failures.lines
        from klconform.diagnose import diagnose

        # diagnose() itself passes over mistakes whose shape differs from the result's.
        outcome.diagnosis = diagnose(call, observation.value, expected)
    return outcome


def effective_reduction(call: Call):
    return call.reduction if call.reduction is not None else DEFAULT_REDUCTION


def _expected(case, call):
    expected = oracle.expected(call.input, call.target, reduction=effective_reduction(call),
                               log_target=bool(call.log_target), dtype=call.dtype)
    if "published" in case.expect:
        # Worked examples: replace the float64 value by the extended-precision one.
        exact = precise.as_float64(precise.kl_value(
            call.input, call.target, reduction=effective_reduction(call),
            log_target=bool(call.log_target)))
        expected = oracle.Expected(np.asarray(exact), expected.budget, expected.reduction,
                                   expected.divisor, expected.magnitude_sum,
                                   expected.abs_term_sum)
    return expected


def compare_with_oracle(actual, expected, failures, label):
    want = np.asarray(expected.value, dtype=np.float64)
    got = np.asarray(actual, dtype=np.float64)
    tolerance = np.asarray(expected.budget, dtype=np.float64)
    want_nan, got_nan = np.isnan(want), np.isnan(got)
    if np.any(want_nan != got_nan):
        index = _first(want_nan != got_nan)
        failures.add(f"{label}: {'nan' if got_nan[index] else 'no nan'} at {_where(index)} "
                     f"(expected {format_number(want[index])}, got {format_number(got[index])})")
        return
    finite = ~want_nan & np.isfinite(want)
    infinite = ~want_nan & ~finite
    if np.any(got[infinite] != want[infinite]):
        index = _first(infinite & (got != want))
        failures.add(f"{label}: expected {format_number(want[index])} at {_where(index)}, "
                     f"got {format_number(got[index])}")
        return
    with np.errstate(invalid="ignore"):
        error = np.where(finite, np.abs(got - want), 0.0)
        excess = np.where(finite, error - tolerance, -1.0)
    if np.any(~np.isfinite(got[finite])) or np.any(excess > 0):
        index = _first(~np.isfinite(np.where(finite, got, 0.0)) | (excess > 0))
        failures.add(
            f"{label}: expected {format_number(want[index])}{_at(index, want)}, "
            f"got {format_number(got[index])}; |error| {format_number(error[index])} "
            f"exceeds budget {format_number(tolerance[index])}")


def _check_published(case, call, actual, expected, failures):
    published = case.expect.get("published")
    if not published:
        return
    value = published.get("value", published.get("array"))
    from klconform import tensors

    number = tensors.build(value)
    source_budget = oracle.expected(call.input, call.target, reduction=expected.reduction,
                                    log_target=bool(call.log_target),
                                    dtype=published.get("computed_in", "float64")).budget
    tolerance = 0.5 * 10.0 ** -published["decimals"] + source_budget + expected.budget
    difference = np.abs(np.asarray(actual) - number)
    if np.any(~(difference <= tolerance)):
        index = _first(~(difference <= tolerance))
        failures.add(
            f"published: document gives {format_number(number[index])}{_at(index, number)} "
            f"({published['decimals']} decimals), got {format_number(np.asarray(actual)[index])}")


def check_sign(expect, call, actual, expected, failures):
    sign = expect.get("sign")
    if not sign:
        return
    # A sign is a statement about the exact distributions the case describes, so rounding
    # the inputs to the dtype (which can make two identical distributions differ) counts.
    with np.errstate(invalid="ignore"):
        target_mass = float(np.nansum(np.abs(np.exp(call.target) if call.log_target
                                             else call.target)))
    representation = 2 * UNIT_ROUNDOFF[call.dtype] * (expected.magnitude_sum + target_mass)
    value = float(actual)
    tolerance = float(expected.budget) + representation / expected.divisor
    ok = {"negative": value < -tolerance, "nonnegative": value >= -tolerance,
          "zero": abs(value) <= tolerance}[sign]
    if not ok:
        failures.add(f"sign: expected {sign} within {format_number(tolerance)} (budget plus input "
                     f"rounding), got {format_number(value)}")


def check_cross_entropy(expect, call, actual, expected, failures):
    spec = expect.get("cross_entropy")
    if not spec:
        return
    from klconform import tensors

    logits = tensors.build(spec["logits"])
    via_cross_entropy = oracle.cross_entropy_route(
        logits, call.target, reduction=effective_reduction(call), dim=spec.get("dim", -1))
    # The input given to the implementation is log_softmax(logits) rounded to the dtype;
    # that rounding is part of the same budget.
    if abs(float(actual) - via_cross_entropy) > float(expected.budget):
        failures.add(f"cross_entropy: CE(logits) - H(target) = {format_number(via_cross_entropy)}, "
                     f"got {format_number(float(actual))}")


def _check_relation(case, adapter, calls, actual, expected, failures, outcome):
    relation = case.expect.get("relation")
    if not relation:
        return
    other_call = calls[1]
    try:
        other = adapter.run(other_call)
    except Exception as error:
        failures.add(f"relation: the second call raised {type(error).__name__}: {error}")
        return
    other_expected = oracle.expected(other_call.input, other_call.target,
                                     reduction=effective_reduction(other_call),
                                     log_target=bool(other_call.log_target),
                                     dtype=other_call.dtype)
    scale = relation["other"].get("scale", 1.0)
    # The two calls see differently rounded inputs; what the exact mathematics gives on
    # those inputs is not the implementation's error.
    exact_difference = np.abs(np.asarray(expected.value) - scale * np.asarray(other_expected.value))
    if np.shape(other.value) != np.shape(actual):
        failures.add(f"relation: second call has shape {np.shape(other.value)}, "
                     f"first {np.shape(actual)}")
        return
    difference = np.abs(np.asarray(actual) - scale * np.asarray(other.value))
    allowed = expected.budget + abs(scale) * other_expected.budget
    with np.errstate(invalid="ignore"):
        if relation["op"] == "equal":
            allowed = allowed + exact_difference
            bad = ~(difference <= allowed)
            if np.any(bad):
                index = _first(bad)
                failures.add(f"relation: expected equal to {scale:g} x second call "
                             f"({format_number(scale * np.asarray(other.value)[index])}), got "
                             f"{format_number(np.asarray(actual)[index])}")
        elif not np.any(difference > allowed):
            failures.add(f"relation: expected a value different from {scale:g} x second call, "
                         f"both gave {summarize(actual)}")
    outcome.snippet += "# second call of the relation:\n" + reproduce.snippet(
        adapter, other_call, case.id)


def _check_warnings(case, observation, failures):
    wanted = case.expect.get("warns")
    if wanted is None:
        return
    if wanted and not observation.warnings:
        failures.add("warns: expected a warning, none was raised")
    if not wanted and observation.warnings:
        failures.add(f"warns: expected no warning, got {observation.warnings[0]}")


def _expect_error(adapter, call, outcome):
    try:
        observation = adapter.run(call)
    except Exception as error:
        outcome.actual = f"{type(error).__name__}: {_first_line(error)}"
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
        outcome.observed = {"raises": f"{type(error).__name__}: {_first_line(error)}"}
    else:
        outcome.observed = {"value": summarize(observation.value), "dtype": observation.dtype,
                            "shape": list(observation.shape),
                            "warnings": list(observation.warnings)}
        if case.expect.get("probe_gradient") and adapter.capabilities.autograd:
            try:
                grad_input, grad_target = adapter.run_gradients(call)
            except Exception as error:
                outcome.observed["gradient"] = f"raises {type(error).__name__}: " \
                                               f"{_first_line(error)}"
            else:
                outcome.observed["gradient"] = (f"d/dinput {summarize(grad_input)}, "
                                                f"d/dtarget {summarize(grad_target)}")
    outcome.message = f"{case.expect['probe']}: {describe_observed(outcome.observed)}"
    return outcome


def describe_observed(observed):
    if "raises" in observed:
        return f"raises {observed['raises']}"
    text = f"returns {observed['value']} ({observed['dtype']}, shape {tuple(observed['shape'])})"
    if observed.get("warnings"):
        text += f", warns {observed['warnings'][0]}"
    else:
        text += ", no warning"
    if observed.get("gradient"):
        text += f"; gradient: {observed['gradient']}"
    return text


def errored_outcome(outcome, error):
    outcome.status = "errored"
    outcome.actual = f"{type(error).__name__}: {_first_line(error)}"
    outcome.checks = [f"the implementation raised {outcome.actual}"]
    return outcome


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""


def _first(mask):
    mask = np.asarray(mask)
    if mask.ndim == 0:
        return ()
    return tuple(int(i[0]) for i in np.nonzero(mask))


def _where(index):
    return f"index {list(index)}" if index else "the result"


def _at(index, array):
    return f" at index {list(index)}" if np.ndim(array) else ""


def format_number(value):
    value = float(value)
    if np.isnan(value) or np.isinf(value):
        return str(value)
    return f"{value:.10g}"


def summarize(values, limit=6):
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0:
        return format_number(values)
    flat = values.ravel()
    shown = ", ".join(format_number(v) for v in flat[:limit])
    more = f", ... ({flat.size} values)" if flat.size > limit else ""
    return f"array{list(values.shape)} [{shown}{more}]"
