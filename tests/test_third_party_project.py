"""`pytest --impl` as the CI gate of someone else's library, run as its author would.

A temporary project outside this repository, with its own tests and configuration and a
library `mylosses` holding a correct torch-convention kl_div and one with the classic
'batchmean' bug. pytest runs there in a subprocess, exactly as a CI job would.
"""

import json
import os
import shlex
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

LIBRARY = """
    import torch.nn.functional as F


    def kl_div(input, target, reduction="mean", log_target=False):
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)


    def buggy_kl_div(input, target, reduction="mean", log_target=False):
        # 'batchmean' divided by the number of elements instead of the batch size
        if reduction == "batchmean":
            reduction = "mean"
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)
"""


# Under `pytest -n` the whole module runs on one worker (conftest.KEPT_ON_ONE_WORKER): its
# module-scoped runs are made once, not once per worker.
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("mylosses-project")
    (root / "mylosses").mkdir()
    (root / "mylosses" / "__init__.py").write_text("")
    (root / "mylosses" / "kl.py").write_text(textwrap.dedent(LIBRARY))
    (root / "tests").mkdir()
    (root / "tests" / "test_own.py").write_text("def test_own():\n    assert True\n")
    (root / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\npythonpath = ["."]\n')
    return root


def pytest_in(directory, *args, env=None):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=directory, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def klconform(directory, *args):
    return subprocess.run([sys.executable, "-m", "klconform.cli.main", *args], cwd=directory,
                          capture_output=True, text=True, timeout=600)


def report_of(project, impl):
    slug = impl.replace(":", "_")
    return json.loads((project / "reports" / slug / "report.json").read_text())


@pytest.fixture(scope="module")
def correct_run(project):
    return pytest_in(project, "--impl=mylosses.kl:kl_div")


@pytest.fixture(scope="module")
def buggy_run(project):
    # -k keeps it short; every batchmean test (cases, gradients, the property) still runs.
    return pytest_in(project, "--impl=mylosses.kl:buggy_kl_div", "--kl-only", "-k", "batchmean")


def test_correct_implementation_runs_the_suites_and_passes(project, correct_run):
    output = correct_run.stdout + correct_run.stderr
    assert correct_run.returncode == 0, output[-3000:]
    assert "klconform: mylosses.kl:kl_div PASS" in output
    report = report_of(project, "mylosses.kl:kl_div")
    counts = report["run"]["conformance_tests"]
    assert counts["available"] == counts["selected"] == counts["run"] > 300
    assert report["run"]["complete"] is True and report["run"]["partial"] == []
    assert report["verdict"] == "pass"


def test_impl_adds_the_suites_and_kl_only_runs_just_them(project):
    added = pytest_in(project, "--impl=mylosses.kl:kl_div", "--collect-only", "-q").stdout
    assert "tests/test_own.py::test_own" in added
    assert "test_case[worked-uniform-vs-9-12-4-float32]" in added
    only = pytest_in(project, "--impl=mylosses.kl:kl_div", "--kl-only", "--collect-only",
                     "-q").stdout
    assert "test_own" not in only and "test_case[worked-uniform-vs-9-12-4-float32]" in only


def test_the_report_names_the_library_not_torch(project, correct_run):
    report = report_of(project, "mylosses.kl:kl_div")
    # mylosses is a folder on sys.path, not an installed distribution: no version to name.
    assert report["implementation"]["version"] == "unknown"
    assert report["implementation"]["description"] == "mylosses.kl.kl_div"


def test_files_are_readable_junit_is_beside_and_no_hypothesis_folder(project, correct_run):
    directory = project / "reports" / "mylosses.kl_kl_div"
    umask = os.umask(0)
    os.umask(umask)
    for name in ("report.json", "report.md", "junit.xml"):
        assert (directory / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    suite = ET.parse(directory / "junit.xml").getroot().find("testsuite")
    names = {case.get("name") for case in suite.iter("testcase")}
    assert {"reduction-batchmean", "roles"} <= names
    assert suite.get("failures") == "0"
    assert not (project / ".hypothesis").exists()


def test_buggy_implementation_fails_with_the_claim_in_junit(project, buggy_run):
    output = buggy_run.stdout + buggy_run.stderr
    assert buggy_run.returncode == 1, output[-3000:]
    report = report_of(project, "mylosses.kl:buggy_kl_div")
    assert report["verdict"] == "fail"
    assert report["run"]["complete"] is False
    assert any(reason.startswith("-k batchmean deselected ") for reason in report["run"]["partial"])
    junit = ET.parse(project / "reports" / "mylosses.kl_buggy_kl_div" / "junit.xml").getroot()
    failed = {case.get("name"): case.find("failure") for case in junit.iter("testcase")
              if case.find("failure") is not None}
    assert "reduction-batchmean" in failed
    assert "'batchmean' computed as 'mean'" in failed["reduction-batchmean"].get("message")


def test_a_printed_replay_line_runs_from_another_directory(project, buggy_run, tmp_path):
    lines = [line for line in buggy_run.stdout.splitlines() if "replay: " in line]
    assert lines, buggy_run.stdout[-3000:]
    command = shlex.split(lines[0].split("replay: ", 1)[1])
    assert command[:3] == ["python", "-m", "pytest"]
    test_id = command[-1]
    # Elsewhere, with the library importable as it would be once installed.
    replay = subprocess.run([sys.executable, *command[1:], "-p", "no:cacheprovider"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(project)})
    assert replay.returncode == 1, replay.stdout[-3000:] + replay.stderr[-2000:]
    assert "1 failed" in replay.stdout
    assert test_id.split("::")[1] in replay.stdout
    assert (tmp_path / "reports" / "mylosses.kl_buggy_kl_div" / "replay" / "report.json").exists()


def test_diff_of_passing_and_failing_reports(project, correct_run, buggy_run):
    passing = project / "reports" / "mylosses.kl_kl_div" / "report.json"
    failing = project / "reports" / "mylosses.kl_buggy_kl_div" / "report.json"
    regression = klconform(project, "diff", str(passing), str(failing))
    assert regression.returncode == 1, regression.stderr
    assert "claim reduction-batchmean (must): pass -> fail" in regression.stdout
    same = klconform(project, "diff", str(passing), str(passing))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "0 regression(s)" in same.stdout
    markdown = klconform(project, "diff", "--format", "markdown", str(passing), str(failing))
    assert markdown.returncode == 1
    assert "| claim | reduction-batchmean | must | pass | fail |" in markdown.stdout


def test_an_unknown_implementation_is_a_usage_error(project):
    completed = pytest_in(project, "--impl=nonexistent")
    assert completed.returncode == 4
    assert "--impl nonexistent: unknown implementation" in completed.stderr
    near = pytest_in(project, "--impl=mylosses.kl:kl_dv")
    assert near.returncode == 4
    assert "did you mean 'mylosses.kl:kl_div'?" in near.stderr
    assert "Traceback" not in near.stdout + near.stderr


def test_a_run_that_selects_no_conformance_test_fails(project):
    completed = pytest_in(project, "--impl=mylosses.kl:kl_div", "-k", "test_own")
    assert completed.returncode == 4
    assert "no conformance test was selected (-k test_own deselected" in completed.stderr


def test_under_xdist_the_workers_collect_the_suites_too(project, tmp_path):
    completed = pytest_in(project, "--impl=mylosses.kl:kl_div", "--kl-only", "-n", "2",
                          "-k", "worked-uniform", f"--report-dir={tmp_path}")
    assert completed.returncode == 0, completed.stdout[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    counts = report["run"]["conformance_tests"]
    assert 0 < counts["run"] == counts["selected"] < counts["available"]
    assert report["run"]["complete"] is False and report["verdict"] == "incomplete"
    nothing = pytest_in(project, "--impl=mylosses.kl:kl_div", "-n", "2", "-k", "test_own")
    assert nothing.returncode == 5
    assert "no conformance test ran; a conformance run that checks nothing cannot pass" \
        in nothing.stdout
