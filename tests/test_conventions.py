"""Functions in other conventions, judged through implementation records (--convention).

Four common shapes must pass with the claims their convention lets them be judged on, and
wrong functions that only a convention-mapped run can see through must fail on the claim
they break: this is the mutation self-test for records.
"""

import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from klconform.adapters import load_adapter
from klconform.engine.evaluate import evaluate
from klconform.engine.gradients import GRADIENT_DTYPES, eligible, evaluate_gradients
from klconform.spec.cases import load_cases
from klconform.spec.claims import load_spec
from klconform.spec.deviations import Manifest, record_deviations

HERE = Path(__file__).resolve().parent / "conventions"
FAILING = ("failed", "errored")


@cache
def judged(function, convention):
    """claim -> set of statuses over every default-profile case and gradient."""
    adapter = load_adapter(f"tests.conventions.functions:{function}",
                           convention=str(HERE / f"{convention}.yaml"))
    manifest = Manifest(record_deviations(adapter.record))
    results = {}
    for case in load_cases():
        if case.profile == "thorough":
            continue
        for dtype in case.dtypes:
            outcomes = [evaluate(case, dtype, adapter)]
            if eligible(case) and dtype in GRADIENT_DTYPES:
                outcomes.append(evaluate_gradients(case, dtype, adapter))
            for outcome in outcomes:
                for claim, status in (outcome.claim_results or {}).items():
                    if status in FAILING and manifest.match(outcome.case_id, (claim,), dtype):
                        status = "xfailed"
                    results.setdefault(claim, set()).add(status)
    return results


def failing_must_claims(results):
    levels = load_spec().claims
    return {claim for claim, statuses in results.items()
            if statuses & set(FAILING) and levels[claim].level == "must"}


@pytest.mark.parametrize("function, convention, checked_at_least", [
    ("torch_like", "torch_like", {"reduction-batchmean", "log-target", "gradient-input"}),
    ("probability_rows", "probability_rows", {"roles", "zero-target", "elementwise"}),
    ("distillation", "distillation", {"reduction-batchmean", "identical-zero"}),
    ("log_space", "log_space", {"roles", "none-pointwise", "log-target"}),
])
def test_a_correct_function_in_its_convention_passes(function, convention, checked_at_least):
    results = judged(function, convention)
    assert failing_must_claims(results) == set()
    passed = {claim for claim, statuses in results.items() if "passed" in statuses}
    assert checked_at_least <= passed


@pytest.mark.parametrize("function, convention, breaks", [
    ("rows_clipped", "probability_rows", "zero-target"),
    # A renormalisation is the known mistake unnormalized-negative names.
    ("rows_renormalised", "probability_rows", "unnormalized-negative"),
    ("mean_over_rows_called_elements", "torch_like", "reduction-mean"),
])
def test_a_wrong_function_fails_on_the_claim_it_breaks(function, convention, breaks):
    assert breaks in failing_must_claims(judged(function, convention))


def test_what_a_convention_cannot_state_is_unsupported_not_passed():
    results = judged("probability_rows", "probability_rows")
    # 'sum', 'mean' and 'batchmean' are klconform's own arithmetic over the rows here.
    for claim in ("reduction-sum", "reduction-mean", "reduction-batchmean", "log-target"):
        assert results.get(claim, {"unsupported"}) == {"unsupported"}, claim
    distillation = judged("distillation", "distillation")
    # The gradient with respect to logits is judged as such: (Q - P) times the scale.
    assert "passed" in distillation["gradient-input"]
    assert not distillation["gradient-input"] & {"failed", "errored"}


def test_klconform_run_with_a_convention_from_another_directory(tmp_path):
    (tmp_path / "rows.py").write_text((HERE / "functions.py").read_text())
    (tmp_path / "rows.yaml").write_text((HERE / "probability_rows.yaml").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "klconform.cli.main", "run", "--impl", "rows:rows_clipped",
         "--convention", "rows.yaml", "--report-dir", "out", "--", "-q", "-k", "zero"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "rows:rows\\_clipped" in report and "`zero-target` | must | **FAIL**" in report
