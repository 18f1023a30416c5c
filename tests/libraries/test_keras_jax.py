"""The `keras-jax` record (keras.losses.KLDivergence, KERAS_BACKEND=jax) against keras."""

import pytest

from tests.libraries import keras_checks
from tests.libraries.keras_backend import import_keras

RECORD = "keras-jax"


@pytest.fixture(scope="module")
def keras():
    return import_keras("jax")


def test_reduction_names(keras):
    keras_checks.check_reduction_names(keras)


@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
def test_canonical_values(keras, reduction):
    keras_checks.check_canonical_values(RECORD, reduction)


@pytest.mark.parametrize("reduction", ["sum", "batchmean"])
def test_gradients(keras, reduction):
    keras_checks.check_gradients(RECORD, reduction)


def test_deviation_result_dtype_float32(keras):
    keras_checks.check_result_dtype_float32(RECORD)


def test_deviation_clipping(keras):
    keras_checks.check_clipping(keras)
