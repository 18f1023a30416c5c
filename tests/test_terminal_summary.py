"""The last lines of a conformance run: one line per root cause and the failing tests as
ids pytest takes back, short and capped whatever fails."""

import shlex

import pytest

from klconform.report.terminal import (
    FAILING_TEST_LINES,
    LINE_LIMIT,
    ROOT_CAUSE_LINES,
    summary_lines,
)
from tests.suite_runner import implementation_module, run_suite

BATCHMEAN_AS_MEAN = """
    import torch.nn.functional as F

    def kl(input, target, reduction="mean", log_target=False):
        if reduction == "batchmean":
            reduction = "mean"
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)
"""


def test_root_causes_and_pasteable_failing_ids_end_the_run(pytester):
    module = implementation_module(pytester, "batchmean_as_mean_summary", BATCHMEAN_AS_MEAN)
    impl = f"{module}:kl"
    run = run_suite(pytester, impl, "-k", "batchmean")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    lines = [line for line in run.result.stdout.lines if line.startswith("klconform: ")]
    causes = [line for line in lines if line.startswith("klconform:   1. ")]
    assert causes and "looks like: 'batchmean' computed as 'mean'" in causes[0]
    ids = [shlex.split(line.split("klconform:   ", 1)[1])[0] for line in lines
           if line.startswith("klconform:   '")]
    assert ids and all(test.startswith("test_cases.py::test_case[") and "batchmean" in test
                       for test in ids)
    assert not any(test.startswith("::") for test in ids)
    # Pasted back into pytest from the same directory, the id runs that one test.
    again = pytester.runpytest_inprocess(f"--impl={impl}", "--kl-only", ids[0],
                                         f"--report-dir={pytester.path / 'again'}",
                                         "-p", "no:cacheprovider")
    again.assert_outcomes(failed=1)


def synthetic(causes, tests_each=3):
    failures = [{"case": f"case-{c}", "dtype": "float32", "claims": ["roles"],
                 "level": "must", "status": "failed",
                 "nodeid": f"::test_case[case-{c}-{t}]",
                 "test": f"test_cases.py::test_case[case-{c}-{t}]",
                 "checks": [f"oracle: word{c} " + "x" * 400]}
                for c in range(causes) for t in range(tests_each)]
    return {"claims": [], "failures": failures}


def test_many_root_causes_and_failures_stay_capped():
    lines = summary_lines(synthetic(30), rerun="python -m pytest --kl-only --impl=x")
    causes = [line for line in lines if line[2:3].isdigit() or line[2:4].isdigit()]
    tests = [line for line in lines if line.startswith("  'test_cases.py")]
    assert len(causes) == ROOT_CAUSE_LINES and len(tests) == FAILING_TEST_LINES
    assert "  ... and 25 more root causes (report.md beside report.json)" in lines
    assert "  ... and 80 more in report.json" in lines
    assert len(lines) == 1 + ROOT_CAUSE_LINES + 1 + 1 + FAILING_TEST_LINES + 1
    assert all(len(line) <= LINE_LIMIT for line in causes)
    assert all("[3 tests; roles]" in line for line in causes)


def test_a_run_without_failures_prints_no_summary():
    assert summary_lines({"claims": [], "failures": []}) == []
