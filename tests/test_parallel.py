"""pytest -n 2 (xdist) gives the serial verdict and one merged report."""

import pytest

from tests.suite_runner import suite_path


def _run(pytester, report_dir, *extra):
    return pytester.runpytest_subprocess(
        suite_path("test_cases.py"), suite_path("test_gradients.py"), "--impl=torch",
        f"--report-dir={report_dir}", "-p", "no:cacheprovider", *extra)


@pytest.mark.slow
def test_parallel_run_merges_into_the_serial_report(pytester):
    import json

    serial = _run(pytester, pytester.path / "serial", "-k", "roles or batchmean or probe")
    parallel = _run(pytester, pytester.path / "parallel", "-k", "roles or batchmean or probe",
                    "-n", "2")
    assert serial.ret == parallel.ret == 0
    reports = [json.loads((pytester.path / name / "report.json").read_text())
               for name in ("serial", "parallel")]
    assert reports[0]["verdict"] == reports[1]["verdict"] == "incomplete"  # -k: partial
    assert reports[0]["summary"] == reports[1]["summary"]
    assert [(c["id"], c["status"], c["counts"]) for c in reports[0]["claims"]] == \
           [(c["id"], c["status"], c["counts"]) for c in reports[1]["claims"]]
    assert reports[1]["implementation"]["version"] == reports[0]["implementation"]["version"]
    assert not list((pytester.path / "parallel").glob("journal*"))
