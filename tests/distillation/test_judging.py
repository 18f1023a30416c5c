"""Judging rules the distillation issue fixed, each shown failing where it must.

- budgets hold for every standard formula evaluated in the dtype: the quotient form
  p log(p / q), and a function's own log_softmax of its logits;
- a target in a log space states P = 0 only as -inf: that is recorded under
  impl-log-target-neginf, never a zero-target failure;
- a record's name comes from --impl when it is left out, and a missing field is named.
"""

import re

import numpy as np
import pytest

from klconform.adapters import load_adapter
from klconform.engine.evaluate import evaluate
from klconform.errors import SpecError
from klconform.spec.cases import load_cases
from klconform.spec.conventions import load_record
from tests.distillation.mutants import CORRECT, record_path

ROWS_RECORD = "tests/conventions/probability_rows.yaml"


def quotient_rows(p, q):
    """KL per row as p log(p / q), in the arrays' own dtype (scipy.special.rel_entr style)."""
    p, q = np.asarray(p), np.asarray(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p == 0, np.zeros_like(p), p * np.log(p / q))
    return terms.sum(axis=-1)


def quotient_rows_with_epsilon(p, q):
    """The same with an epsilon in the quotient: wrong, and must still fail."""
    p, q = np.asarray(p), np.asarray(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p == 0, np.zeros_like(p), p * np.log(p / (q + 1e-4)))
    return terms.sum(axis=-1)


def case(case_id):
    return next(each for each in load_cases() if each.id == case_id)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_quotient_form_is_within_budget(dtype):
    adapter = load_adapter(f"{__name__}:quotient_rows", convention=ROWS_RECORD)
    for case_id in ("zero-target-sum-is-finite", "roles-kl-p-given-q", "none-pointwise-2d"):
        outcome = evaluate(case(case_id), dtype, adapter)
        assert outcome.status in ("passed", "unsupported"), (case_id, outcome.checks)


def test_an_epsilon_in_the_quotient_still_fails():
    adapter = load_adapter(f"{__name__}:quotient_rows_with_epsilon", convention=ROWS_RECORD)
    assert evaluate(case("roles-kl-p-given-q"), "float32", adapter).status == "failed"


def test_a_logits_target_with_zeros_is_recorded_not_failed():
    adapter = load_adapter(f"tests.distillation.losses:{CORRECT['hinton-kd'].__name__}",
                           convention=str(record_path("hinton-kd")))
    outcome = evaluate(case("zero-target-sum-is-finite"), "float64", adapter)
    assert outcome.status == "recorded", outcome
    assert outcome.claim_results["impl-log-target-neginf"] == "recorded"
    assert outcome.claim_results["zero-target"] == "unsupported"
    assert "impl-log-target-neginf" in outcome.claim_reasons["zero-target"]


def test_a_probability_target_with_zeros_is_judged_within_the_normalisation_budget():
    # The loss takes log_softmax of its logits itself: at float64 that rounding is ~1e-16,
    # far above the 1e-21 budget of the terms alone.
    adapter = load_adapter(f"tests.distillation.losses:{CORRECT['kd-teacher-probs'].__name__}",
                           convention=str(record_path("kd-teacher-probs")))
    outcome = evaluate(case("zero-target-sum-is-finite"), "float64", adapter)
    assert outcome.status == "passed", outcome.checks
    assert outcome.claim_results["zero-target"] == "passed"


def test_a_name_left_out_is_taken_from_impl(tmp_path):
    record = tmp_path / "conv.yaml"
    with open(ROWS_RECORD) as source:
        record.write_text(source.read().replace("name: probability-rows\n", ""))
    loaded = load_record(record, injected_function="my_pkg.losses:kd_loss")
    assert loaded.name == "my_pkg.losses-kd_loss"
    with pytest.raises(SpecError) as error:
        load_record(record)
    message = str(error.value)
    assert "missing field 'name'" in message and "--impl" in message
    # No line is wrong, so none is pointed at (file:LINE: would name one).
    assert not re.search(rf"{re.escape(str(record))}:\d", message), message
