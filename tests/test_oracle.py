"""The oracle and the budgets, checked against mpmath and against deliberate imprecision."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klconform.dtypes import round_to
from klconform.engine.outcome import CheckFailures
from klconform.oracle import extended as precise
from klconform.oracle import float64 as oracle

RNG = np.random.default_rng(20261123)


def _distributions(rows, classes):
    logits = RNG.normal(size=(rows, classes)) * 3
    log_q = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    p = np.exp(RNG.normal(size=(rows, classes)))
    return log_q, p / p.sum(-1, keepdims=True)


@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_oracle_matches_40_digit_reference(reduction, log_target):
    x, t = _distributions(7, 33)
    if log_target:
        t = np.log(t)
    exact = float(precise.kl_value(x, t, reduction=reduction, log_target=log_target))
    got = oracle.expected(x, t, reduction=reduction, log_target=log_target, dtype="float64")
    # The oracle's own error must be a small part of the tightest (float64) budget.
    assert abs(float(got.value) - exact) <= 0.05 * float(got.budget)


def test_none_matches_reference_elementwise():
    x, t = _distributions(3, 5)
    t[0, 0] = 0.0
    exact = precise.as_float64(precise.kl_value(x, t, reduction="none"))
    got = oracle.expected(x, t, reduction="none", dtype="float64")
    assert got.value[0, 0] == 0.0
    assert np.all(np.abs(got.value - exact) <= got.budget)


@pytest.mark.parametrize("target", [0.0, 0.25])
def test_pointwise_terms_of_a_0d_input(target):
    # 0 log 0 = 0 for a 0-d input too (it raised a TypeError there: numpy's product of 0-d
    # arrays is a scalar, which the masked assignment cannot write to).
    x = np.asarray(np.log(0.5))
    expected = 0.0 if target == 0 else target * (np.log(target) - np.log(0.5))
    assert float(oracle.pointwise(x, np.asarray(target))) == pytest.approx(expected, rel=1e-15)


def test_float64_budget_rejects_float32_arithmetic():
    x, t = _distributions(16, 1000)
    expected = oracle.expected(x, t, reduction="sum", dtype="float64")
    in_float32 = np.sum(oracle.pointwise(x.astype(np.float32), t.astype(np.float32))
                        .astype(np.float32), dtype=np.float32)
    assert abs(float(in_float32) - float(expected.value)) > 100 * float(expected.budget)


def test_float32_budget_admits_sequential_float32_summation():
    x, t = _distributions(8, 4000)
    x32, t32 = round_to(x, "float32"), round_to(t, "float32")
    expected = oracle.expected(x32, t32, reduction="sum", dtype="float32")
    terms = oracle.pointwise(x32, t32).astype(np.float32)
    sequential = np.float32(0)
    for term in terms.ravel():  # the worst reasonable order, one float32 add at a time
        sequential = np.float32(sequential + term)
    assert abs(float(sequential) - float(expected.value)) <= float(expected.budget)


def test_chunked_oracle_equals_single_pass():
    x, t = _distributions(4, oracle.CHUNK // 2 + 17)  # spans several chunks
    chunked = oracle.expected(x, t, reduction="batchmean")
    whole = np.sum(oracle.pointwise(x, t)) / 4
    assert abs(float(chunked.value) - whole) <= float(chunked.budget)


def test_bfloat16_rounding_is_nearest_even():
    values = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-9, -2.5e-3, np.nan])
    rounded = round_to(values, "bfloat16")
    assert rounded[0] == 1.0
    assert rounded[1] == 1.0                 # tie: to even
    assert rounded[2] == 1.0 + 4 * 2**-8     # tie: to even (up)
    assert rounded[3] == 1.0
    assert np.isnan(rounded[5])
    assert abs(rounded[4] - -2.5e-3) <= 2.5e-3 * 2**-8


def _same_bits(got, want):
    """Equal as float64 bit patterns (the sign of a zero counts), any NaN matching any NaN."""
    nan = np.isnan(want)
    return np.array_equal(np.isnan(got), nan) \
        and np.array_equal(got[~nan].view(np.uint64), want[~nan].view(np.uint64))


def _every_float16_and_its_ties():
    """Every finite float16, the midpoints between neighbours (the ties), and the float64
    values on either side of each: where a rounding to float16 can go wrong."""
    values = np.unique(np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
                       .astype(np.float64))
    values = values[np.isfinite(values)]
    ties = (values[:-1] + values[1:]) / 2
    edges = [65504.0, 65520.0, np.nextafter(65520.0, 0), 65536.0, 1e300, np.inf, np.nan,
             0.0, 5e-324, 2.0**-25, 3 * 2.0**-26, 2.0**-14 - 2.0**-25]
    near = np.concatenate([values, ties, edges])
    near = np.concatenate([near, np.nextafter(near, np.inf), np.nextafter(near, -np.inf)])
    return np.concatenate([near, -near])


@pytest.mark.parametrize("cast_below", ["as set", 0])
def test_float16_rounding_is_numpys_cast_bit_for_bit(monkeypatch, cast_below):
    # round_to computes float16 rounding in float64 arithmetic (numpy's cast is 10x slower on
    # subnormals): it must agree with the cast on every value, ties and overflow included;
    # the arithmetic on small arrays and 0-d ones too, which otherwise are cast.
    from klconform import dtypes

    if cast_below != "as set":
        monkeypatch.setattr(dtypes, "CAST_BELOW_SIZE", cast_below)
    bit_patterns = np.random.default_rng(7).integers(0, 2**64, 2_000_000, dtype=np.uint64)
    for values in (_every_float16_and_its_ties(), bit_patterns.view(np.float64)):
        with np.errstate(over="ignore", invalid="ignore"):
            cast = values.astype(np.float16).astype(np.float64)
        assert _same_bits(round_to(values, "float16"), cast)
    for scalar in (7e4, 1e-5, -0.0):         # a 0-d array stays one, as the cast's does
        rounded = round_to(np.array(scalar), "float16")
        assert isinstance(rounded, np.ndarray) and rounded.shape == ()
        with np.errstate(over="ignore"):
            cast = np.array([scalar]).astype(np.float16).astype(np.float64)
        assert _same_bits(rounded.reshape(1), cast)


def test_bfloat16_rounding_is_float32_then_nearest_even_on_the_top_16_bits():
    rng = np.random.default_rng(8)
    float32_bits = rng.integers(0, 2**32, 1_000_000, dtype=np.uint64).astype(np.uint32)
    with np.errstate(over="ignore", invalid="ignore"):   # the NaNs among the patterns
        values = np.concatenate([
            rng.integers(0, 2**64, 1_000_000, dtype=np.uint64).view(np.float64),
            float32_bits.view(np.float32).astype(np.float64),
            [np.float32(3.3895314e38), np.inf, -np.inf, np.nan, 0.0, -0.0]])
        as32 = values.astype(np.float32)
    # The definition, spelled out on 64-bit integers, where no addition can wrap.
    bits = as32.view(np.uint32).astype(np.uint64)
    kept = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    want = kept.astype(np.uint32).view(np.float32).astype(np.float64)
    want[np.isnan(as32)] = np.nan
    assert _same_bits(round_to(values, "bfloat16"), want)


def test_divisor_rules():
    assert oracle.divisor_for("batchmean", (10, 6, 4)) == 10
    assert oracle.divisor_for("batchmean", ()) == 1
    assert oracle.divisor_for("mean", (10, 6, 4)) == 240
    assert oracle.divisor_for("sum", (10, 6, 4)) == 1


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("log_target", [False, True])
def test_half_precision_none_is_stored_in_float32_and_never_tighter(dtype, log_target):
    from klconform.oracle import budget

    x, t = _distributions(4, oracle.CHUNK + 99)  # several chunks, on the oracle's threads
    t[0, :7] = 0.0
    x[1, 3] = np.nan
    if log_target:
        with np.errstate(divide="ignore"):
            t = np.log(t)
    got = oracle.expected(x, t, reduction="none", log_target=log_target, dtype=dtype)
    assert got.value.dtype == np.float32 and got.budget.dtype == np.float32
    terms = oracle.pointwise(x, t, log_target=log_target)
    with np.errstate(all="ignore"):
        magnitudes = np.exp(t) * (np.abs(t) + np.abs(x)) if log_target else \
            np.where(t == 0, 0.0, np.abs(t * np.log(np.where(t == 0, 1.0, t)))) + np.abs(t * x) \
            + np.abs(t)
    exact_budget = budget.element_budget(magnitudes, dtype)
    finite = np.isfinite(terms)
    assert np.array_equal(np.isnan(got.value), np.isnan(terms))
    assert np.all(np.isinf(got.budget[~finite]))
    stored = got.value[finite].astype(np.float64)
    # Whatever float64 would admit, float32 storage admits too: no false failure.
    assert np.all(np.abs(stored - terms[finite]) + exact_budget[finite]
                  <= got.budget[finite].astype(np.float64))
    # And it admits little more: the storage costs 2**-22 of the budget and 2**-23 of the value.
    assert np.all(got.budget[finite] <= exact_budget[finite] * (1 + 2.0 ** -21)
                  + np.abs(terms[finite]) * 2.0 ** -23 + 1e-44)


def test_a_term_beyond_float32_keeps_float64_storage():
    x = np.full(5, -3e38)
    t = np.full(5, 1e30)
    got = oracle.expected(x, t, reduction="none", dtype="bfloat16")
    assert got.value.dtype == np.float64
    assert np.all(np.isfinite(got.value)) and np.all(np.isfinite(got.budget))


_ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(want=_ANY_FLOAT, got=_ANY_FLOAT, budget=_ANY_FLOAT | st.sampled_from([0.0, 1e-300]),
       dtype=st.sampled_from([None, "float16", "bfloat16", "float32", "float64"]),
       near=st.booleans())
def test_a_single_value_passed_as_floats_passes_as_arrays_with_nothing_to_say(
        want, got, budget, dtype, near):
    """compare_with_oracle decides one passing value in Python's floats: where it does, the
    arrays' path finds no failure and notes nothing (what fails, the arrays decide)."""
    from klconform.engine.expectations import _scalar_passes, compare_with_oracle

    if near and math.isfinite(want):
        got = want + budget / 2 if math.isfinite(budget) else got
    as_array = oracle.Expected(np.array([want]), np.array([budget]), "sum", 1.0, 0.0, 0.0)
    found = CheckFailures()
    with np.errstate(over="ignore"):     # the arrays' own warning for a huge difference
        compare_with_oracle(np.array([got]), as_array, found, "value", dtype=dtype)
    passes = _scalar_passes(np.array(want), np.array(got), np.array(budget))
    if passes:
        assert not found.lines and not found.notes
    scalar = CheckFailures()
    with np.errstate(over="ignore"):
        compare_with_oracle(np.float64(got), oracle.Expected(np.array(want), np.array(budget),
                                                             "sum", 1.0, 0.0, 0.0),
                            scalar, "value", dtype=dtype)
    assert bool(scalar.lines) == bool(found.lines) and bool(scalar.notes) == bool(found.notes)
