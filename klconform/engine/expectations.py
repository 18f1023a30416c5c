"""The checks a case's expectations ask for, each adding lines to a CheckFailures.

Every check compares with the oracle's Expected (value and budget) or with a second call;
none of them knows about pytest or reports.
"""

import numpy as np

from klconform.constants import DEFAULT_REDUCTION
from klconform.dtypes import UNIT_ROUNDOFF
from klconform.engine import snippets as reproduce
from klconform.oracle import float64 as oracle
from klconform.short_text import at_text, first_index, format_number, summarize, where_text
from klconform.spec import tensors


def effective_reduction(call):
    return call.reduction if call.reduction is not None else DEFAULT_REDUCTION


def oracle_for(call, dtype=None):
    """The oracle's Expected for exactly this call (its reduction, log_target and dtype)."""
    return oracle.expected(call.input, call.target, reduction=effective_reduction(call),
                           log_target=bool(call.log_target), dtype=dtype or call.dtype)


def compare_with_oracle(actual, expected, failures, label):
    want = np.asarray(expected.value, dtype=np.float64)
    got = np.asarray(actual, dtype=np.float64)
    tolerance = np.asarray(expected.budget, dtype=np.float64)
    want_nan, got_nan = np.isnan(want), np.isnan(got)
    if np.any(want_nan != got_nan):
        index = first_index(want_nan != got_nan)
        failures.add(f"{label}: {'nan' if got_nan[index] else 'no nan'} at {where_text(index)} "
                     f"(expected {format_number(want[index])}, got {format_number(got[index])})")
        return
    finite = ~want_nan & np.isfinite(want)
    infinite = ~want_nan & ~finite
    if np.any(got[infinite] != want[infinite]):
        index = first_index(infinite & (got != want))
        failures.add(f"{label}: expected {format_number(want[index])} at {where_text(index)}, "
                     f"got {format_number(got[index])}")
        return
    with np.errstate(invalid="ignore"):
        error = np.where(finite, np.abs(got - want), 0.0)
        excess = np.where(finite, error - tolerance, -1.0)
    if np.any(~np.isfinite(got[finite])) or np.any(excess > 0):
        index = first_index(~np.isfinite(np.where(finite, got, 0.0)) | (excess > 0))
        failures.add(
            f"{label}: expected {format_number(want[index])}{at_text(index, want)}, "
            f"got {format_number(got[index])}; |error| {format_number(error[index])} "
            f"exceeds budget {format_number(tolerance[index])}")


def check_published(case, call, actual, expected, failures):
    published = case.expect.get("published")
    if not published:
        return
    number = tensors.build(published.get("value", published.get("array")))
    source_budget = oracle_for(call, dtype=published.get("computed_in", "float64")).budget
    tolerance = published_allowance(published, source_budget) + expected.budget
    difference = np.abs(np.asarray(actual) - number)
    if np.any(~(difference <= tolerance)):
        index = first_index(~(difference <= tolerance))
        failures.add(
            f"published: document gives {format_number(number[index])}{at_text(index, number)} "
            f"({published['decimals']} decimals), got {format_number(np.asarray(actual)[index])}")


def published_allowance(published, source_budget):
    """How far a printed number may be from the exact value: half a unit of its last
    decimal, plus the rounding of the dtype the document computed it in."""
    return 0.5 * 10.0 ** -published["decimals"] + source_budget


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
    logits = tensors.build(spec["logits"])
    via_cross_entropy = oracle.cross_entropy_route(
        logits, call.target, reduction=effective_reduction(call), dim=spec.get("dim", -1))
    # The input given to the implementation is log_softmax(logits) rounded to the dtype;
    # that rounding is part of the same budget.
    if abs(float(actual) - via_cross_entropy) > float(expected.budget):
        failures.add(f"cross_entropy: CE(logits) - H(target) = {format_number(via_cross_entropy)}, "
                     f"got {format_number(float(actual))}")


def check_relation(case, adapter, calls, actual, expected, failures, outcome):
    relation = case.expect.get("relation")
    if not relation:
        return
    other_call = calls[1]
    try:
        other = adapter.run(other_call)
    except Exception as error:
        failures.add(f"relation: the second call raised {type(error).__name__}: {error}")
        return
    other_expected = oracle_for(other_call)
    scale = relation["other"].get("scale", 1.0)
    if np.shape(other.value) != np.shape(actual):
        failures.add(f"relation: second call has shape {np.shape(other.value)}, "
                     f"first {np.shape(actual)}")
        return
    # The two calls see differently rounded inputs; what the exact mathematics gives on
    # those inputs is not the implementation's error.
    exact_difference = np.abs(np.asarray(expected.value) - scale * np.asarray(other_expected.value))
    difference = np.abs(np.asarray(actual) - scale * np.asarray(other.value))
    allowed = expected.budget + abs(scale) * other_expected.budget
    with np.errstate(invalid="ignore"):
        if relation["op"] == "equal":
            allowed = allowed + exact_difference
            bad = ~(difference <= allowed)
            if np.any(bad):
                index = first_index(bad)
                failures.add(f"relation: expected equal to {scale:g} x second call "
                             f"({format_number(scale * np.asarray(other.value)[index])}), got "
                             f"{format_number(np.asarray(actual)[index])}")
        elif not np.any(difference > allowed):
            failures.add(f"relation: expected a value different from {scale:g} x second call, "
                         f"both gave {summarize(actual)}")
    outcome.snippet += "# second call of the relation:\n" + reproduce.snippet(
        adapter, other_call, case.id)


def check_warnings(case, observation, failures):
    wanted = case.expect.get("warns")
    if wanted is None:
        return
    if wanted and not observation.warnings:
        failures.add("warns: expected a warning, none was raised")
    if not wanted and observation.warnings:
        failures.add(f"warns: expected no warning, got {observation.warnings[0]}")
