"""The torch-distributions record against torch.distributions itself."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.distributions import Categorical, kl_divergence  # noqa: E402

from klconform.adapters import load_adapter  # noqa: E402
from klconform.adapters.base import Call  # noqa: E402
from klconform.adapters.torch_distributions import (  # noqa: E402
    categorical_kl,
    categorical_kl_log_target,
)
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


# The record's convention: both log-space arguments are logits.

def test_logits_a_constant_per_row_changes_nothing():
    shifted = LOG_Q + np.array([[3.0], [-2.0]])[: len(LOG_Q)]
    for log_prediction in (LOG_Q, shifted):
        value = categorical_kl(torch.tensor(log_prediction), torch.tensor(P)).sum().item()
        assert value == pytest.approx(canonical("sum"), rel=1e-13)
        value = categorical_kl_log_target(torch.tensor(log_prediction),
                                          torch.tensor(np.log(P) + 5.0)).sum().item()
        assert value == pytest.approx(canonical("sum"), rel=1e-13)


def test_rows_that_are_not_normalised_are_unsupported_not_compared(adapter):
    """Where the claims unnormalized-negative and nan-propagates would judge a logits
    argument, the call is unsupported, with the reason."""
    raw = LOG_Q + 1.0
    assert "input rows that are not normalised" in adapter.plan(
        Call(raw, P, dtype="float64", reduction="sum")).unsupported
    nan_input = LOG_Q.copy()
    nan_input[0, 0] = np.nan
    assert adapter.plan(Call(nan_input, P, dtype="float64", reduction="sum")).unsupported
    assert "target rows that are not normalised" in adapter.plan(
        Call(LOG_Q, np.log(P) + 1.0, dtype="float64", reduction="sum",
             log_target=True)).unsupported
    plan = adapter.plan(Call(LOG_Q, np.log(P), dtype="float64", reduction="sum",
                             log_target=True))
    assert plan.unsupported is None
    # Both gradients are judged with respect to the logits (the softmax's own term included).
    assert not plan.unjudged and set(plan.logits_gradients) == {"input", "target"}


# Each declared deviation, still observed.

def test_deviation_probs_clamp_makes_a_certain_outcome_negative():
    # normalized-nonnegative, and elementwise's shrunk example (P = [1], log Q = [0]).
    for dtype, eps in ((torch.float32, 2.0 ** -23), (torch.float64, 2.0 ** -52)):
        one = torch.ones(1, dtype=dtype)
        value = kl_divergence(Categorical(probs=one), Categorical(logits=one.log())).item()
        assert value == pytest.approx(-eps, rel=1e-3)


def test_deviation_probability_rows_are_renormalised():
    # elementwise and gradient-target: a row of P is divided by its sum.
    doubled = categorical_kl(torch.tensor(LOG_Q), torch.tensor(2.0 * P)).sum().item()
    assert doubled == pytest.approx(canonical("sum"), rel=1e-13)   # not 2 KL + 2 log 2


def test_deviation_zero_target_clamped_below_one():
    # zero-target-sum-is-finite (float32): P = [1, 0, 0] becomes 1 - eps before its log.
    log_q = torch.tensor([[-1.0000005e-06, -14.508657738524219, -14.508657738524219]],
                         dtype=torch.float32)
    value = categorical_kl(log_q, torch.tensor([[1.0, 0.0, 0.0]])).item()
    assert value == pytest.approx(8.34e-07, rel=2e-2)


# What its real deviations are blamed on: the claim each breaks, not the case's tags.

def _outcome(adapter, case_id, dtype, gradients=False):
    from klconform.engine.evaluate import evaluate
    from klconform.engine.gradients import evaluate_gradients
    from klconform.spec.cases import load_cases

    case = next(case for case in load_cases() if case.id == case_id)
    return (evaluate_gradients if gradients else evaluate)(case, dtype, adapter)


def test_the_probs_clamp_on_a_vocabulary_fails_the_formula_not_cross_entropy(adapter):
    # 8 x 128000 in bfloat16: every P below eps = 7.8e-3 is clamped up inside the log
    # (7.98 expected, 59.25 measured), which the cross-entropy also reproduces within the
    # loose bfloat16 budget of a vocabulary.
    for gradients in (False, True):
        outcome = _outcome(adapter, "large-vocab-summation-accuracy", "bfloat16", gradients)
        assert outcome.claim_results.get("none-pointwise") == "failed", outcome.claim_results
        assert outcome.claim_results.get("cross-entropy-decomposition") in (None, "passed")
        assert "the target clamped to [eps, 1 - eps] inside the log" in outcome.diagnosis


def test_gradients_at_identical_peaked_rows_fail_no_claim_but_their_own(adapter):
    # bfloat16: d/dlogits at P = Q is within its budget of 0, so the library's exact 0 is
    # right; d/dtarget is the declared renormalisation (gradient-target).
    outcome = _outcome(adapter, "identical-peaked-is-zero", "bfloat16", gradients=True)
    assert outcome.claim_results["gradient-input"] == "passed", outcome.claim_results
    assert set(outcome.claims) == {"gradient-target"}
    # float64: at P = Q the renormalisation, a clamped result and clamped terms all give
    # these gradients, so neither gradient claim is judged, and no finite step blames the
    # renormalised value a step away on another claim.
    outcome = _outcome(adapter, "identical-peaked-is-zero", "float64", gradients=True)
    assert outcome.status != "failed", outcome.checks
    assert set(outcome.claim_results) == {"gradient-input", "gradient-target"}
