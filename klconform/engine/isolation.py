"""Keeping one broken implementation call from taking the run down with it.

Calls run in a long-lived child process (klconform.engine.call_worker, one per pytest
process, so one per xdist worker) that re-creates the adapter from its --impl string. The
caller waits at most the per-call timeout; a call that hangs gets its process killed (a
thread could only be abandoned, still running and still burning CPU), and a fresh worker
is started at once so its start-up overlaps the rest of the run. A call that crashes the
worker (segfault, os._exit) errors its case and the run goes on.

A circuit breaker keeps a hanging or crashing implementation from costing one timeout (or
one restarted worker, which imports the library again) per case: after HANG_LIMIT timeouts
or crashes in a row on one kind of input (the input's number of dimensions, and that with
the dtype), calls of that kind are not made any more; they raise CallNotRun, which names
the calls that hung or crashed. And a function that has never returned a value in this
process and raised the same error on REPEAT_LIMIT calls in a row of one dtype, of several
kinds of call, is broken for every such call (it returns the wrong array type, it lacks a
required keyword): later calls raise that error again without being made (`replayed`
says so).

Adapters that were not made by load_adapter (no --impl string to re-create them from) run
on a thread in this process, as before: they can time out but cannot be killed.
"""

import atexit
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from klconform.constants import DEFAULT_TIMEOUT_S
from klconform.engine import wire

# Loading the adapter in the worker (importing torch, say) is not the call under test.
LOAD_TIMEOUT_S = 300.0
HANG_LIMIT = 2
# A correct function raises on some inputs too (an invalid reduction, a probability row its
# validation rejects), but it returns a value on some call among its first few: only one
# that never has, with the same error on this many calls in a row of one dtype, of at least
# REPEAT_KINDS different shapes or reductions, is taken to raise it on every such call.
REPEAT_LIMIT = 8
REPEAT_KINDS = 3
ISOLATED_METHODS = ("run", "run_gradients")


class CallTimeout(Exception):
    """The implementation did not return within the per-call timeout."""


class CallNotRun(CallTimeout):
    """The circuit breaker is open for this kind of input: the call was not made."""


class WorkerCrashed(Exception):
    """The implementation killed the process running the call (segfault, exit, ...)."""


class WorkerLoadError(Exception):
    """The call worker could not re-create the adapter from its --impl string."""


def _rebuilt_error(type_name, text):
    # An exception class that does not pickle still reaches the case under its own name.
    return type(type_name, (Exception,), {})(text)


def _describe_exit(returncode):
    if returncode is not None and returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


class CallWorker:
    """One child process and the two pipes to it."""

    def __init__(self):
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "klconform.engine.call_worker", str(child_reads),
             str(child_writes), str(os.getpid())],
            pass_fds=(child_reads, child_writes), stdin=subprocess.DEVNULL,
            stdout=sys.__stderr__.fileno() if sys.__stderr__ else subprocess.DEVNULL,
            # Its own process group: a kill reaches whatever the implementation started too.
            start_new_session=True, close_fds=True)
        os.close(child_reads)
        os.close(child_writes)
        self.outbox = Connection(parent_writes, readable=False)
        self.inbox = Connection(parent_reads, writable=False)
        self.ready = False
        self.loaded = set()
        self.sent_path = None

    def _receive(self, timeout):
        """The next message, or None after `timeout` seconds (None: wait forever)."""
        try:
            if timeout is not None and not self.inbox.poll(timeout):
                return None
            return wire.decode(self.inbox.recv_bytes())
        except (EOFError, OSError):
            raise WorkerCrashed(self._crash_text()) from None

    def _crash_text(self):
        try:
            returncode = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            returncode = None
        return f"the implementation crashed the call worker process ({_describe_exit(returncode)})"

    def _send(self, *message):
        path = list(sys.path)
        # Modules named by --impl are found on the caller's sys.path, which tests and
        # conftest files change after the worker started.
        carried = path if path != self.sent_path else None
        self.sent_path = path
        try:
            self.outbox.send_bytes(wire.encode((*message, carried), os.getpid()))
        except (BrokenPipeError, OSError):
            raise WorkerCrashed(self._crash_text()) from None

    def _wait_ready(self):
        if not self.ready:
            if self._receive(LOAD_TIMEOUT_S) is None:
                raise WorkerLoadError(f"the call worker did not start in {LOAD_TIMEOUT_S:g} s")
            self.ready = True

    def load(self, spec):
        if spec in self.loaded:
            return
        self._wait_ready()
        self._send("load", spec)
        reply = self._receive(LOAD_TIMEOUT_S)
        if reply is None:
            raise WorkerLoadError(f"loading --impl {spec} in the call worker took over "
                                  f"{LOAD_TIMEOUT_S:g} s")
        if reply[0] != "ok":
            error = reply[1] if reply[0] == "raised" else _rebuilt_error(*reply[1:])
            raise WorkerLoadError(f"the call worker could not load --impl {spec}: "
                                  f"{type(error).__name__}: {error}")
        self.loaded.add(spec)

    def call(self, spec, method, call, timeout):
        """(True, value) or (False, error raised by the call); None when it timed out."""
        self.load(spec)
        self._send("call", spec, method, call)
        reply = self._receive(timeout if timeout and timeout > 0 else None)
        if reply is None:
            return None
        if reply[0] == "ok":
            return True, reply[1]
        return False, reply[1] if reply[0] == "raised" else _rebuilt_error(*reply[1:])

    def kill(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for connection in (self.inbox, self.outbox):
            try:
                connection.close()
            except OSError:
                pass
        wire.remove_leftovers(os.getpid())

    def close(self):
        """Ask nicely (end of input), then make sure."""
        try:
            self.outbox.close()
            self.process.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


@dataclass
class _Repeated:
    """One error a function that never returned has raised in a row, in one dtype."""

    type_name: str
    text: str
    count: int = 1
    kinds: set = field(default_factory=set)   # (shape, reduction) of the calls


class CircuitBreaker:
    """Counts timeouts and crashes in a row per kind of input (a kind that hangs or crashes
    HANG_LIMIT times is off), and the same error in a row from a function that never
    returned (REPEAT_LIMIT of them, and every later call raises it again)."""

    def __init__(self, limit=HANG_LIMIT, repeat_limit=REPEAT_LIMIT):
        self.limit = limit
        self.repeat_limit = repeat_limit
        self.streaks = {}      # kind -> timeouts or crashes since a call of that kind returned
        self.hung = {}         # kind -> descriptions of the calls that timed out or crashed
        self.returned_once = set()  # specs that have returned a value
        self.repeats = {}      # (spec, dtype) -> _Repeated

    @staticmethod
    def kinds(spec, call):
        ndim = getattr(getattr(call, "input", None), "ndim", None)
        dtype = getattr(call, "dtype", None)
        return ((spec, ndim), (spec, ndim, dtype))

    @staticmethod
    def describe(kind):
        ndim = kind[1]
        text = f"{ndim}-d inputs" if ndim is not None else "these inputs"
        return text + (f" in {kind[2]}" if len(kind) > 2 else "")

    def refuse(self, spec, call):
        """The exception to raise instead of making the call, or None: CallNotRun for a kind
        that hangs or crashes, the repeated error of a function broken for every call."""
        for kind in self.kinds(spec, call):
            if self.streaks.get(kind, 0) >= self.limit:
                return CallNotRun(
                    f"not run: the implementation hung or crashed on {self.limit} calls in a "
                    f"row with {self.describe(kind)} "
                    f"({'; '.join(self.hung[kind][-self.limit:])}), so klconform stopped "
                    f"calling it with such inputs (--kl-timeout)")
        repeated = self.repeats.get((spec, getattr(call, "dtype", None)))
        if repeated and repeated.count >= self.repeat_limit \
                and len(repeated.kinds) >= REPEAT_KINDS:
            # The same type name and text: the report groups it with the calls made.
            error = _rebuilt_error(repeated.type_name, repeated.text)
            error.replayed = (f"not called: the implementation raised this on each of its "
                              f"first {repeated.count} calls and never returned a value")
            return error
        return None

    def returned(self, spec, call):
        self.returned_once.add(spec)
        self.repeats = {key: value for key, value in self.repeats.items() if key[0] != spec}
        for kind in self.kinds(spec, call):
            self.streaks.pop(kind, None)

    def raised(self, spec, call, error):
        """Counted per dtype: a function broken everywhere often fails differently in one
        dtype (numpy has no bfloat16), and that must not break the others' streaks."""
        if spec in self.returned_once:
            return
        name, text = type(error).__name__, str(error)
        key = (spec, getattr(call, "dtype", None))
        repeated = self.repeats.get(key)
        if repeated and (repeated.type_name, repeated.text) == (name, text):
            repeated.count += 1
        else:
            repeated = self.repeats[key] = _Repeated(name, text)
        repeated.kinds.add((getattr(getattr(call, "input", None), "shape", None),
                            getattr(call, "reduction", None)))

    def failed(self, spec, call, label):
        """A call of this kind timed out or crashed the worker."""
        for kind in self.kinds(spec, call):
            self.streaks[kind] = self.streaks.get(kind, 0) + 1
            self.hung.setdefault(kind, []).append(label)


def _label(call):
    shape = "x".join(str(n) for n in getattr(call.input, "shape", ())) or "0-d"
    return f"{shape} {call.dtype} reduction={call.reduction!r}"


class _Pool:
    """This process's call worker, replaced after every kill; and the breaker."""

    def __init__(self):
        self.worker = None
        self.breaker = CircuitBreaker()
        self.lock = threading.Lock()

    def current(self):
        if self.worker is None:
            self.worker = CallWorker()
        return self.worker

    def replace(self):
        if self.worker is not None:
            self.worker.kill()
        # Started now, so its imports overlap the rest of the run instead of the next call.
        self.worker = CallWorker()

    def shutdown(self, now=False):
        if self.worker is not None:
            self.worker.kill() if now else self.worker.close()
            self.worker = None


_pool = _Pool()
atexit.register(_pool.shutdown)


def shutdown(now=False):
    """End the call worker (`now`: kill it, before a fast exit that skips atexit handlers)."""
    _pool.shutdown(now)


def _source_of(adapter):
    """The --impl string that re-creates `adapter` in the worker, or None."""
    return getattr(adapter, "source", None)


def prepare(source):
    """Start the worker and have it load the adapter for `source` (an adapter's source) in
    the background: its imports then overlap this process's own."""
    if source is None:
        return
    with _pool.lock:
        worker = _pool.current()
        threading.Thread(target=_preload, args=(worker, source),
                         name="klconform-preload", daemon=True).start()


def _preload(worker, spec):
    with _pool.lock:
        try:
            worker.load(spec)
        except Exception:  # the first real call reports it, as that case's error
            pass


def run_isolated(adapter, method, call, timeout=DEFAULT_TIMEOUT_S):
    """adapter.<method>(call) in the call worker, under the per-call timeout and the breaker."""
    spec = _source_of(adapter)
    with _pool.lock:
        refusal = _pool.breaker.refuse(spec, call)
        if refusal is not None:
            raise refusal
        worker = _pool.current()
        try:
            result = worker.call(spec, method, call, timeout)
        except WorkerCrashed:
            _pool.replace()
            _pool.breaker.failed(spec, call, f"{_label(call)} crashed")
            raise
        if result is None:
            _pool.replace()
            _pool.breaker.failed(spec, call, f"{_label(call)} hung")
            raise CallTimeout(f"no result after {timeout:g} s (per-call timeout; --kl-timeout); "
                              f"the call's process was killed")
        returned, value = result
        if returned:
            _pool.breaker.returned(spec, call)
        else:
            _pool.breaker.raised(spec, call, value)
    if not returned:
        raise value
    return value


def call_with_timeout(function, *args, timeout=DEFAULT_TIMEOUT_S):
    """function(*args) under the per-call timeout.

    Adapter.run / Adapter.run_gradients of an adapter made by load_adapter go to the call
    worker; anything else runs on this process's call thread.
    """
    adapter = getattr(function, "__self__", None)
    method = getattr(function, "__name__", None)
    if _source_of(adapter) is not None and method in ISOLATED_METHODS and len(args) == 1:
        return run_isolated(adapter, method, args[0], timeout)
    return _call_on_thread(function, args, timeout)


# --- in-process fallback ---------------------------------------------------------------


class _Thread:
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


_thread = None
_thread_lock = threading.Lock()


def _call_on_thread(function, args, timeout):
    global _thread
    if not timeout or timeout <= 0:
        return function(*args)
    with _thread_lock:
        if _thread is None:
            _thread = _Thread()
        worker = _thread
    box, done = {}, threading.Event()
    worker.inbox.put((function, args, box, done))
    if not done.wait(timeout):
        with _thread_lock:
            if _thread is worker:
                _thread = None  # abandoned: a thread cannot be killed
        raise CallTimeout(f"no result after {timeout:g} s (per-call timeout; --kl-timeout)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def measure_overhead(adapter, call, repeats=200):
    """Seconds per call through the worker minus in-process, for benchmarks/run.py."""
    run_isolated(adapter, "run", call)
    start = time.perf_counter()
    for _ in range(repeats):
        run_isolated(adapter, "run", call)
    isolated = (time.perf_counter() - start) / repeats
    adapter.run(call)
    start = time.perf_counter()
    for _ in range(repeats):
        adapter.run(call)
    direct = (time.perf_counter() - start) / repeats
    return isolated, direct
