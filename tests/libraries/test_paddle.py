"""The paddle record against paddle itself (skipped where paddle is not installed).

mindspore cannot be imported after paddle in one process: run this file in its own
environment (tox env `paddle`), never together with test_mindspore.py.
"""

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

import paddle.nn.functional as F  # noqa: E402

from klconform.adapters import load_adapter  # noqa: E402
from klconform.adapters.base import Call  # noqa: E402
from tests.libraries.reference import LOG_Q, P, canonical, gradients  # noqa: E402


@pytest.fixture(scope="module")
def adapter():
    return load_adapter("paddle")


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean", None])
@pytest.mark.parametrize("log_target", [None, False, True])
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-14), ("float32", 1e-6)])
def test_canonical_values(adapter, reduction, log_target, dtype, rtol):
    target = np.log(P) if log_target else P
    observed = adapter.run(Call(LOG_Q, target, dtype=dtype, reduction=reduction,
                                log_target=log_target))
    np.testing.assert_allclose(observed.value, canonical(reduction or "mean"), rtol=rtol)
    assert observed.dtype == dtype


def test_half_precision_is_not_offered(adapter):
    assert adapter.plan(Call(LOG_Q, P, dtype="float16", reduction="sum")).unsupported


@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
def test_input_gradient_through_the_bridge(adapter, reduction):
    grad_input, grad_target = adapter.run_gradients(
        Call(LOG_Q, P, dtype="float64", reduction=reduction))
    np.testing.assert_allclose(grad_input, gradients(reduction)[0], rtol=1e-14)
    assert grad_target is None


# Each declared deviation, still observed (a fixed paddle makes these fail).

def tensor(values):
    return paddle.to_tensor(np.asarray(values, dtype=np.float64))


def test_deviation_unknown_reduction_returns_the_elementwise_terms():
    result = F.kl_div(tensor(LOG_Q), tensor(P), reduction="batch_mean")
    np.testing.assert_allclose(result.numpy(), canonical("none"), rtol=1e-14)


def test_deviation_nan_input_with_zero_label_gives_zero():
    result = F.kl_div(tensor([np.nan, np.nan]), tensor([0.0, 0.5]), reduction="none")
    assert result.numpy()[0] == 0.0
    assert np.isnan(result.numpy()[1])


def test_deviation_no_gradient_to_the_label():
    log_q, p = tensor(LOG_Q), tensor(P)
    log_q.stop_gradient = False
    p.stop_gradient = False
    loss = F.kl_div(log_q, p, reduction="sum")
    assert paddle.grad([loss], [p], allow_unused=True)[0] is None


def test_deviation_mean_does_not_warn():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        F.kl_div(tensor(LOG_Q), tensor(P))
    assert not caught
