"""The `optax` record (optax.losses.kl_divergence, per row) against optax itself."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
# The records ask for 64-bit mode; these direct calls must not depend on a record having
# been loaded first.
jax.config.update("jax_enable_x64", True)
losses = pytest.importorskip("optax.losses")

from tests.libraries.record_checks import (  # noqa: E402
    LOG_PREDICTION,
    TARGET,
    canonical_gradients,
    canonical_value,
)

RECORD = "optax"


def test_record_convention_prediction_first_one_value_per_row():
    import jax.numpy as jnp

    rows = np.asarray(losses.kl_divergence(jnp.asarray(LOG_PREDICTION), jnp.asarray(TARGET),
                                           axis=-1))
    np.testing.assert_allclose(rows, (TARGET * (np.log(TARGET) - LOG_PREDICTION)).sum(-1),
                               rtol=1e-14)
    with pytest.raises(TypeError):
        losses.kl_divergence(jnp.asarray(LOG_PREDICTION), jnp.asarray(TARGET), reduction="sum")


@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
def test_canonical_values_float64(reduction, log_target):
    observation, expected = canonical_value(RECORD, reduction, log_target=log_target)
    assert observation.dtype == "float64"
    np.testing.assert_allclose(observation.value, expected, rtol=1e-13)


def test_no_elementwise_output():
    from klconform.adapters import load_adapter

    assert "none" not in load_adapter(RECORD).capabilities.reductions


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_result_keeps_the_dtype(dtype):
    observation, expected = canonical_value(RECORD, "sum", dtype=dtype)
    assert observation.dtype == dtype
    np.testing.assert_allclose(observation.value, expected, rtol=3e-2)


@pytest.mark.parametrize("reduction", ["sum", "batchmean"])
def test_gradients_through_jax_grad(reduction):
    (grad_input, grad_target), (want_input, want_target) = canonical_gradients(RECORD, reduction)
    np.testing.assert_allclose(grad_input, want_input, rtol=1e-13)
    np.testing.assert_allclose(grad_target, want_target, rtol=1e-13)
