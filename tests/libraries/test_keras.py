"""The `keras-jax` and `keras-tensorflow` records (keras.losses.KLDivergence) against keras.

Keras fixes its backend at its first import, so one process checks one backend: the other
is skipped with the reason (tox runs each in its own env with KERAS_BACKEND set).
"""

import pytest

from tests.libraries import keras_checks
from tests.libraries.keras_backend import import_keras


@pytest.fixture(scope="module", params=["jax", "tensorflow"])
def backend(request):
    import_keras(request.param)
    return request.param


@pytest.fixture(scope="module")
def keras(backend):
    return import_keras(backend)


@pytest.fixture(scope="module")
def record(backend):
    return f"keras-{backend}"


def test_reduction_names(keras):
    keras_checks.check_reduction_names(keras)


@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
def test_canonical_values(keras, record, reduction):
    keras_checks.check_canonical_values(record, reduction)


@pytest.mark.parametrize("reduction", ["sum", "batchmean"])
def test_gradients(keras, record, reduction):
    keras_checks.check_gradients(record, reduction)


def test_deviation_result_dtype_float32(keras, record):
    keras_checks.check_result_dtype_float32(record)


def test_deviation_clipping(keras):
    keras_checks.check_clipping(keras)
