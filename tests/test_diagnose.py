"""`klconform diagnose`: functions in several conventions give records that `run
--convention` accepts and passes; buggy ones give findings, never a convention that
explains the bug away, and the run fails on the claim; undecidable ones say so."""

import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from klconform.adapters import load_adapter
from klconform.authoring.diagnose import diagnose, diagnose_command, record_text
from klconform.authoring.record_compare import convention_differences
from klconform.engine.evaluate import evaluate
from klconform.spec.cases import load_cases
from klconform.spec.claims import load_spec
from klconform.spec.conventions import load_record

HERE = Path(__file__).resolve().parent / "conventions"
FUNCTIONS = "tests.conventions.functions"


@cache
def diagnosed(function):
    return diagnose(f"{FUNCTIONS}:{function}")


def written(function, tmp_path):
    path = tmp_path / f"{function}.yaml"
    path.write_text(record_text(diagnosed(function).record))
    return path


def failing_must_claims(function, record_path, only_claims=None):
    """Must-level claims that fail over the default cases (those judging `only_claims`)."""
    adapter = load_adapter(f"{FUNCTIONS}:{function}", convention=str(record_path))
    levels = load_spec().claims
    failing, passed = set(), set()
    for case in load_cases():
        if case.profile == "thorough" or (only_claims and not set(case.claims) & only_claims):
            continue
        for dtype in case.dtypes:
            for claim, status in (evaluate(case, dtype, adapter).claim_results or {}).items():
                if status in ("failed", "errored") and levels[claim].level == "must":
                    failing.add(claim)
                elif status == "passed":
                    passed.add(claim)
    return failing, passed


@pytest.mark.parametrize("function, convention", [
    ("torch_like", "torch_like"), ("probability_rows", "probability_rows"),
    ("distillation", "distillation"), ("log_space", "log_space"),
])
def test_the_inferred_record_states_the_hand_written_convention(function, convention):
    result = diagnosed(function)
    assert result.findings == [] and result.ambiguities == []
    hand_written = load_record(HERE / f"{convention}.yaml",
                               injected_function=f"{FUNCTIONS}:{function}")
    assert convention_differences(result.record, hand_written) == []


@pytest.mark.parametrize("loss_class", ["TorchLikeLoss", "KeywordsPassedOnLoss"])
def test_a_loss_class_takes_its_reduction_from_the_constructor_or_its_bases(loss_class):
    result = diagnosed(loss_class)
    assert result.findings == [] and result.ambiguities == []
    assert result.record.data["loss_class"] == f"{FUNCTIONS}:{loss_class}"
    assert "function" not in result.record.data
    hand_written = load_record(HERE / "torch_like.yaml",
                               injected_loss_class=f"{FUNCTIONS}:{loss_class}")
    assert convention_differences(result.record, hand_written) == []


def test_a_model_first_function_is_written_and_then_passes_its_run(tmp_path):
    result = diagnosed("model_first")
    assert result.record.data["arguments"] == ["prediction", "target"]
    assert result.record.data["spaces"] == {"prediction": "probabilities",
                                            "target": "probabilities"}
    assert result.record.data["output"] == "rows"
    failing, passed = failing_must_claims("model_first", written("model_first", tmp_path))
    assert failing == set()
    assert {"roles", "roles-asymmetric"} <= passed


@pytest.mark.parametrize("function, finding, claim", [
    ("batchmean_computed_as_mean", "looks like: 'batchmean' computed as 'mean'",
     "reduction-batchmean"),
    ("mean_over_rows_called_elements", "reduction='mean' computes the total / number of rows",
     "reduction-mean"),
    ("nan_swallowed", "a NaN in the prediction gives 0, not NaN", "nan-propagates"),
    ("rows_clipped", "on a zero target (it contributes 0)", "zero-target"),
    # No known mistake names an epsilon: the run blames the pointwise formula.
    ("rows_with_epsilon", "an epsilon or a clip inside", "none-pointwise"),
])
def test_a_bug_is_a_finding_and_the_run_fails_on_its_claim(tmp_path, function, finding, claim):
    result = diagnosed(function)
    assert any(finding in text for text in result.findings), result.findings
    # Every case: the claim a wrong value falls on need not be among a case's tags.
    failing, _ = failing_must_claims(function, written(function, tmp_path))
    assert claim in failing


def test_the_standard_meaning_is_recorded_not_the_buggy_one():
    names = diagnosed("batchmean_computed_as_mean").record.data["reduction"]["names"]
    assert names["batchmean"] == "mean-batch" and names["mean"] == "mean-elements"


def test_what_the_probes_cannot_decide_is_said_and_settled_only_by_assume(capsys):
    assert diagnose_command(f"{FUNCTIONS}:normalised_log_prediction_only", None, []) == 1
    out = capsys.readouterr().out
    assert "UNDECIDED: these fit equally" in out and "prediction=logits" in out
    assert "no record inferred" in out
    assert diagnose_command(f"{FUNCTIONS}:normalised_log_prediction_only", None,
                            ["prediction=log-probabilities"]) == 0
    out = capsys.readouterr().out
    assert "settled by --assume" in out and "prediction: log-probabilities" in out


@pytest.mark.parametrize("impl, assume, message", [
    ("nocolon", [], "expected MODULE:ATTR"),
    ("tests.conventions.functions:HERE_NOT", [], "has no attribute"),
    ("tests.conventions.functions:np", [], "not callable"),
    (f"{FUNCTIONS}:torch_like", ["prediction=log"], "--assume 'prediction=log'"),
])
def test_bad_input_is_one_line(capsys, impl, assume, message):
    assert diagnose_command(impl, None, assume) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_diagnose_write_then_run_from_another_directory(tmp_path):
    (tmp_path / "mine.py").write_text((HERE / "functions.py").read_text())
    command = [sys.executable, "-m", "klconform.cli.main"]
    inferred = subprocess.run(
        command + ["diagnose", "--impl", "mine:batchmean_computed_as_mean", "--write",
                   "conv.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert inferred.returncode == 1, inferred.stdout + inferred.stderr
    assert "looks like: 'batchmean' computed as 'mean'" in inferred.stdout
    assert yaml.safe_load((tmp_path / "conv.yaml").read_text())["function"] == \
        "mine:batchmean_computed_as_mean"
    run = subprocess.run(
        command + ["run", "--impl", "mine:batchmean_computed_as_mean", "--convention",
                   "conv.yaml", "--report-dir", "out", "--", "-q", "-k", "batchmean"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert "`reduction-batchmean` | must | **FAIL**" in (tmp_path / "out" / "report.md").read_text()


def test_a_loss_class_is_diagnosed_written_as_loss_class_and_its_run_passes(tmp_path):
    """torch.nn.KLDivLoss: reduction and log_target are constructor keywords; the record
    names it as `loss_class:`, and `run --impl CLASS --convention` builds it that way."""
    pytest.importorskip("torch")
    command = [sys.executable, "-m", "klconform.cli.main"]
    inferred = subprocess.run(
        command + ["diagnose", "--impl", "torch.nn:KLDivLoss", "--write", "conv.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert inferred.returncode == 0, inferred.stdout + inferred.stderr
    record = load_record(tmp_path / "conv.yaml")
    assert record.loss_class == "torch.nn:KLDivLoss" and record.function is None
    hand_written = load_record(HERE / "torch_like.yaml", injected_loss_class="torch.nn:KLDivLoss")
    assert convention_differences(record, hand_written) == []
    adapter = load_adapter("torch.nn:KLDivLoss", convention=str(tmp_path / "conv.yaml"))
    assert adapter.loss_class is not None and adapter.capabilities.module_form
    run = subprocess.run(
        command + ["run", "--impl", "torch.nn:KLDivLoss", "--convention", "conv.yaml",
                   "--report-dir", "out"], cwd=tmp_path, capture_output=True, text=True,
        timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "— PASS" in (tmp_path / "out" / "report.md").read_text().splitlines()[0]


def test_a_function_named_by_impl_stays_a_function_with_a_loss_class_file(tmp_path):
    path = tmp_path / "conv.yaml"
    path.write_text((HERE / "torch_like.yaml").read_text()
                    + "loss_class: torch.nn:KLDivLoss\n")
    adapter = load_adapter(f"{FUNCTIONS}:torch_like", convention=str(path))
    assert adapter.record.function == f"{FUNCTIONS}:torch_like"
    assert adapter.record.loss_class is None and adapter.loss_class is None


def test_a_gpu_only_class_that_does_not_import_is_unavailable_not_an_error():
    import importlib.util

    if importlib.util.find_spec("liger_kernel") is not None:
        pytest.skip("liger-kernel is installed here")
    liger = Path(__file__).resolve().parents[1] / "klconform" / "adapters" / "records" / \
        "liger.yaml"
    adapter = load_adapter("liger_kernel.transformers.kl_div:LigerKLDIVLoss",
                           convention=str(liger))
    assert "without its GPU stack" in adapter.unavailable
