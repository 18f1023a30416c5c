"""The call worker forks the processes that make the calls (engine.call_worker): a call that
crashes or hangs costs the run a fork of the worker, which has imported the library already,
not a new worker importing it again; and a worker whose load started a thread makes the calls
itself, as every worker did before."""

import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from klconform.adapters.base import Call
from klconform.engine import call_errors, isolation
from klconform.engine.worker_protocol import implementation_spec


def _uniform(shape, reduction="sum"):
    classes = shape[-1]
    return Call(np.log(np.full(shape, 1 / classes)), np.full(shape, 1 / classes),
                dtype="float64", reduction=reduction)


def _stat(pid):
    """(state, parent pid, process group) of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _gone(pid, within_s=5.0):
    """Whether `pid` has ended (reaped, or a zombie) within `within_s`: a SIGKILL takes
    effect when the process is next scheduled, which a loaded machine can delay."""
    deadline = time.monotonic() + within_s
    while True:
        stat = _stat(pid)
        if stat is None or stat[0] == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


@pytest.fixture
def fresh_pool(monkeypatch):
    """A worker and a circuit breaker of this test's own: the process's may have loaded, and
    counted the crashes of, other tests' code."""
    monkeypatch.setattr(isolation, "_pool", isolation._Pool())
    yield
    isolation._pool.shutdown()


pytestmark = pytest.mark.skipif(not isolation._CAN_FORK or not Path("/proc/self/task").exists(),
                                reason="the worker forks only where it can see its threads")


def test_a_crash_costs_a_fork_of_the_worker_not_a_new_worker(fresh_pool):
    adapter = isolation.isolated(implementation_spec("tests.hanging:exits_on_2d_sum",
                                                     timeout=60))
    assert adapter.run(_uniform((3,))).shape == ()
    worker = isolation._pool.worker
    first = worker.child.pid
    assert _stat(first)[1] == worker.process.pid   # forked by the worker
    with pytest.raises(call_errors.WorkerCrashed, match=r"crashed the call worker process "
                                                      r"\(exit status 3\)"):
        adapter.run(_uniform((2, 3)))
    assert adapter.run(_uniform((3,))).shape == ()
    assert isolation._pool.worker is worker and worker.process.poll() is None
    assert worker.child.pid != first and _stat(worker.child.pid)[1] == worker.process.pid
    assert _stat(first) is None   # reaped, not left a zombie


def test_a_hung_call_is_killed_with_what_it_started_and_the_worker_stays(fresh_pool):
    adapter = isolation.isolated(implementation_spec("tests.hanging:starts_a_process_and_hangs",
                                                     timeout=1))
    assert adapter.run(_uniform((3,))).shape == ()
    worker = isolation._pool.worker
    hung = worker.child.pid
    marker = Path(tempfile.gettempdir()) / f"klconform-started-by-{hung}"
    try:
        with pytest.raises(call_errors.CallTimeout, match="no result after 1 s"):
            adapter.run(_uniform((1, 2, 3)))
        started = int(marker.read_text())   # the call had started a process of its own
        assert _gone(hung) and _gone(started)
        assert isolation._pool.worker is worker and worker.process.poll() is None
        assert adapter.run(_uniform((3,))).shape == ()
    finally:
        marker.unlink(missing_ok=True)


def test_a_worker_whose_load_started_a_thread_makes_the_calls_itself(fresh_pool):
    adapter = isolation.isolated(implementation_spec("tests.starts_a_thread:kl_div", timeout=60))
    value = adapter.run(_uniform((3,), reduction="batchmean")).value
    assert value == pytest.approx(0.0)
    worker = isolation._pool.worker
    assert worker.child is None
    assert "started 1 thread(s)" in worker.refusal
    with pytest.raises(call_errors.WorkerCrashed, match="exit status 3"):
        adapter.run(_uniform((2, 3)))
    # The worker itself crashed: a new one, which imports the library again.
    assert isolation._pool.worker is not worker
    assert adapter.run(_uniform((3,))).shape == ()


def test_a_worker_that_cannot_fork_is_not_asked_to(fresh_pool, monkeypatch):
    monkeypatch.setattr(isolation, "_CAN_FORK", False)
    adapter = isolation.isolated(implementation_spec("numpy", timeout=60))
    assert adapter.run(_uniform((3,))).shape == ()
    worker = isolation._pool.worker
    assert worker.child is None and worker.spawner is None
    assert len(worker.process.args) == 3 + 3   # python -m MODULE, and no spawner socket


def test_what_the_library_printed_on_import_is_printed_once(fresh_pool, capfd, monkeypatch):
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)   # the worker's print is buffered
    adapter = isolation.isolated(implementation_spec("tests.prints_on_import:kl_div", timeout=60))
    for _ in range(2):   # two crashes: two more forks of the worker that imported it
        assert adapter.run(_uniform((3,))).shape == ()
        with pytest.raises(call_errors.WorkerCrashed):
            adapter.run(_uniform((2, 3)))
    assert adapter.run(_uniform((3,))).shape == ()
    isolation._pool.shutdown()
    printed = capfd.readouterr()
    assert (printed.out + printed.err).count("prints_on_import: imported") == 1
