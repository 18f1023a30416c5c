"""The klconform command, run as a user would: from outside the repository."""

import json
import subprocess
import sys
from pathlib import Path


def _klconform(*args, cwd):
    return subprocess.run([sys.executable, "-m", "klconform.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_run_from_outside_the_repository(tmp_path):
    # A hostile pytest configuration in the working directory must not leak into the run.
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    completed = _klconform("run", "--impl", "numpy", "--", "-k", "worked", cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    report = json.loads((tmp_path / "reports" / "numpy" / "report.json").read_text())
    assert report["verdict"] == "incomplete" and "-k worked" in report["verdict_reason"]
    assert report["summary"]["failed"] == report["summary"]["errored"] == 0
    assert report["summary"]["passed"] >= 28
    assert (tmp_path / "reports" / "numpy" / "report.md").exists()


def test_run_with_unknown_impl_is_one_line(tmp_path):
    completed = _klconform("run", "--impl", "no.such.module:kl", cwd=tmp_path)
    assert completed.returncode == 4
    assert "cannot import module 'no.such.module'" in completed.stdout + completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr


def test_check_spec_passes_on_the_bundled_spec(tmp_path):
    completed = _klconform("check-spec", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "published numbers reproduced" in completed.stdout


def test_run_from_a_folder_holding_the_installation_collects_only_the_suites():
    # From the checkout's root (an ancestor of the bundled suites, as a --target install's
    # parent is), `klconform run` must not collect the other tests found there.
    root = Path(__file__).resolve().parent.parent
    completed = _klconform("run", "--impl", "numpy", "--report-dir",
                           str(root / "reports" / "collect-only-check"), "--",
                           "--collect-only", "-q", cwd=root)
    collected = [line for line in completed.stdout.splitlines() if "::" in line or ": " in line]
    assert collected and all(line.startswith("test_") for line in collected), \
        completed.stdout[-2000:]


def test_the_run_says_how_it_split_and_splits_so(tmp_path):
    """Chosen in the run's pytest process (harness.workers) and acted on by pytest-xdist."""
    import pytest

    from klconform.machine import usable_cores

    if usable_cores() < 2:
        pytest.skip("one core: every run is serial")
    one_test = ["-k", "test_property and sum-equals-none-sum and float64"]
    split = _klconform("run", "--impl", "numpy", "--max-examples", "200", "--", *one_test,
                       cwd=tmp_path)
    serial = _klconform("run", "--impl", "numpy", "--", *one_test, cwd=tmp_path)
    given = _klconform("run", "--impl", "numpy", "--", "-n", "0", *one_test, cwd=tmp_path)
    for completed in (split, serial, given):
        assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "klconform run: 2 workers (pytest-xdist -n 2): 200 examples" in split.stderr
    assert "bringing up nodes" in split.stdout
    assert "klconform run: serial: at 25 examples per property" in serial.stderr
    assert "klconform run: workers as given after --" in given.stderr
    assert "bringing up nodes" not in serial.stdout + given.stdout
    assert "klconform run:" not in given.stderr.replace(
        "klconform run: workers as given after --", "")


def _option(profile="default", max_examples=None, convention=None, calls_ahead="auto",
            device="cpu"):
    from argparse import Namespace

    return Namespace(kl_profile=profile, kl_seed=None, kl_max_examples=max_examples,
                     kl_convention=convention, kl_calls_ahead=calls_ahead, kl_device=device)


def test_run_splits_over_workers_only_where_measured_faster(monkeypatch):
    from klconform.harness import workers as chosen

    def choice(profile="default", max_examples=None, cores=2, impl="torch"):
        monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)),
                            raising=False)
        return chosen.choose_workers(_option(profile, max_examples), impl)

    workers, why = choice()
    assert workers == 0 and why.startswith("serial: at 25 examples per property")
    workers, why = choice("thorough")
    assert workers == 2 and "400 examples per property on 2 cores" in why
    assert choice("thorough", cores=8)[0] == chosen.MAX_WORKERS
    assert choice(max_examples=200)[0] == 2
    assert choice("thorough", cores=1) == (0, "serial: 400 examples per property, but one core")
    choice("thorough")
    workers, why = chosen.choose_workers(_option("thorough"), "torch", xdist_loaded=False)
    assert workers == 0 and why.endswith("but pytest-xdist is not loaded (-p xdist)")
    monkeypatch.setattr(chosen, "find_spec", lambda name: None)
    workers, why = chosen.choose_workers(_option("thorough"), "torch")
    assert workers == 0 and why.endswith("but pytest-xdist is not installed")


def test_run_splits_a_record_that_compiles_each_shape_over_two_workers(monkeypatch, tmp_path):
    """Over two workers where its calls are not made ahead; where they are, the run and the
    ahead child split them in one serial run."""
    from klconform.harness import workers as chosen

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)

    def choice(impl, convention=None, calls_ahead="off", device="cpu"):
        return chosen.choose_workers(_option(convention=convention, calls_ahead=calls_ahead,
                                             device=device), impl)

    for impl in ("jax", "optax", "keras-jax"):
        workers, why = choice(impl)
        assert workers == 2 and f"{impl} compiles a program per shape" in why, why
        assert choice(impl, calls_ahead="auto", device="cuda")[0] == 2
        workers, why = choice(impl, calls_ahead="auto")
        assert workers == 0 and why.startswith(f"serial: {impl} compiles a program per "
                                               f"shape, and two children"), why
    assert choice("torch")[0] == 0
    assert choice("mylosses:kl")[0] == 0   # a plain callable compiles nothing
    record = tmp_path / "mine.yaml"
    record.write_text("not: [a record")
    assert choice("mylosses:kl", str(record))[0] == 0   # the run itself reports the record
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path))   # the user's own cache
    assert choice("jax")[0] == 0
