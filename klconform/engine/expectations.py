"""The checks a case's expectations ask for, each adding lines to a CheckFailures.

Every check compares with the oracle's Expected (value and budget) or with a second call;
none of them knows about pytest or reports.
"""

import math

import numpy as np

from klconform.constants import DEFAULT_REDUCTION
from klconform.dtypes import SMALLEST_NORMAL, UNIT_ROUNDOFF, round_to
from klconform.engine import prepared
from klconform.oracle import float64 as oracle
from klconform.short_text import at_text, first_index, format_number, summarize, where_text
from klconform.spec import tensors


def effective_reduction(call):
    return call.reduction if call.reduction is not None else DEFAULT_REDUCTION


def oracle_for(call, dtype=None):
    """The oracle's Expected for exactly this call (its reduction, log_target and dtype)."""
    reduction, log_target = effective_reduction(call), bool(call.log_target)
    dtype = dtype or call.dtype
    return prepared.derived(
        call, ("oracle", reduction, log_target, dtype),
        lambda x, t: oracle.expected(x, t, reduction=reduction, log_target=log_target,
                                     dtype=dtype, mask=call.mask))


def compare_with_oracle(actual, expected, failures, label, claims=None, dtype=None):
    want = np.asarray(expected.value, dtype=np.float64)
    got = np.asarray(actual, dtype=np.float64)
    tolerance = np.asarray(expected.budget, dtype=np.float64)
    if want.ndim == got.ndim == tolerance.ndim == 0 and _scalar_passes(want, got, tolerance):
        return
    want_nan, got_nan = np.isnan(want), np.isnan(got)
    if np.any(want_nan != got_nan):
        index = first_index(want_nan != got_nan)
        failures.add(f"{label}: {'nan' if got_nan[index] else 'no nan'} at {where_text(index)} "
                     f"(expected {format_number(want[index])}, got {format_number(got[index])})",
                     claims)
        return
    finite = ~want_nan & np.isfinite(want)
    infinite = ~want_nan & ~finite
    if np.any(got[infinite] != want[infinite]):
        index = first_index(infinite & (got != want))
        failures.add(f"{label}: expected {format_number(want[index])} at {where_text(index)}, "
                     f"got {format_number(got[index])}", claims)
        return
    with np.errstate(invalid="ignore"):
        error = np.where(finite, np.abs(got - want), 0.0)
        excess = np.where(finite, error - tolerance, -1.0)
    if dtype is not None:
        # A result below the dtype's smallest normal number flushed to zero (XLA, FTZ/DAZ
        # hardware modes) is a choice of the platform, recorded rather than failed.
        # A normal result can come from subnormal intermediates (a term t (log t - x) with t
        # itself subnormal), so results up to 1/u above the subnormal range count too.
        near_subnormal = SMALLEST_NORMAL[dtype] / UNIT_ROUNDOFF[dtype]
        flushed = finite & (got == 0) & (np.abs(want) < near_subnormal) & (excess > 0)
        if np.any(flushed):
            failures.note("subnormal results flushed to zero "
                          f"({int(np.sum(flushed))} of {want.size} values)")
            excess = np.where(flushed, -1.0, excess)
    if np.any(~np.isfinite(got[finite])) or np.any(excess > 0):
        index = first_index(~np.isfinite(np.where(finite, got, 0.0)) | (excess > 0))
        failures.add(
            f"{label}: expected {format_number(want[index])}{at_text(index, want)}, "
            f"got {format_number(got[index])}; |error| {format_number(error[index])} "
            f"exceeds budget {format_number(tolerance[index])}", claims)


def _scalar_passes(want, got, tolerance):
    """Whether one value passes with nothing to say, decided in Python's floats (the same
    IEEE doubles as the arrays below, a tenth of their cost: most comparisons are of one
    reduced value). False: the arrays decide, and say why."""
    want, got, tolerance = float(want), float(got), float(tolerance)
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    if math.isinf(want):
        return got == want
    return math.isfinite(got) and abs(got - want) - tolerance <= 0


def check_published(case, call, actual, expected, failures, claims=None):
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
            f"({published['decimals']} decimals), got {format_number(np.asarray(actual)[index])}",
            claims)


def published_allowance(published, source_budget):
    """How far a printed number may be from the exact value: half a unit of its last
    decimal, plus the rounding of the dtype the document computed it in."""
    return 0.5 * 10.0 ** -published["decimals"] + source_budget


def representation_allowance(call, expected):
    """How far rounding the inputs to the dtype moves the value of the exact distributions a
    case describes (two identical distributions can differ once rounded), per the divisor."""
    with np.errstate(invalid="ignore"):
        target_mass = float(np.nansum(np.abs(np.exp(call.target) if call.log_target
                                             else call.target)))
    representation = 2 * UNIT_ROUNDOFF[call.dtype] * (expected.magnitude_sum + target_mass)
    return representation / expected.divisor


def check_sign(expect, call, actual, expected, failures, claims=None):
    sign = expect.get("sign")
    if not sign:
        return
    value = float(actual)
    tolerance = float(expected.budget) + representation_allowance(call, expected)
    ok = {"negative": value < -tolerance, "nonnegative": value >= -tolerance,
          "zero": abs(value) <= tolerance}[sign]
    if not ok:
        failures.add(f"sign: expected {sign} within {format_number(tolerance)} (budget plus input "
                     f"rounding), got {format_number(value)}", claims)


def check_cross_entropy(expect, call, actual, expected, failures, claims=None):
    spec = expect.get("cross_entropy")
    if not spec:
        return
    # A case file's logits are tensor data; a property example's, its array.
    logits = spec["logits"] if isinstance(spec["logits"], np.ndarray) \
        else tensors.build(spec["logits"])
    via_cross_entropy = oracle.cross_entropy_route(
        logits, call.target, reduction=effective_reduction(call), dim=spec.get("dim", -1))
    # The input given to the implementation is log_softmax(logits) rounded to the dtype;
    # that rounding is part of the same budget.
    if abs(float(actual) - via_cross_entropy) > float(expected.budget):
        failures.add(f"cross_entropy: CE(logits) - H(target) = {format_number(via_cross_entropy)}, "
                     f"got {format_number(float(actual))}", claims)


def check_relation(relation, actual, expected, other_value, other_expected, failures,
                   claims=None):
    """The first call against `scale` x the second call (made by evaluate, not here)."""
    scale = relation["other"].get("scale", 1.0)
    if np.shape(other_value) != np.shape(actual):
        failures.add(f"relation: second call has shape {np.shape(other_value)}, "
                     f"first {np.shape(actual)}", claims)
        return
    # The two calls see differently rounded inputs; what the exact mathematics gives on
    # those inputs is not the implementation's error.
    exact_difference = np.abs(np.asarray(expected.value) - scale * np.asarray(other_expected.value))
    difference = np.abs(np.asarray(actual) - scale * np.asarray(other_value))
    allowed = expected.budget + abs(scale) * other_expected.budget
    with np.errstate(invalid="ignore"):
        if relation["op"] == "equal":
            allowed = allowed + exact_difference
            bad = ~(difference <= allowed)
            if np.any(bad):
                index = first_index(bad)
                failures.add(f"relation: expected equal to {scale:g} x second call "
                             f"({format_number(scale * np.asarray(other_value)[index])}), got "
                             f"{format_number(np.asarray(actual)[index])}", claims)
        elif not np.any(difference > allowed):
            failures.add(f"relation: expected a value different from {scale:g} x second call, "
                         f"both gave {summarize(actual)}", claims)


def check_warnings(wanted, observation, failures, claims=None):
    if wanted and not observation.warnings:
        failures.add("warns: expected a warning, none was raised", claims)
    if not wanted and observation.warnings:
        failures.add(f"warns: expected no warning, got {observation.warnings[0]}", claims)


def check_summation_accuracy(spec, call, actual, expected, failures, claims=None):
    """The sum's relative error against pairwise summation of the same terms in the dtype.

    Returns the figures, which the report shows whether or not the check fails.
    """
    scale = expected.abs_term_sum or 1.0
    pairwise = pairwise_sum(call)
    exact = float(expected.value)
    floor = UNIT_ROUNDOFF[call.dtype]
    pairwise_error = max(abs(pairwise - exact) / scale, floor)
    error = abs(float(actual) - exact) / scale
    figures = (f"relative error {error:.2g} of the total (pairwise summation in {call.dtype}: "
               f"{pairwise_error:.2g}; ratio {error / pairwise_error:.3g})")
    if not error <= spec["factor"] * pairwise_error:
        failures.add(f"summation_accuracy: {figures}, over {spec['factor']:g} x pairwise", claims)
    return figures


def pairwise_sum(call):
    """The call's terms summed pairwise in its dtype: what summation_accuracy measures a
    library's sum against."""
    log_target = bool(call.log_target)
    return prepared.derived(
        call, ("pairwise sum", log_target, call.dtype),
        lambda x, t: float(np.sum(_in_dtype(oracle.pointwise(x, t, log_target), call.dtype))))


def _in_dtype(values, dtype):
    """`values` as a numpy array of `dtype`; bfloat16, which numpy lacks, as float32 whose
    every partial sum is rounded back to bfloat16 would be too slow, so it is emulated by
    pairwise blocks rounded to bfloat16 (the same order numpy's float32 sum uses)."""
    if dtype == "bfloat16":
        blocks = round_to(values, "bfloat16").reshape(-1)
        while blocks.size > 1:
            if blocks.size % 2:
                blocks = np.append(blocks, 0.0)
            blocks = round_to(blocks[0::2] + blocks[1::2], "bfloat16")
        return blocks
    return np.asarray(values, dtype=np.float64).astype(dtype)
