"""report.json follows its schema, report.md renders it, and writing never changes the run."""

import json
import os

import jsonschema
import pytest

from klconform import resources
from klconform.files import write_atomically
from tests.suite_runner import SuiteRun, implementation_module, run_suite

SWAPPED = """
    import torch.nn.functional as F

    def kl(input, target, reduction="mean", log_target=False):
        return F.kl_div(target.log(), input.exp(), reduction=reduction)
"""


def _schema():
    return json.loads((resources.spec_dir() / "report.schema.json").read_text())


def test_passing_run_report_matches_schema_and_pytest(pytester):
    run = run_suite(pytester, "numpy", "-k", "roles or batchmean")
    report = run.report
    jsonschema.validate(report, _schema())
    outcomes = run.result.parseoutcomes()
    assert report["summary"]["passed"] + report["summary"]["recorded"] == outcomes["passed"]
    # pytest's skips are unsupported capabilities plus thorough-only cases, told apart here
    assert report["summary"]["unsupported"] + report["summary"]["skipped"] == \
        outcomes.get("skipped", 0)
    assert report["summary"]["skipped"] == 2  # large-vocab-batchmean, thorough profile only
    assert report["verdict"] == "incomplete"  # nothing failed; -k left tests out
    assert report["implementation"]["name"] == "numpy"
    assert report["spec_version"] == "1.0.0"
    # -k and naming one suite file left conformance tests out: the run is not complete.
    assert report["run"]["complete"] is False
    assert "the command named only test_cases.py of the conformance suites" \
        in report["run"]["partial"]
    assert any(reason.startswith("-k 'roles or batchmean' deselected ")
               for reason in report["run"]["partial"]), report["run"]["partial"]
    assert report["run"]["settings"]["max_examples"] >= 1
    markdown = (run.report_dir / "report.md").read_text()
    assert markdown.startswith("# klconform: numpy")
    assert "| `roles` | must | pass |" in markdown


def test_failing_run_report_names_claims_and_diagnosis(pytester):
    module = implementation_module(pytester, "swapped_kl", SWAPPED)
    run = run_suite(pytester, f"{module}:kl", "-k", "roles-peaked-truth")
    report = run.report
    jsonschema.validate(report, _schema())
    assert report["verdict"] == "fail"
    # One bug, one claim: the value is KL(Q||P), which is still asymmetric.
    assert run.failing_claims() == {"roles"}
    failure = report["failures"][0]
    assert failure["diagnosis"].startswith("looks like: roles swapped")
    assert "F.kl_div" in failure["snippet"] or "kl(" in failure["snippet"]
    # report.md leads with the root cause; report-full.md lists every failure.
    markdown = (run.report_dir / "report.md").read_text()
    assert "### 1. looks like: roles swapped" in markdown and "**FAIL**" in markdown
    full = (run.report_dir / "report-full.md").read_text()
    assert "## Failures" in full and len(full) > len(markdown)


def test_unwritable_report_dir_does_not_change_exit_status(pytester):
    blocker = pytester.path / "not-a-directory"
    blocker.write_text("a file where the report directory should be")
    result = pytester.runpytest_inprocess(
        str(resources.suites_dir() / "test_cases.py"), "--impl=numpy", "-k", "roles",
        f"--report-dir={blocker}", "-p", "no:cacheprovider")
    assert result.ret == 0
    assert "klconform: could not write the report" in result.stdout.str()


def test_interrupted_run_is_reported_incomplete(pytester):
    module = implementation_module(pytester, "interrupting_kl", """
        import torch.nn.functional as F

        def kl(input, target, reduction="mean", log_target=False):
            if reduction == "batchmean":
                raise KeyboardInterrupt
            return F.kl_div(input, target, reduction=reduction, log_target=log_target)
    """)
    # In a subprocess: pytester re-raises an in-process KeyboardInterrupt in the outer run.
    report_dir = pytester.path / "kl-report"
    result = pytester.runpytest_subprocess(
        str(resources.suites_dir() / "test_cases.py"), f"--impl={module}:kl", "-k", "roles",
        f"--report-dir={report_dir}", "-p", "no:cacheprovider")
    run = SuiteRun(result, report_dir)
    assert run.result.ret == pytest.ExitCode.INTERRUPTED
    assert run.report["verdict"] == "incomplete"
    assert run.report["run"]["complete"] is False


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    write_atomically(target, '{"old": true}\n')

    def interrupted_replace(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, '{"new": true}\n')
    assert target.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
