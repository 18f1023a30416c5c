"""Keeping one broken implementation call from taking the run down with it.

Calls run on a worker thread and the caller waits at most the per-call timeout. A call
that hangs is abandoned with its thread (a thread cannot be killed): the case fails with a
clear message, a fresh worker takes the next call, and the run goes on. One long-lived
worker serves all calls, so the guard costs a hand-off, not a thread start, per call.
Hard crashes (segfault, os._exit) kill the process; `klconform run` survives them by
running pytest in a child process (klconform.harness.child_runner).
"""

import queue
import threading

from klconform.constants import DEFAULT_TIMEOUT_S


class CallTimeout(Exception):
    """The implementation did not return within the per-call timeout."""


class _Worker:
    def __init__(self):
        self.inbox = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="klconform-call", daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            function, args, box, done = self.inbox.get()
            try:
                box["value"] = function(*args)
            except BaseException as error:  # re-raised in the caller's thread
                box["error"] = error
            done.set()


_worker = None
_worker_lock = threading.Lock()


def _current_worker():
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = _Worker()
        return _worker


def _abandon(worker):
    global _worker
    with _worker_lock:
        if _worker is worker:
            _worker = None


def call_with_timeout(function, *args, timeout=DEFAULT_TIMEOUT_S):
    if not timeout or timeout <= 0:
        return function(*args)
    worker = _current_worker()
    box, done = {}, threading.Event()
    worker.inbox.put((function, args, box, done))
    if not done.wait(timeout):
        _abandon(worker)
        raise CallTimeout(f"no result after {timeout:g} s (per-call timeout; --kl-timeout)")
    if "error" in box:
        raise box["error"]
    return box["value"]
