"""Cores and OpenMP threads: what a call worker and the oracle are given."""

import pytest

from klconform import machine
from klconform.engine import isolation


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(machine, "usable_cores", lambda: 4)
    monkeypatch.delenv(machine.THREADS_VARIABLE, raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)


def test_each_process_gets_its_share_and_at_least_one(four_cores):
    assert [machine.threads_per_process(n) for n in (0, 1, 2, 3, 4, 8)] == [4, 4, 2, 1, 1, 1]


@pytest.mark.parametrize("value, threads", [("3", 3), ("2,1", 2), (" 6 ", 6), ("0", 4),
                                            ("many", 4), ("", 4)])
def test_openmp_threads_read_like_openmp(four_cores, monkeypatch, value, threads):
    monkeypatch.setenv(machine.THREADS_VARIABLE, value)
    assert machine.openmp_threads() == threads


def test_a_call_worker_under_xdist_gets_its_share_of_the_cores(four_cores, monkeypatch):
    monkeypatch.setattr(isolation, "_pool", isolation._Pool())
    monkeypatch.delenv(machine.THREADS_VARIABLE, raising=False)
    # serial: left as it is
    assert machine.THREADS_VARIABLE not in isolation._worker_environment()
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    assert isolation._worker_environment()[machine.THREADS_VARIABLE] == "2"
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "8")
    assert isolation._worker_environment()[machine.THREADS_VARIABLE] == "1"
    # Each run's calls made ahead beside it: a second busy process per run.
    isolation.expect_calls_ahead()
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    assert isolation._worker_environment()[machine.THREADS_VARIABLE] == "2"
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    assert isolation._worker_environment()[machine.THREADS_VARIABLE] == "1"
    isolation.stop_calls_ahead()   # the end of the session: a later one decides again
    assert isolation._worker_environment()[machine.THREADS_VARIABLE] == "2"
    monkeypatch.setenv(machine.THREADS_VARIABLE, "3")  # the user's choice stands
    assert isolation._worker_environment()[machine.THREADS_VARIABLE] == "3"


def test_the_call_worker_starts_with_that_environment(four_cores, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    started = {}
    real = isolation.subprocess.Popen

    def recording(*args, **kwargs):
        started.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(isolation.subprocess, "Popen", recording)
    worker = isolation.CallWorker()
    try:
        assert started["env"][machine.THREADS_VARIABLE] == "1"
    finally:
        worker.process.kill()
        worker.process.wait()
