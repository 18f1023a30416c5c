"""The scipy record against scipy itself (skipped where scipy is not installed)."""

import numpy as np
import pytest

special = pytest.importorskip("scipy.special")

from klconform.adapters import load_adapter  # noqa: E402
from klconform.adapters.base import Call  # noqa: E402
from tests.libraries.reference import LOG_Q, P, canonical  # noqa: E402


@pytest.fixture(scope="module")
def adapter():
    return load_adapter("scipy")


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-14), ("float32", 1e-6)])
def test_canonical_values(adapter, reduction, dtype, rtol):
    observed = adapter.run(Call(LOG_Q, P, dtype=dtype, reduction=reduction))
    np.testing.assert_allclose(observed.value, canonical(reduction), rtol=rtol)
    assert observed.dtype == dtype


def test_only_none_is_native_the_rest_is_composed_and_said_so(adapter):
    assert not adapter.plan(Call(LOG_Q, P, dtype="float64", reduction="none")).composed
    for reduction in ("sum", "mean", "batchmean"):
        plan = adapter.plan(Call(LOG_Q, P, dtype="float64", reduction=reduction))
        assert "computed by klconform" in plan.composed
        assert plan.conversions == ("prediction: exp of the log-probabilities",)


def test_no_default_reduction_no_log_target_no_autograd(adapter):
    assert adapter.plan(Call(LOG_Q, P, dtype="float64")).unsupported
    assert adapter.plan(Call(LOG_Q, np.log(P), dtype="float64", reduction="none",
                             log_target=True)).unsupported
    assert not adapter.capabilities.autograd


def test_truth_first_argument_order():
    # rel_entr(P, Q) is the KL(P||Q) terms; the other order is KL(Q||P).
    np.testing.assert_allclose(special.rel_entr(P, np.exp(LOG_Q)), canonical("none"),
                               rtol=1e-14)
    assert not np.allclose(special.rel_entr(np.exp(LOG_Q), P), canonical("none"))


def test_deviation_float16_is_computed_and_returned_in_float32():
    result = special.rel_entr(P.astype(np.float16), np.exp(LOG_Q).astype(np.float16))
    assert result.dtype == np.float32
