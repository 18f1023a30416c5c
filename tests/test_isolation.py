"""A broken implementation fails its cases with a clear message; the run completes and the
report is written. Hard crashes are survived by `klconform run`."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.suite_runner import implementation_module, run_suite

BROKEN = """
    import time
    import torch
    import torch.nn.functional as F

    def raises(input, target, reduction="mean", log_target=False):
        raise ZeroDivisionError("kernel exploded <b>|boom|</b>")

    def wrong_type(input, target, reduction="mean", log_target=False):
        return F.kl_div(input, target, reduction=reduction, log_target=log_target).tolist()

    def wrong_shape(input, target, reduction="mean", log_target=False):
        return F.kl_div(input, target, reduction=reduction, log_target=log_target).reshape(-1, 1)

    def wrong_dtype(input, target, reduction="mean", log_target=False):
        return F.kl_div(input, target, reduction=reduction, log_target=log_target).double()

    def hangs(input, target, reduction="mean", log_target=False):
        if reduction == "sum":
            time.sleep(30)
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)
"""


@pytest.mark.parametrize(("function", "selection", "message"), [
    ("raises", "roles-kl-p-given-q", "the implementation raised ZeroDivisionError: kernel "
                                     "exploded <b>|boom|</b>"),
    ("wrong_type", "roles-kl-p-given-q", "returned float, expected a torch.Tensor"),
    ("wrong_shape", "none-pointwise-2d", "shape (12, 1) != expected (3, 4)"),
    ("wrong_dtype", "roles-kl-p-given-q-float32", "result dtype float64 != input dtype float32"),
])
def test_broken_call_is_a_clear_failure_and_the_report_is_written(pytester, function,
                                                                   selection, message):
    module = implementation_module(pytester, "broken_kl", BROKEN)
    run = run_suite(pytester, f"{module}:{function}", "-k", selection)
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    assert message in run.output
    report = run.report
    assert report["verdict"] == "fail"
    assert any(message in " ".join(failure["checks"]) for failure in report["failures"])
    if function == "raises":
        markdown = (run.report_dir / "report.md").read_text()
        assert "<b>" not in markdown and "&lt;b&gt;" in markdown
        assert "\\|boom\\|" in markdown


def test_hanging_call_times_out_and_the_run_completes(pytester):
    module = implementation_module(pytester, "broken_kl", BROKEN)
    run = run_suite(pytester, f"{module}:hangs", "-k", "roles-kl-p-given-q-float64 or "
                    "batchmean-2d-float64", "--kl-timeout=0.5")
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    run.result.assert_outcomes(failed=2)
    # roles-... times out in its own call (errored); batchmean-2d in its relation's 'sum' call.
    assert "CallTimeout: no result after 0.5 s" in run.output
    assert run.report["summary"]["errored"] == 1
    assert run.report["summary"]["failed"] == 1


CRASHING = """
    import ctypes
    import os
    import torch.nn.functional as F

    from klconform.adapters.torch_adapter import functional_adapter

    def exits(input, target, reduction="mean", log_target=False):
        if reduction == "sum" and input.numel() == 12 and input.dtype.itemsize == 8:
            os._exit(7)
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)

    def segfaults(input, target, reduction="mean", log_target=False):
        if reduction == "none" and input.numel() == 4 and input.dtype.itemsize == 4:
            ctypes.string_at(0)
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)

    class CrashesKlconform(type(functional_adapter())):
        # Crashes the pytest process itself (not the call worker): only `klconform run`'s
        # child runner can survive this one.
        def __init__(self):
            base = functional_adapter()
            super().__init__(base.function, "crashes-klconform", base.capabilities)

        def snippet(self, call):
            if call.reduction == "sum" and call.input.size == 12 and call.dtype == "float64":
                os._exit(7)
            return super().snippet(call)

    crashes_klconform = CrashesKlconform
"""


def run_cli(tmp_path, impl, *selection):
    (tmp_path / "crashing_kl.py").write_text(textwrap.dedent(CRASHING))
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PYTHONFAULTHANDLER="")
    return subprocess.run(
        [sys.executable, "-m", "klconform.cli.main", "run", f"--impl={impl}", "--", "-k",
         "test_case and (roles or none-pointwise or none-terms)", "-p", "no:faulthandler",
         *selection], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize(("function", "how"), [("exits", "exit status 7"),
                                               ("segfaults", "SIGSEGV")])
def test_call_that_crashes_its_process_errors_the_case_and_the_run_goes_on(tmp_path, function,
                                                                            how):
    completed = run_cli(tmp_path, f"crashing_kl:{function}")
    assert completed.returncode == 1, completed.stdout[-2000:] + completed.stderr[-2000:]
    report = json.loads((tmp_path / "reports" / f"crashing_kl_{function}" /
                         "report.json").read_text())
    assert report["verdict"] == "fail"
    assert not report["crashes"]  # the pytest process itself never died
    crashed = [f for f in report["failures"]
               if f"crashed the call worker process ({how})" in " ".join(f["checks"])]
    assert len(crashed) == 1 and crashed[0]["claims"]
    assert report["summary"]["passed"] >= 8  # the calls after the crash ran in a fresh worker


def test_hard_crash_of_the_test_process_leaves_a_report_that_says_so(tmp_path):
    completed = run_cli(tmp_path, "crashing_kl:crashes_klconform")
    assert completed.returncode == 1, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "crashed the test process (exit status 7)" in completed.stderr
    report_dir = tmp_path / "reports" / "crashing_kl_crashes_klconform"
    report = json.loads((report_dir / "report.json").read_text())
    assert report["verdict"] == "fail"
    assert report["crashes"] and report["crashes"][0]["nodeid"]
    crashed = [f for f in report["failures"] if "crashed the test process" in f["summary"]]
    assert crashed and crashed[0]["claims"]  # the crashed test is attributed to its claims
    assert report["summary"]["passed"] >= 8  # the rest of the run went on after the crash
    assert not (report_dir / "journal.jsonl").exists()


def test_a_collect_only_run_starts_no_call_worker(pytester, monkeypatch):
    from klconform.engine import isolation

    pool = isolation._Pool()
    monkeypatch.setattr(isolation, "_pool", pool)
    try:
        result = pytester.runpytest_inprocess("--impl=numpy", "--kl-only", "--collect-only",
                                              "-q", "-p", "no:cacheprovider")
        assert "test_case[worked-uniform-vs-9-12-4-float32]" in result.stdout.str()
        # Nothing is called: a worker importing the implementation would be time thrown away.
        assert pool.worker is None
    finally:
        pool.shutdown(now=True)


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_a_library_installed_but_broken_is_one_usage_error(tmp_path, workers):
    # torch found installed (its version.py says a CPU build) but failing to import: the
    # pytest process only describes the built-in record, the call worker's import is the
    # first, and its failure ends the run at once, as the import in this process used to.
    fake = tmp_path / "site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("libtorch_cpu.so: cannot open '
                                      'shared object file")\n')
    (fake / "version.py").write_text("cuda = None\nhip = None\n")
    completed = subprocess.run(
        [sys.executable, "-m", "klconform.cli.main", "run", "--impl", "torch", "--", *workers],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    output = completed.stdout + completed.stderr
    assert completed.returncode == 4, output[-3000:]
    assert ("ERROR: --impl torch: built-in adapter needs a library that does not import "
            "(ImportError: libtorch_cpu.so: cannot open shared object file); "
            'pip install "klconform[torch]"') in output
    assert "INTERNALERROR" not in output and "Traceback" not in output
    assert " passed" not in output and not (tmp_path / "reports").exists()


@pytest.mark.parametrize("not_completed", ["CallTimeout", "CallNotRun", "WorkerCrashed",
                                           "WorkerLoadError"])
def test_a_case_expecting_an_error_is_not_passed_by_a_call_that_did_not_complete(
        not_completed):
    # A hang, a call not made, a crashed process or an implementation that never loaded is
    # not the error an invalid reduction asks for: the case errors, it does not pass.
    from klconform.adapters import load_adapter
    from klconform.engine import call_errors
    from klconform.engine.evaluate import evaluate
    from klconform.spec.cases import load_cases
    from klconform.statuses import Status

    error = getattr(call_errors, not_completed)("no result")

    class DidNotComplete(type(load_adapter("numpy"))):
        def run(self, call):
            raise error

    case = next(case for case in load_cases() if case.kind == "raises")
    outcome = evaluate(case, case.dtypes[0], DidNotComplete())
    assert outcome.status == Status.ERRORED, (outcome.status, outcome.checks)
    assert set(outcome.claim_results.values()) == {Status.ERRORED}
    # The same case against numpy, which raises an error of its own there: passed.
    assert evaluate(case, case.dtypes[0], load_adapter("numpy")).status == Status.PASSED


def test_the_load_started_before_the_workers_are_chosen_is_taken_up_or_ended(pytester,
                                                                               monkeypatch):
    """`--kl-workers auto` starts the call worker's load before choosing (serial is the usual
    choice): pytest_configure's own request finds it under way, and a choice of workers
    ends it (each worker loads its own)."""
    import time

    from klconform.engine import isolation
    from klconform.engine.worker_protocol import implementation_spec
    from klconform.harness import plugin, workers

    pool = isolation._Pool()
    monkeypatch.setattr(isolation, "_pool", pool)
    try:
        config = pytester.parseconfig("--impl=numpy", "--kl-only", "--kl-workers=auto",
                                      "-p", "no:cacheprovider")
        monkeypatch.setattr(workers, "choose_workers", lambda *args, **kwargs: (0, "serial"))
        plugin.pytest_cmdline_main(config)
        worker = pool.worker
        assert worker is not None and worker.process.poll() is None
        started = time.monotonic()
        isolation.prepare(implementation_spec("numpy"))
        assert time.monotonic() - started < 0.5 and pool.worker is worker

        monkeypatch.setattr(workers, "choose_workers", lambda *args, **kwargs: (2, "workers"))
        pool.shutdown(now=True)
        started = []
        prepare = isolation.prepare
        monkeypatch.setattr(isolation, "prepare",
                            lambda spec: (prepare(spec), started.append(pool.worker)))
        config = pytester.parseconfig("--impl=numpy", "--kl-only", "--kl-workers=auto",
                                      "-p", "no:cacheprovider")
        plugin.pytest_cmdline_main(config)
        assert config.option.numprocesses == 2 and pool.worker is None
        assert len(started) == 1 and started[0].process.poll() is not None
    finally:
        pool.shutdown(now=True)
