"""The torch-distributions record against torch.distributions itself."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.distributions import Categorical, kl_divergence  # noqa: E402

from klconform.adapters import load_adapter  # noqa: E402
from klconform.adapters.base import Call  # noqa: E402
from tests.libraries.reference import LOG_Q, P, Q, canonical  # noqa: E402


@pytest.fixture(scope="module")
def adapter():
    return load_adapter("torch-distributions")


@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
@pytest.mark.parametrize("log_target", [None, False, True])
def test_canonical_values(adapter, reduction, log_target):
    target = np.log(P) if log_target else P
    observed = adapter.run(Call(LOG_Q, target, dtype="float64", reduction=reduction,
                                log_target=log_target))
    np.testing.assert_allclose(observed.value, canonical(reduction), rtol=1e-14)


def test_rank_and_none_limits(adapter):
    assert adapter.plan(Call(LOG_Q, P, dtype="float64", reduction="none")).unsupported
    assert adapter.plan(Call(np.float64(0.0), np.float64(1.0), dtype="float64",
                             reduction="sum")).unsupported
    one_row = adapter.run(Call(LOG_Q[0], P[0], dtype="float32", reduction="sum"))
    np.testing.assert_allclose(one_row.value, canonical("none")[0].sum(), rtol=1e-6)
    assert one_row.dtype == "float32"


def test_gradients_follow_the_renormalisation(adapter):
    grad_input, grad_target = adapter.run_gradients(
        Call(LOG_Q, P, dtype="float64", reduction="sum"))
    row_kl = canonical("none").sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(grad_input, Q - P, atol=1e-15)
    np.testing.assert_allclose(grad_target, np.log(P / Q) - row_kl, atol=1e-15)


# Each declared deviation, still observed.

def test_deviation_nan_is_rejected_not_propagated():
    with pytest.raises(ValueError):
        Categorical(probs=torch.tensor([[np.nan, 0.5, 0.5]]))
    with pytest.raises(ValueError):
        Categorical(logits=torch.tensor([[np.nan, 0.0, 0.0]]))


def test_deviation_probs_clamp_makes_a_certain_outcome_negative():
    for dtype, eps in ((torch.float32, 2.0 ** -23), (torch.float64, 2.0 ** -52)):
        one = torch.ones(1, dtype=dtype)
        value = kl_divergence(Categorical(probs=one), Categorical(logits=one.log())).item()
        assert value == pytest.approx(-eps, rel=1e-3)


def test_deviation_rows_are_renormalised():
    raw_logits = torch.tensor([[2.0, -1.0, 0.5]], dtype=torch.float64)
    value = kl_divergence(Categorical(probs=torch.tensor(P[:1])),
                          Categorical(logits=raw_logits)).item()
    assert value > 0   # torch's kl_div on the same arguments is negative


def test_deviation_gradient_is_not_minus_target():
    log_q = torch.tensor(LOG_Q, requires_grad=True)
    kl_divergence(Categorical(probs=torch.tensor(P)), Categorical(logits=log_q)).sum().backward()
    np.testing.assert_allclose(log_q.grad.numpy(), Q - P, atol=1e-15)
