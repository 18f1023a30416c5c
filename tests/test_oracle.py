"""The oracle and the budgets, checked against mpmath and against deliberate imprecision."""

import numpy as np
import pytest

from klconform.dtypes import round_to
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


def test_divisor_rules():
    assert oracle.divisor_for("batchmean", (10, 6, 4)) == 10
    assert oracle.divisor_for("batchmean", ()) == 1
    assert oracle.divisor_for("mean", (10, 6, 4)) == 240
    assert oracle.divisor_for("sum", (10, 6, 4)) == 1
