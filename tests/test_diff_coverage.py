"""`klconform diff` gates coverage: a must-level claim checked in the base report and not
checked in the new one is a regression (exit 1), unless --allow-coverage-drop."""

import json
import subprocess
import sys

from klconform.report.diff import compare, render_markdown, render_text
from tests.suite_runner import run_suite


def report(claims, verdict="pass"):
    """A report.json-shaped dict: claims as (id, level, status, checked)."""
    return {"report_schema": "2", "verdict": verdict,
            "implementation": {"name": "mine"},
            "coverage": {"checked": sum(c[3] for c in claims), "applicable": len(claims)},
            "claims": [{"id": claim, "level": level, "status": status, "checked": checked,
                        "counts": {}, "reasons": ["needs autograd"] * (status == "unsupported"),
                        "cases": []}
                       for claim, level, status, checked in claims],
            "failures": []}


BASE = report([("roles", "must", "pass", True), ("reduction-sum", "must", "pass", True),
               ("summation-accuracy", "should", "pass", True)])


def test_a_must_claim_no_longer_checked_is_a_coverage_regression():
    new = report([("roles", "must", "not-run", False), ("reduction-sum", "must", "pass", True),
                  ("summation-accuracy", "should", "pass", True)], verdict="incomplete")
    diff = compare(BASE, new, "base.json", "new.json")
    assert diff.exit_status == 1
    assert [change.name for change in diff.coverage_drops] == ["roles"]
    text = render_text(diff, BASE, new)
    assert "1 coverage regression(s)" in text
    assert "Coverage regressions (must-level claims checked before, not checked now):" in text
    assert "claim roles (must): pass -> not-run — not run in this report" in text
    markdown = render_markdown(diff, BASE, new)
    assert "**Coverage regressions: must-level claims checked before are not checked now.**" \
        in markdown


def test_unsupported_and_errored_only_claims_are_not_checked_either():
    new = report([("roles", "must", "unsupported", False),
                  ("reduction-sum", "must", "known-deviation", False),
                  ("summation-accuracy", "should", "pass", True)])
    diff = compare(BASE, new)
    assert diff.exit_status == 1
    details = {change.name: change.detail for change in diff.coverage_drops}
    assert details["roles"] == "unsupported: needs autograd"
    assert "no call returned a value to judge" in details["reduction-sum"]


def test_allow_coverage_drop_lists_the_drop_without_failing():
    new = report([("roles", "must", "not-run", False), ("reduction-sum", "must", "pass", True),
                  ("summation-accuracy", "should", "pass", True)])
    diff = compare(BASE, new, allow_coverage_drop=True)
    assert diff.exit_status == 0
    assert "(allowed by --allow-coverage-drop)" in render_text(diff, BASE, new)


def test_a_should_level_drop_and_an_unchanged_report_do_not_fail():
    new = report([("roles", "must", "pass", True), ("reduction-sum", "must", "pass", True),
                  ("summation-accuracy", "should", "not-run", False)])
    assert compare(BASE, new).exit_status == 0
    assert compare(BASE, BASE).exit_status == 0


def test_a_claim_that_now_fails_by_erroring_is_named_once_as_a_regression():
    new = report([("roles", "must", "fail", False), ("reduction-sum", "must", "pass", True),
                  ("summation-accuracy", "should", "pass", True)], verdict="fail")
    diff = compare(BASE, new)
    assert [change.name for change in diff.regressions] == ["roles"]
    assert diff.coverage_drops == []


def test_reports_without_the_checked_field_are_read_from_their_counts():
    old = report([("roles", "must", "pass", True)])
    new = report([("roles", "must", "fail", False)])
    for entry, counts in ((old["claims"][0], {"passed": 3}), (new["claims"][0], {"errored": 3})):
        del entry["checked"]
        entry["counts"] = counts
    old["claims"][0]["status"] = "known-deviation"     # a deviation's values were judged
    new["claims"][0]["status"] = "known-deviation"
    diff = compare(old, new)
    assert [change.name for change in diff.coverage_drops] == ["roles"]


def test_diff_of_a_full_run_and_a_keyword_run_exits_1(pytester, tmp_path):
    full = run_suite(pytester, "numpy")
    full_path = tmp_path / "full.json"
    full_path.write_text(json.dumps(full.report))
    partial = run_suite(pytester, "numpy", "-k", "batchmean")
    partial_path = tmp_path / "batchmean.json"
    partial_path.write_text(json.dumps(partial.report))
    assert full.result.ret == partial.result.ret == 0

    def diff(*args):
        return subprocess.run([sys.executable, "-m", "klconform.cli.main", "diff", *args],
                              capture_output=True, text=True, timeout=120)

    gated = diff(str(full_path), str(partial_path))
    assert gated.returncode == 1, gated.stdout[-2000:]
    assert "claim roles (must): pass -> not-run" in gated.stdout
    allowed = diff("--allow-coverage-drop", str(full_path), str(partial_path))
    assert allowed.returncode == 0, allowed.stdout[-2000:]
    assert diff(str(full_path), str(full_path)).returncode == 0
