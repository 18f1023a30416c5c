"""The `jax` record (jax.scipy.special.rel_entr) against jax itself."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
# The records ask for 64-bit mode; these direct calls must not depend on a record having
# been loaded first.
jax.config.update("jax_enable_x64", True)
special = pytest.importorskip("jax.scipy.special")

from tests.libraries.record_checks import (  # noqa: E402
    LOG_PREDICTION,
    TARGET,
    canonical_gradients,
    canonical_value,
)

RECORD = "jax"


def test_record_argument_order_is_truth_first():
    import jax.numpy as jnp

    prediction = np.exp(LOG_PREDICTION)
    terms = np.asarray(special.rel_entr(jnp.asarray(TARGET), jnp.asarray(prediction)))
    np.testing.assert_allclose(terms, TARGET * np.log(TARGET / prediction), rtol=1e-14)
    swapped = np.asarray(special.rel_entr(jnp.asarray(prediction), jnp.asarray(TARGET)))
    assert not np.allclose(swapped.sum(), terms.sum())


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
def test_canonical_values_float64(reduction):
    observation, expected = canonical_value(RECORD, reduction)
    assert observation.dtype == "float64"
    np.testing.assert_allclose(observation.value, expected, rtol=1e-13)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_result_keeps_the_dtype(dtype):
    observation, expected = canonical_value(RECORD, "none", dtype=dtype)
    assert observation.dtype == dtype
    np.testing.assert_allclose(observation.value, expected, rtol=3e-2, atol=1e-2)


@pytest.mark.parametrize("reduction", ["sum", "batchmean"])
def test_gradients_through_jax_grad(reduction):
    (grad_input, grad_target), (want_input, want_target) = canonical_gradients(RECORD, reduction)
    np.testing.assert_allclose(grad_input, want_input, rtol=1e-13)
    np.testing.assert_allclose(grad_target, want_target, rtol=1e-13)


def test_deviation_nan_propagates_nan_gives_inf():
    # The record's nan-propagates deviation: any NaN argument gives +inf, not NaN.
    import jax.numpy as jnp

    for p, q in ((jnp.nan, 0.5), (0.5, jnp.nan), (0.0, jnp.nan)):
        assert np.asarray(special.rel_entr(p, q)) == np.inf
