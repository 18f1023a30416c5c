"""The torchmetrics record against torchmetrics itself (skipped where it is not installed)."""

import numpy as np
import pytest

pytest.importorskip("torchmetrics")

import torch  # noqa: E402
from torchmetrics.functional import kl_divergence  # noqa: E402

from klconform.adapters import load_adapter  # noqa: E402
from klconform.adapters.base import Call  # noqa: E402
from tests.libraries.reference import LOG_Q, P, Q, canonical  # noqa: E402


@pytest.fixture(scope="module")
def adapter():
    return load_adapter("torchmetrics")


@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
@pytest.mark.parametrize("log_target", [None, False, True])
def test_canonical_values(adapter, reduction, log_target):
    target = np.log(P) if log_target else P
    observed = adapter.run(Call(LOG_Q, target, dtype="float64", reduction=reduction,
                                log_target=log_target))
    np.testing.assert_allclose(observed.value, canonical(reduction), rtol=1e-14)
    assert observed.dtype == "float64"


def test_log_target_reaches_log_prob_with_both_in_log_space(adapter):
    # P shifted off the simplex in log space: only log_prob=True on the raw log values
    # (no renormalisation, no exp of the prediction) gives sum(exp(t) (t - x)).
    log_target = np.log(P) + 0.5
    observed = adapter.run(Call(LOG_Q, log_target, dtype="float64", reduction="sum",
                                log_target=True))
    expected = np.sum(np.exp(log_target) * (log_target - LOG_Q))
    np.testing.assert_allclose(observed.value, expected, rtol=1e-14)


def test_none_and_default_are_not_offered(adapter):
    assert adapter.plan(Call(LOG_Q, P, dtype="float64", reduction="none")).unsupported
    assert adapter.plan(Call(LOG_Q, P, dtype="float64")).unsupported
    assert adapter.plan(Call(LOG_Q[0], P[0], dtype="float64", reduction="sum")).unsupported


def test_gradients_follow_the_renormalisation(adapter):
    grad_input, grad_target = adapter.run_gradients(
        Call(LOG_Q, P, dtype="float64", reduction="sum"))
    row_kl = canonical("none").sum(axis=-1, keepdims=True)
    # d/dlog Q = Q - P and d/dP = log(P/Q) - KL(row): the renormalisation's own terms.
    np.testing.assert_allclose(grad_input, Q - P, atol=1e-15)
    np.testing.assert_allclose(grad_target, np.log(P / Q) - row_kl, atol=1e-15)


# Each declared deviation, still observed (a fixed library makes these fail).

def test_deviation_unknown_reduction_is_silently_per_row_over_rows():
    result = kl_divergence(torch.tensor(P), torch.tensor(Q), reduction="batch_mean")
    row_kl = canonical("none").sum(axis=-1)
    assert tuple(result.shape) == (2,)
    np.testing.assert_allclose(result.numpy(), row_kl / 2, rtol=1e-14)


def test_deviation_rows_are_renormalised():
    scaled = kl_divergence(torch.tensor(2 * P), torch.tensor(3 * Q), reduction="sum")
    np.testing.assert_allclose(scaled.item(), canonical("sum"), rtol=1e-14)
    # probabilities passed as the prediction's log: torch's kl_div would go negative.
    as_log = np.exp(P)
    assert kl_divergence(torch.tensor(as_log), torch.tensor(Q), reduction="sum").item() > 0


def test_deviation_gradient_is_not_minus_target():
    log_q = torch.tensor(LOG_Q, requires_grad=True)
    kl_divergence(torch.tensor(P), log_q.exp(), reduction="sum").backward()
    assert not np.allclose(log_q.grad.numpy(), -P)


def test_deviation_record_lists_them():
    from klconform.adapters.registry import builtin_records

    ids = {entry["id"] for entry in builtin_records()["torchmetrics"].deviations}
    assert {"invalid-reduction-rejected", "unnormalized-negative", "gradient-input"} <= ids
