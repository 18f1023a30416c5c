"""A run that leaves conformance tests out says so: complete is false, and why."""

import json
import os

from klconform import resources
from tests.suite_runner import implementation_module, run_suite, suite_path

BATCHMEAN_AS_MEAN = """
    import torch.nn.functional as F

    def kl(input, target, reduction="mean", log_target=False):
        if reduction == "batchmean":
            reduction = "mean"
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)
"""


def test_keyword_selection_is_partial(pytester):
    run = run_suite(pytester, "numpy", "-k", "worked")
    report = run.report
    assert run.result.ret == 0
    assert report["run"]["complete"] is False
    counts = report["run"]["conformance_tests"]
    assert counts["run"] == counts["selected"] < counts["available"]
    assert f"-k worked deselected {counts['available'] - counts['selected']} of " \
           f"{counts['available']} conformance tests" in report["run"]["partial"]


def test_exitfirst_is_partial(pytester):
    module = implementation_module(pytester, "batchmean_as_mean", BATCHMEAN_AS_MEAN)
    run = run_suite(pytester, f"{module}:kl", "-x")
    report = run.report
    assert report["verdict"] == "fail" and report["run"]["complete"] is False
    counts = report["run"]["conformance_tests"]
    assert counts["run"] < counts["selected"]
    assert any(reason.startswith("-x stopped the run after 1 failure(s) (")
               for reason in report["run"]["partial"]), report["run"]["partial"]


def test_deselect_is_partial(pytester):
    # Node ids are relative to the rootdir, the checkout holding the suites.
    suite = os.path.relpath(suite_path(), resources.bundle_root())
    run = run_suite(pytester, "numpy", "--deselect", f"{suite}::test_case[batchmean-2d-float32]")
    assert "--deselect deselected 1 of " in " ".join(run.report["run"]["partial"])
    assert run.report["run"]["complete"] is False


def test_last_failed_is_partial(pytester):
    module = implementation_module(pytester, "batchmean_as_mean_lf", BATCHMEAN_AS_MEAN)
    args = [suite_path(), f"--impl={module}:kl", f"--report-dir={pytester.path / 'r'}",
            "-k", "batchmean-2d or roles"]
    first = pytester.runpytest_inprocess(*args)
    assert first.ret == 1
    again = pytester.runpytest_inprocess(*args, "--lf")
    report = json.loads((pytester.path / "r" / "report.json").read_text())
    assert again.ret == 1
    assert "--lf ran only the tests that failed in the previous run" in report["run"]["partial"]
    assert report["run"]["complete"] is False


def test_every_suite_unfiltered_is_complete(pytester):
    every_suite = tuple(sorted(path.name for path in resources.suites_dir().glob("test_*.py")))
    run = run_suite(pytester, "numpy", suites=every_suite)
    report = run.report
    assert run.result.ret == 0, run.output[-2000:]
    assert report["run"]["partial"] == [] and report["run"]["complete"] is True
    counts = report["run"]["conformance_tests"]
    assert counts["available"] == counts["selected"] == counts["run"] > 300
