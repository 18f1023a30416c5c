"""The checks shared by the keras-jax and keras-tensorflow records (same keras code)."""

import numpy as np
import pytest

from tests.libraries.record_checks import (
    LOG_PREDICTION,
    TARGET,
    canonical_gradients,
    canonical_value,
)

# The loss class computes in float32 (keras's floatx) whatever the input dtype.
FLOAT32_RTOL = 1e-6


def check_reduction_names(keras):
    prediction = np.exp(LOG_PREDICTION)
    rows = (TARGET * np.log(TARGET / prediction)).sum(-1)
    expected = {"sum_over_batch_size": rows.mean(), "mean": rows.mean(), "sum": rows.sum(),
                "none": rows, None: rows,
                # No sample weights: the sum over the number of rows, as the record says.
                "mean_with_sample_weight": rows.mean()}
    for name, value in expected.items():
        result = keras.losses.KLDivergence(reduction=name)(TARGET, prediction)
        np.testing.assert_allclose(np.asarray(result), value, rtol=FLOAT32_RTOL, err_msg=name)
    assert keras.losses.KLDivergence().reduction == "sum_over_batch_size"
    with pytest.raises(ValueError):
        keras.losses.KLDivergence(reduction="batchmean")


def check_canonical_values(record, reduction):
    observation, expected = canonical_value(record, reduction)
    np.testing.assert_allclose(observation.value, expected, rtol=FLOAT32_RTOL)


def check_gradients(record, reduction):
    (grad_input, grad_target), (want_input, want_target) = canonical_gradients(record, reduction)
    np.testing.assert_allclose(grad_input, want_input, rtol=FLOAT32_RTOL, atol=1e-7)
    np.testing.assert_allclose(grad_target, want_target, rtol=FLOAT32_RTOL, atol=1e-7)


def check_result_dtype_float32(record):
    # The record's result-dtype deviation: float64 in, float32 out.
    observation, _ = canonical_value(record, "sum", dtype="float64")
    assert observation.dtype == "float32"


def check_clipping(keras):
    # The record's unnormalized-negative / zero-target deviations: both arguments are clipped
    # to [1e-7, 1], so a prediction of 1e-12 counts as 1e-7 (float64 inputs).
    target = np.array([[0.5, 0.5, 0.0]])
    prediction = np.array([[1e-12, 0.5, 0.5 - 1e-12]])
    exact = 0.5 * np.log(0.5 / 1e-12)
    clipped = 0.5 * np.log(0.5 / 1e-7) + 1e-7 * np.log(1e-7 / (0.5 - 1e-12))
    value = float(np.asarray(keras.losses.KLDivergence(reduction="sum")(target, prediction)))
    np.testing.assert_allclose(value, clipped, rtol=FLOAT32_RTOL)
    assert abs(value - exact) > 5
    # A zero target contributes 1e-7 log(1e-7 / q), not exactly 0.
    zero = np.asarray(keras.losses.KLDivergence(reduction="none", dtype="float64")(
        np.array([[0.0, 1.0]]), np.array([[0.5, 0.5]])))
    np.testing.assert_allclose(zero, 1e-7 * np.log(1e-7 / 0.5) + np.log(2), rtol=1e-12)
    assert zero[0] != np.log(2)
