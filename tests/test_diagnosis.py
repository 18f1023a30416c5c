"""A failure names the mistake behind it: the diagnosis of each wrong implementation in
tests/mutants.py, on a case that exposes it, leads with that mistake."""

from functools import cache

import numpy as np
import pytest

from klconform.adapters import load_adapter
from klconform.engine.diagnosis import explain_mismatch
from klconform.engine.evaluate import evaluate, make_call
from klconform.oracle import float64 as oracle
from klconform.spec.cases import load_cases
from tests.mutants import WRONG
from tests.suite_runner import run_suite


@cache
def case_by_id():
    return {case.id: case for case in load_cases()}


def failed_outcome(mutant, case_id, dtype):
    outcome = evaluate(case_by_id()[case_id], dtype, load_adapter(WRONG[mutant].impl))
    assert outcome.status == "failed", f"{mutant} passes {case_id} [{dtype}]"
    return outcome


# (mutant, case that exposes it, dtype, what the diagnosis must lead with)
DIAGNOSED = [
    ("roles_swapped", "roles-kl-p-given-q", "float32", "roles swapped"),
    ("batchmean_divides_by_numel", "batchmean-2d", "float32",
     "'batchmean' computed as 'mean' (divided by 12)"),
    ("mean_divides_by_size0", "mean-divides-by-numel", "float32",
     "'mean' computed as 'batchmean' (divided by 3)"),
    ("batchmean_divides_by_leading_dims", "batchmean-3d-divides-by-size0-only", "float32",
     "'batchmean' divided by every leading dimension (6)"),
    ("log_target_ignored", "log-target-pointwise", "float32", "log_target ignored"),
    ("log_target_always_applied", "none-pointwise-2d", "float32",
     "log_target applied although log_target=False"),
    ("result_clamped", "raw-logits-as-input-go-negative", "float32", "negatives clamped to 0"),
    ("terms_clamped", "roles-kl-p-given-q", "float32",
     "negatives clamped to 0 (each pointwise term"),
    ("renormalised", "unnormalized-rows-not-renormalised", "float32", "inputs renormalised"),
    ("float32_inside", "none-pointwise-2d", "float64", "computed in float32"),
    ("in_bits", "worked-uniform-vs-9-12-4", "float32", "result in bits"),
    ("sign_flipped", "roles-kl-p-given-q", "float32", "sign flipped"),
    ("absolute_value", "raw-logits-as-input-go-negative", "float32", "absolute value taken"),
    ("cross_entropy_only", "soft-target-is-cross-entropy-minus-entropy", "float32",
     "target-entropy term dropped"),
    ("keras_clipped", "zero-target-contributes-zero", "float32",
     "probabilities clipped to [1e-7, 1] (keras-style)"),
    ("nan_swallowed", "nan-input-propagates-none", "float32", "NaN swallowed"),
    ("zero_target_nan", "zero-target-contributes-zero", "float32", "zero target gives nan"),
    ("input_as_probabilities", "none-pointwise-2d", "float32",
     "probabilities fed as log-probabilities"),
]


@pytest.mark.parametrize(("mutant", "case_id", "dtype", "mistake"), DIAGNOSED,
                         ids=[row[0] for row in DIAGNOSED])
def test_diagnosis_leads_with_the_mistake(mutant, case_id, dtype, mistake):
    outcome = failed_outcome(mutant, case_id, dtype)
    assert outcome.diagnosis is not None, f"{mutant}: no diagnosis"
    assert outcome.diagnosis.startswith(f"looks like: {mistake}"), outcome.diagnosis


def test_none_reduced_per_row_is_diagnosed():
    # Called directly: evaluate() diagnoses only results of the expected shape, and per-row
    # sums of a 'none' call have one dimension fewer.
    call = make_call(case_by_id()["none-pointwise-2d"], "float64", "cpu")
    expected = oracle.expected(call.input, call.target, reduction="none", log_target=False,
                               dtype="float64")
    per_row = np.sum(expected.value, axis=-1)
    assert explain_mismatch(call, per_row, expected) == \
        "looks like: 'none' reduced per row instead of returning pointwise terms"


def test_correct_value_has_no_diagnosis():
    call = make_call(case_by_id()["batchmean-2d"], "float64", "cpu")
    expected = oracle.expected(call.input, call.target, reduction="batchmean",
                               log_target=False, dtype="float64")
    assert explain_mismatch(call, expected.value, expected) is None


def test_failure_output_names_case_claim_mistake_and_reproducer(pytester):
    suite = run_suite(pytester, WRONG["batchmean_divides_by_numel"].impl,
                      "-k", "batchmean-2d-float32")
    assert suite.result.ret == pytest.ExitCode.TESTS_FAILED
    output = suite.output
    for expected in ("klconform case batchmean-2d [float32] FAILED",
                     "claim  reduction-batchmean (must)",
                     "looks like: 'batchmean' computed as 'mean' (divided by 12)",
                     "reproduce:",
                     "from tests.mutants import batchmean_divides_by_numel",
                     "batchmean_divides_by_numel(input, target, reduction='batchmean')"):
        assert expected in output, expected
    (failure,) = suite.report["failures"]
    assert failure["case"] == "batchmean-2d"
    assert "reduction-batchmean" in failure["claims"]
    assert failure["diagnosis"].startswith("looks like: 'batchmean' computed as 'mean'")


def _explaining(call, value):
    from klconform.engine.diagnosis import explaining_mistakes

    expected = oracle.expected(call.input, call.target, reduction=call.reduction,
                               log_target=False, dtype=call.dtype)
    found, _ = explaining_mistakes(call, value, expected)
    return [(text, claim) for text, claim, _ in found]


def test_an_underflowed_prediction_taken_as_inf_is_its_dtype_before_exchanged_roles():
    from klconform.adapters.base import Call

    # A one-hot target whose hot class has log Q = -111: exp underflows in bfloat16 (not the
    # KL, 111), and exchanged roles give inf too, from the zeros of P.
    log_q = np.log(np.array([[1e-300, 0.5, 0.5]]))
    log_q[0, 0] = -111.0
    call = Call(log_q, np.array([[1.0, 0.0, 0.0]]), dtype="bfloat16", reduction="batchmean")
    found = _explaining(call, np.inf)
    assert found[0][1] == "accuracy-in-dtype", found
    assert "underflows to 0" in found[0][0]
    assert ("roles swapped: computed KL(Q||P) (input and target exchanged)", "roles") in found
    # In float64 exp(-111) is a number: only exchanged roles explain inf.
    found = _explaining(Call(log_q, call.target, dtype="float64", reduction="batchmean"),
                        np.inf)
    assert found[0][1] == "roles", found
    assert all(claim != "accuracy-in-dtype" for _, claim in found)


def test_a_target_clamped_at_the_dtype_epsilon_is_the_pointwise_formula():
    from klconform.adapters.base import Call

    # Rows of many small probabilities: in bfloat16 (eps 7.8e-3) every one is clamped up.
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4096), size=2)
    log_q = np.log(rng.dirichlet(np.ones(4096), size=2))
    call = Call(log_q, p, dtype="bfloat16", reduction="sum")
    eps = 2.0**-7
    clamped = float(np.sum(p * (np.log(np.clip(p, eps, 1 - eps)) - log_q)))
    found = _explaining(call, clamped)
    assert found[0][1] == "none-pointwise", found
    assert found[0][0].startswith("the target clamped to [eps, 1 - eps] inside the log")
    # The right value is not explained by it.
    right = oracle.expected(log_q, p, reduction="sum", log_target=False, dtype="bfloat16")
    assert _explaining(call, float(right.value)) == []
