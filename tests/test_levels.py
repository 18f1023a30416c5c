"""Requirement levels: must fails, should warns (fails under --kl-strict), probes record;
and the known-deviation manifest (--kl-xfails)."""

import pytest

from tests.suite_runner import implementation_module, run_suite

SILENT_TORCH = """
    import warnings
    import torch.nn.functional as F

    def kl(input, target, reduction="mean", log_target=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return F.kl_div(input, target, reduction=reduction, log_target=log_target)
"""

RAISES_ON_EVERYTHING_ODD = """
    import torch
    import torch.nn.functional as F

    def kl(input, target, reduction="mean", log_target=False):
        if input.shape != target.shape or input.numel() == 0 or input.dim() == 0:
            raise ValueError("refused: odd input")
        if not torch.isfinite(target).all() or (target < 0).any() or (target > 1).any():
            raise ValueError("refused: target out of range")
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)
"""


def test_should_failure_warns_but_passes(pytester):
    module = implementation_module(pytester, "silent_kl", SILENT_TORCH)
    run = run_suite(pytester, f"{module}:kl", "-k", "warn")
    assert run.result.ret == 0
    # Nothing failed; -k left most tests out, so the verdict is incomplete and says why.
    assert run.report["verdict"] == "incomplete"
    assert "-k warn deselected" in run.report["verdict_reason"]
    assert run.report["summary"]["warned"] == 2
    assert "ShouldLevelWarning" in run.output
    warned = [f for f in run.report["failures"] if f["status"] == "warned"]
    assert {f["case"] for f in warned} == {"explicit-mean-warns", "default-mean-warns"}


def test_should_failure_fails_under_strict(pytester):
    module = implementation_module(pytester, "silent_kl", SILENT_TORCH)
    run = run_suite(pytester, f"{module}:kl", "-k", "warn", "--kl-strict")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    assert run.report["verdict"] == "fail"
    assert "mean-warns (should)" in run.output


def test_implementation_defined_points_are_recorded_never_failed(pytester):
    module = implementation_module(pytester, "strict_kl", RAISES_ON_EVERYTHING_ODD)
    run = run_suite(pytester, f"{module}:kl", "-k", "probe")
    # No probe failed; the run still fails the coverage gate: probes judge no claim.
    assert run.report["summary"]["failed"] == run.report["summary"]["errored"] == 0
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    assert "no claim was checked" in run.output
    recorded = run.report["implementation_defined"]
    assert len(recorded) == run.report["summary"]["recorded"] > 10
    refused = [entry for entry in recorded if "raises" in entry["observed"]]
    assert any("refused: odd input" in entry["observed"]["raises"] for entry in refused)


def test_torch_report_lists_every_implementation_defined_point(pytester):
    run = run_suite(pytester, "torch", "-k", "probe")
    points = {entry["point"] for entry in run.report["implementation_defined"]}
    for expected in ("shape mismatch", "input -inf with target 0", "target -inf with log_target",
                     "negative target", "target above 1", "empty batch, 'none'",
                     "empty batch, 'sum'", "empty batch, 'mean'", "empty batch, 'batchmean'",
                     "0-d input", "legacy size_average=False", "legacy reduce=False",
                     "int64 input", "float32 input, float64 target",
                     "warning for the default reduction", "gradient at target 0"):
        assert any(point.startswith(expected) for point in points), expected
    by_point = {e["point"]: e["observed"] for e in run.report["implementation_defined"]}
    assert "RuntimeError" in by_point["int64 input and target, 'sum'"]["raises"]
    assert by_point["empty batch, 'sum'"]["value"] == "0"
    assert "nan" in by_point["gradient at target 0, 'sum'"]["gradient"]
    assert "## Implementation-defined behaviour" in (run.report_dir / "report.md").read_text()


def _manifest(pytester, text):
    path = pytester.path / "deviations.yaml"
    path.write_text(text)
    return f"--kl-xfails={path}"


def test_manifest_turns_listed_failure_into_xfail(pytester):
    module = implementation_module(pytester, "silent_kl", SILENT_TORCH)
    manifest = _manifest(pytester, """
deviations:
  - id: mean-warns
    reason: we chose not to warn
    link: https://example.org/issue/1
""")
    run = run_suite(pytester, f"{module}:kl", "-k", "warn", "--kl-strict", manifest, "-ra")
    assert run.result.ret == 0
    assert run.report["summary"]["xfailed"] == 2
    statuses = {claim["id"]: claim["status"] for claim in run.report["claims"]}
    assert statuses["mean-warns"] == "known-deviation"
    reports = run.result.reprec.getreports("pytest_runtest_logreport")
    expected = [report for report in reports if hasattr(report, "wasxfail")]
    assert len(expected) == 2
    for report in expected:
        assert "we chose not to warn" in report.wasxfail
        # The reason alone: pytest formats no traceback, with its source, nobody reads.
        assert report.longreprtext == report.wasxfail
    assert run.output.count("we chose not to warn") >= 2   # -ra's XFAIL lines


def test_manifest_entry_that_now_passes_is_stale(pytester):
    manifest = _manifest(pytester, """
deviations:
  - id: batchmean-2d
    dtypes: [float64]
    reason: used to divide by numel
""")
    run = run_suite(pytester, "torch", "-k", "batchmean-2d", manifest)
    assert run.result.ret == 0
    assert run.report["summary"]["stale"] == 1
    strict = run_suite(pytester, "torch", "-k", "batchmean-2d", manifest, "--kl-strict")
    assert strict.result.ret == pytest.ExitCode.TESTS_FAILED
    assert "passes now; remove the stale known deviation 'batchmean-2d'" in strict.output


def test_manifest_with_unknown_id_is_an_error(pytester):
    manifest = _manifest(pytester, """
deviations:
  - id: batchmean-2dd
    reason: typo
""")
    run = run_suite(pytester, "torch", "-k", "batchmean-2d", manifest)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert "deviations.yaml:3: field 'deviations[0].id': unknown case or claim id" in run.output
    assert "Traceback" not in run.output


def test_missing_device_is_unsupported_with_the_reason(pytester):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the test is about a missing device")
    run = run_suite(pytester, "torch", "-k", "batchmean-2d", "--kl-device=cuda")
    # Every call unsupported: nothing was checked, so the run fails (tests/test_gate.py).
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    assert "unsupported: torch does not support device cuda (has cpu)" in run.output
    assert run.report["summary"]["unsupported"] == run.report["summary"]["total"] == 4
    assert run.report["run"]["device"] == "cuda"
