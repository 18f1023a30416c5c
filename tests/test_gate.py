"""The coverage gate and honest coverage: a run that checks nothing fails, a run below
--min-coverage fails naming the figure, and an errored call is not a check.

The gate is exercised as users meet it: `klconform run` and `pytest --impl` in a project of
their own (subprocesses), and pytest in-process for the report's wording."""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from klconform.report.build import build_report, who_raised
from klconform.report.gate import gate_reason, parse_min_coverage
from klconform.spec.claims import load_spec
from tests.suite_runner import implementation_module, run_suite

RETURNS_NUMPY = """
    import torch.nn.functional as F

    def kl(input, target, reduction="mean", log_target=False):
        return F.kl_div(input, target, reduction=reduction, log_target=log_target).detach().numpy()
"""


# --- report-level: what counts as checked ----------------------------------------------

def stream(*records, min_coverage=None):
    """A run stream of these records (record fields only), with a header and a footer."""
    run = {"started": 0.0, "profile": "default", "strict": False, "device": "cpu",
           "invocation": [], "settings": {}, "min_coverage": min_coverage}
    events = [{"event": "header", "run": run}]
    for index, record in enumerate(records):
        events.append({"event": "record", "nodeid": f"test_cases.py::test_case[{index}]",
                       "dtype": "float32", "level": "must", "case_id": f"case-{index}",
                       **record})
    events.append({"event": "footer", "exitstatus": 0, "finished": 1.0, "partial": []})
    return events


def claim(report, claim_id):
    return next(entry for entry in report["claims"] if entry["id"] == claim_id)


def test_an_errored_call_fails_its_claim_but_is_not_a_check():
    report = build_report(stream(
        {"status": "errored", "claims": ["roles"], "claim_results": {"roles": "errored"},
         "checks": ["the implementation raised TypeError: no"]},
        {"status": "passed", "claims": ["reduction-sum"],
         "claim_results": {"reduction-sum": "passed"}},
    ), load_spec())
    assert claim(report, "roles")["status"] == "fail"
    assert claim(report, "roles")["checked"] is False
    assert claim(report, "reduction-sum")["checked"] is True
    coverage = report["coverage"]
    assert coverage["checked"] == 1 and coverage["errored"] == ["roles"]
    assert coverage["applicable"] == 2           # the errored claim counts against coverage
    from klconform.report.markdown import render_markdown

    assert "**Coverage: 1 of 2 applicable claims checked**" in render_markdown(report)


def test_a_deviation_excusing_an_error_is_not_a_check_but_one_excusing_a_value_is():
    excused_error = build_report(stream(
        {"status": "xfailed", "claims": ["roles"], "claim_results": {"roles": "xfailed"},
         "errored_claims": ["roles"]}), load_spec())
    excused_value = build_report(stream(
        {"status": "xfailed", "claims": ["roles"], "claim_results": {"roles": "xfailed"}}),
        load_spec())
    assert claim(excused_error, "roles")["status"] == "known-deviation"
    assert claim(excused_error, "roles")["checked"] is False
    assert claim(excused_value, "roles")["checked"] is True


def test_an_errored_record_of_an_older_stream_judged_nothing():
    # Streams written before errored_claims: an errored property kept 'failed' per claim.
    report = build_report(stream(
        {"status": "errored", "claims": ["roles"], "claim_results": {"roles": "failed"}}),
        load_spec())
    assert report["coverage"]["checked"] == 0


def test_nothing_checked_fails_the_gate_with_the_reason():
    report = build_report(stream(
        {"status": "unsupported", "claims": ["roles"], "claim_results": {"roles": "unsupported"},
         "message": "torch does not support device cuda (has cpu)"}), load_spec())
    assert report["gate"]["passed"] is False
    assert report["gate"]["reason"] == (
        "no claim was checked (1 claim(s) unsupported, e.g. torch does not support device "
        "cuda (has cpu)); a run that checks nothing cannot pass")
    assert report["verdict"] == "incomplete"


def test_below_min_coverage_the_verdict_and_the_gate_name_the_figure():
    records = [{"status": "passed", "claims": [name], "claim_results": {name: "passed"}}
               for name in ("roles", "reduction-sum")]
    report = build_report(stream(*records, min_coverage="3"), load_spec())
    reason = "coverage 2 of 2 applicable claims checked is below min-coverage 3"
    assert report["gate"] == {"min_coverage": "3", "passed": False, "reason": reason}
    assert report["verdict"] == "incomplete" and report["verdict_reason"] == reason
    assert build_report(stream(*records, min_coverage="2"), load_spec())["gate"]["passed"]


def test_a_percentage_is_of_the_applicable_claims():
    coverage = {"checked": 12, "applicable": 26}
    assert gate_reason(coverage, "50%") == (
        "coverage 12 of 26 applicable claims checked (46.2%) is below min-coverage 50%")
    assert gate_reason(coverage, "46%") is None
    assert gate_reason(coverage, "12") is None


@pytest.mark.parametrize(("text", "canonical"), [("20", "20"), ("80%", "80%"),
                                                 (" 7.5 % ", "7.5%"), ("100%", "100%")])
def test_min_coverage_spellings(text, canonical):
    assert parse_min_coverage(text) == canonical


@pytest.mark.parametrize(("text", "words"), [
    ("0", "at least 1"), ("2.5", "whole number"), ("0%", "above 0"), ("150%", "at most 100"),
    ("many", "neither a number of claims"), ("-3", "neither a number of claims")])
def test_bad_min_coverage_is_a_one_line_error(text, words):
    with pytest.raises(argparse.ArgumentTypeError, match=words) as error:
        parse_min_coverage(text)
    assert "\n" not in str(error.value)


# --- who raised what --------------------------------------------------------------------

def test_klconform_refusing_a_result_is_not_worded_as_the_implementation_raising():
    assert who_raised("the implementation raised ImplementationResultError: returned "
                      "ndarray, expected a torch.Tensor") == (
        "klconform raised ImplementationResultError: the implementation returned ndarray, "
        "expected a torch.Tensor")
    assert who_raised("the implementation raised ImplementationResultError on the 'sum' "
                      "call: jax has no cuda device") == (
        "klconform raised ImplementationResultError on the 'sum' call: jax has no cuda device")
    assert who_raised("the implementation raised CallNotRun: not run: the implementation "
                      "hung or crashed on 2 calls in a row") == (
        "klconform raised CallNotRun: not run: the implementation hung or crashed on 2 calls "
        "in a row")
    same = "the implementation raised TypeError: bad dtype"
    assert who_raised(same) == same


def test_the_array_bridges_say_what_was_returned_and_what_the_record_says():
    from klconform.adapters.arrays import bridge
    from klconform.adapters.base import ImplementationResultError

    with pytest.raises(ImplementationResultError) as error:
        bridge("torch").to_numpy(np.zeros(3))
    assert str(error.value) == ("the implementation returned a numpy.ndarray where the record "
                                "says torch arrays: expected a torch.Tensor")
    with pytest.raises(ImplementationResultError, match="returned a list where the record "
                                                        "says numpy arrays"):
        bridge("numpy").to_numpy([0.5])


def test_a_function_returning_numpy_checks_nothing_and_the_report_says_who_raised(pytester):
    module = implementation_module(pytester, "numpy_result_gate", RETURNS_NUMPY)
    run = run_suite(pytester, f"{module}:kl", "-k", "roles")
    report = run.report
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    assert report["summary"]["errored"] > 5 and report["summary"]["passed"] == 0
    assert report["coverage"]["checked"] == 0
    assert {"roles", "roles-asymmetric"} <= set(report["coverage"]["errored"])
    markdown = (run.report_dir / "report.md").read_text()
    assert "**Coverage: 0 of " in markdown
    assert "klconform raised ImplementationResultError: the implementation returned ndarray" \
        in markdown
    assert "the implementation raised ImplementationResultError" not in markdown
    assert "klconform: FAILED: --impl " in run.output
    errored = len(report["coverage"]["errored"])
    assert f"no claim was checked ({errored} claim(s) only errored" in run.output


# --- as a user runs it -------------------------------------------------------------------

def klconform(directory, *args):
    return subprocess.run([sys.executable, "-m", "klconform.cli.main", *args], cwd=directory,
                          capture_output=True, text=True, timeout=600)


def pytest_in(directory, *args):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=directory, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(directory)})


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Someone else's project: its own tests and pytest configuration."""
    root = tmp_path_factory.mktemp("gated-project")
    (root / "tests").mkdir()
    (root / "tests" / "test_own.py").write_text("def test_own():\n    assert True\n")
    (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    return root


def one_klconform_line(output, words):
    lines = [line for line in output.splitlines() if words in line]
    assert len(lines) == 1, output[-3000:]
    return lines[0]


def test_klconform_run_on_a_missing_device_exits_non_zero(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the test is about a missing device")
    completed = klconform(tmp_path, "run", "--impl", "torch", "--device", "cuda", "--",
                          "-k", "batchmean-2d or roles")
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output[-3000:]
    line = one_klconform_line(output, "no claim was checked")
    assert line.startswith("klconform: FAILED: --impl torch: no claim was checked (")
    assert "torch does not support device cuda (has cpu)" in line
    report = json.loads((tmp_path / "reports" / "torch" / "report.json").read_text())
    assert report["gate"]["passed"] is False and report["summary"]["failed"] == 0


def test_pytest_impl_below_min_coverage_fails_naming_the_figure(project, tmp_path):
    selection = ("--impl=numpy", "--kl-only", "-k", "worked-uniform")
    passing = pytest_in(project, *selection, "--kl-min-coverage=1",
                        f"--report-dir={tmp_path / 'one'}")
    assert passing.returncode == 0, passing.stdout[-3000:]
    coverage = json.loads((tmp_path / "one" / "report.json").read_text())["coverage"]
    checked, applicable = coverage["checked"], coverage["applicable"]
    assert 0 < checked < applicable       # the gradient claims: numpy has no autograd
    short = pytest_in(project, *selection, f"--kl-min-coverage={checked + 1}",
                      f"--report-dir={tmp_path / 'more'}")
    assert short.returncode == 1, short.stdout[-3000:]
    line = one_klconform_line(short.stdout, "is below min-coverage")
    assert line == (f"klconform: FAILED: --impl numpy: coverage {checked} of {applicable} "
                    f"applicable claims checked is below min-coverage {checked + 1}")
    percent = pytest_in(project, *selection, "--kl-min-coverage=100%",
                        f"--report-dir={tmp_path / 'percent'}")
    assert percent.returncode == 1
    assert f"({100 * checked / applicable:.1f}%) is below min-coverage 100%" in percent.stdout
    markdown = (tmp_path / "percent" / "report.md").read_text()
    assert "**The run fails the coverage gate**: coverage " in markdown


def test_klconform_run_min_coverage_passes_through_to_the_gate(tmp_path):
    completed = klconform(tmp_path, "run", "--impl", "numpy", "--min-coverage", "90%", "--",
                          "-k", "worked-uniform")
    assert completed.returncode == 1, completed.stdout[-3000:]
    assert "is below min-coverage 90%" in completed.stdout


@pytest.mark.parametrize(("args", "status", "words"), [
    (("--min-coverage", "0"), 2, "argument --min-coverage: '0': the number of claims must be"),
    (("--min-coverage", "lots"), 2, "argument --min-coverage: 'lots' is neither"),
    (("--min-coverage", "999"), 4, "--min-coverage 999 asks for more claims than the spec has"),
])
def test_klconform_run_rejects_a_min_coverage_no_run_can_meet(tmp_path, args, status, words):
    completed = klconform(tmp_path, "run", "--impl", "numpy", *args)
    assert completed.returncode == status
    assert words in completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    assert not (tmp_path / "reports").exists()


def test_pytest_rejects_an_impossible_min_coverage_in_its_own_spelling(project):
    completed = pytest_in(project, "--impl=numpy", "--kl-only", "--kl-min-coverage=999")
    assert completed.returncode == 4
    assert "--kl-min-coverage 999 asks for more claims than the spec has" in completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr


def test_after_a_crash_the_rebuilt_report_is_gated_too(tmp_path, capsys):
    # `klconform run` rebuilds the report itself after a crash: the gate applies there too.
    from klconform.harness.child_runner import _rewrite_report
    from klconform.harness.run_stream import RunStream

    journal = RunStream(tmp_path)
    for event in stream({"status": "unsupported", "claims": ["roles"],
                         "claim_results": {"roles": "unsupported"},
                         "message": "torch does not support device cuda (has cpu)"})[:-1]:
        journal.write(event.pop("event"), **event)
    journal.close()
    crash = {"nodeid": None, "returncode": -11, "signal": "SIGSEGV"}
    assert _rewrite_report(tmp_path, [crash], exitstatus=0) == 1
    assert "klconform: FAILED: no claim was checked (1 claim(s) unsupported" \
        in capsys.readouterr().out
