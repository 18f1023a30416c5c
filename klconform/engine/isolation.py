"""Keeping one broken implementation call from taking the run down with it.

An IsolatedAdapter is the Adapter the engine is given for an --impl: its calls run in a
long-lived child process (klconform.engine.call_worker, one per pytest process, so one per
xdist worker) that re-creates the adapter from an ImplementationSpec. The
caller waits at most the per-call timeout; a call that hangs gets its process killed (a
thread could only be abandoned, still running and still burning CPU). A call that crashes
the worker (segfault, os._exit) errors its case and the run goes on. Where the worker can
fork (engine.call_worker), the process making the calls is a fork of it, which alone is
killed, and the next call gets a new fork; else a fresh worker is started at once so that
its imports overlap the rest of the run.

A circuit breaker (engine.breaker) keeps a hanging or crashing implementation from costing
one timeout (or one restarted worker) per case: after HANG_LIMIT timeouts or crashes in a
row on one kind of input (the input's number of dimensions, that with the dtype, or the
dtype alone), calls of that kind are not made any more; they raise CallNotRun, which names
the calls that hung or crashed. And a function that has never returned a value in this
process and raised the same error on REPEAT_LIMIT calls in a row of one dtype, of several
kinds of call, is broken for every such call (it returns the wrong array type, it lacks a
required keyword): later calls raise that error again without being made (`replayed` says
so). How a call ends without returning or raising is engine.call_errors.

Any other Adapter the engine is given is called in this process, without a time limit.
"""

import atexit
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

from klconform.adapters.base import Adapter
from klconform.constants import CALL_CRASHED, CALL_HUNG
from klconform.engine import calls_ahead, children, compile_ahead, prepared, wire
from klconform.engine import worker_protocol as protocol
from klconform.engine.breaker import CircuitBreaker
from klconform.engine.call_errors import (
    CallTimeout,
    WorkerCrashed,
    WorkerLoadError,
    rebuilt_error,
)
from klconform.engine.worker_protocol import ImplementationSpec, ProtocolError
from klconform.errors import KLConformError
from klconform.machine import THREADS_VARIABLE, pytest_processes, threads_per_process

# Loading the adapter in the worker (importing torch, say) is not the call under test.
LOAD_TIMEOUT_S = 300.0
# A fork, or reaping a child that ended (killed if it takes longer than 5 s).
SPAWN_TIMEOUT_S = 60.0


# A template worker forking the children that serve the calls (engine.call_worker).
_CAN_FORK = hasattr(os, "fork") and hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")


def _error_of(reply):
    """The exception a `raised` reply carries, rebuilt by name if it did not pickle."""
    if "error" in reply:
        return reply["error"]
    return rebuilt_error(reply["error_type"], reply["error_text"])


def _describe_exit(returncode):
    if returncode is not None and returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


def _crash_message(returncode):
    return f"the implementation crashed the call worker process ({_describe_exit(returncode)})"


def _worker_environment():
    """This process's environment, with where programs compiled ahead are found
    (engine.compile_ahead) and, beside the other busy processes of the run (pytest-xdist's N
    workers, each one's calls made ahead), a share of the cores for OpenMP (unless the user
    chose): left with all of them, the library's spinning threads take the cores the other
    processes need (benchmarks/RESULTS.md)."""
    environment = compile_ahead.worker_environment(os.environ)
    busy = pytest_processes() * (2 if _pool.calls_ahead_expected else 1)
    if busy >= 2 and THREADS_VARIABLE not in os.environ:
        environment[THREADS_VARIABLE] = str(threads_per_process(busy))
    return environment


class _Child:
    """A child the worker forked to serve the calls, and the socket to it."""

    def __init__(self, pid, connection):
        self.pid = pid
        self.connection = connection


class CallWorker:
    """One child process and the two pipes to it; where it can fork (engine.call_worker), the
    child it forked to serve the calls too, which alone is replaced after a crash or a hang."""

    def __init__(self):
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        passed = [child_reads, child_writes]
        arguments = [str(child_reads), str(child_writes), str(os.getpid())]
        self.spawner = None
        if _CAN_FORK:
            # Datagrams: each request and reply is one message, a socket passed along with it.
            self.spawner, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            passed.append(worker_end.fileno())
            arguments.append(str(worker_end.fileno()))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "klconform.engine.call_worker", *arguments],
            pass_fds=passed, stdin=subprocess.DEVNULL,
            stdout=sys.__stderr__.fileno() if sys.__stderr__ else subprocess.DEVNULL,
            # Its own process group: a kill reaches whatever the implementation started too.
            start_new_session=True, close_fds=True, env=_worker_environment())
        os.close(child_reads)
        os.close(child_writes)
        if self.spawner is not None:
            worker_end.close()
        self.outbox = Connection(parent_writes, readable=False)
        self.inbox = Connection(parent_reads, writable=False)
        self.ready = False
        self.loaded = set()     # the keys of the specs this worker has loaded
        # spec key -> what the worker said describes it (adapters.described), or None
        self.descriptions = {}
        self.sent_path = None
        self.child = None       # the _Child serving the calls, where the worker forks
        self.child_sent_path = None
        # Why the worker serves the calls itself (it cannot fork safely), once it said so.
        self.refusal = None if self.spawner is not None else "fork is unavailable here"

    def _receive(self, timeout, kinds=("returned", "raised"), connection=None):
        """The next message, or None after `timeout` seconds (None: wait forever)."""
        connection = connection or self.inbox
        try:
            if timeout is not None and not connection.poll(timeout):
                return None
            message = wire.decode(connection.recv_bytes())
        except (EOFError, OSError):
            raise WorkerCrashed(self._crash_text(connection)) from None
        return protocol.checked(message, kinds)

    def _crash_text(self, connection=None):
        if connection is not None and self.child is not None \
                and connection is self.child.connection:
            returncode = self._reaped(self.child.pid)
        else:
            try:
                returncode = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                returncode = None
        return _crash_message(returncode)

    def _sys_path(self, to_child=False):
        """The run's sys.path if it changed since the last message (see worker_protocol)."""
        path = list(sys.path)
        sent = self.child_sent_path if to_child else self.sent_path
        carried = path if path != sent else None
        if to_child:
            self.child_sent_path = path
        else:
            self.sent_path = path
        return carried

    def _send(self, message, connection=None):
        try:
            (connection or self.outbox).send_bytes(wire.encode(message, os.getpid()))
        except (BrokenPipeError, OSError):
            raise WorkerCrashed(self._crash_text(connection)) from None

    def _wait_ready(self):
        if not self.ready:
            if self._receive(LOAD_TIMEOUT_S, kinds=("ready",)) is None:
                raise WorkerLoadError(f"the call worker did not start in {LOAD_TIMEOUT_S:g} s")
            self.ready = True

    def load(self, spec):
        if spec.key in self.loaded:
            return
        self._wait_ready()
        self._send(protocol.load(spec, self._sys_path()))
        reply = self._receive(LOAD_TIMEOUT_S)
        if reply is None:
            raise WorkerLoadError(f"loading --impl {spec.impl} in the call worker took over "
                                  f"{LOAD_TIMEOUT_S:g} s")
        if reply["kind"] == "raised":
            error = _error_of(reply)
            raise WorkerLoadError(f"the call worker could not load --impl {spec.impl}: "
                                  f"{type(error).__name__}: {error}", error)
        self.loaded.add(spec.key)
        self.descriptions[spec.key] = reply["value"]

    def _ask(self, message, passing=None, timeout=SPAWN_TIMEOUT_S):
        """The worker's reply to a request on the spawner socket, or None where it gave none
        within `timeout` seconds (it ended, or it is stuck)."""
        try:
            encoded = wire.encode(message, os.getpid())
            if passing is None:
                self.spawner.send(encoded)
            else:
                socket.send_fds(self.spawner, [encoded], [passing.fileno()])
            self.spawner.settimeout(timeout)
            data = self.spawner.recv(1 << 16)
        except OSError:   # a timeout too
            return None
        return protocol.checked(wire.decode(data), ("spawned", "refused", "exited")) \
            if data else None

    def _reaped(self, pid, timeout=SPAWN_TIMEOUT_S):
        """How the child `pid` ended, once the worker has reaped it; None if it cannot say."""
        reply = self._ask(protocol.wait(pid), timeout=timeout)
        return None if reply is None else reply["returncode"]

    def spawn(self):
        """The connection the calls go to: a child forked by the worker where it can fork,
        started now if there is none, else the worker itself."""
        self._wait_ready()
        if self.refusal is not None:
            return None
        if self.child is None:
            self.child = self._fork()
            self.child_sent_path = None
        return self.child.connection if self.child is not None else None

    def _fork(self, send_buffer=None):
        """A new child of the worker's, ready on its own socket (whose sending side holds
        `send_buffer` bytes, where given and the system allows); None where it refused."""
        run_end, child_end = socket.socketpair()
        if send_buffer:
            child_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        try:
            reply = self._ask(protocol.spawn(), passing=child_end)
        finally:
            child_end.close()
        if reply is None:
            run_end.close()
            raise WorkerCrashed(self._crash_text())
        if reply["kind"] == "refused":
            run_end.close()
            self.refusal = reply["reason"]
            return None
        child = _Child(reply["pid"], Connection(run_end.detach()))
        if self._receive(LOAD_TIMEOUT_S, kinds=("ready",), connection=child.connection) \
                is None:
            raise WorkerLoadError(f"the call worker's child did not start in "
                                  f"{LOAD_TIMEOUT_S:g} s")
        return child

    def fork_ahead(self, spec, plan, share=None):
        """An ahead child (engine.calls_ahead) making the calls of `plan`; None where the
        worker cannot fork."""
        self.load(spec)
        if self.refusal is not None:
            return None
        child = self._fork(send_buffer=calls_ahead.SEND_BUFFER_BYTES)
        if child is None:
            return None
        ahead = calls_ahead.AheadChild(child.pid, child.connection, spec.timeout, plan["first"],
                                       owned=share)
        ahead.send(protocol.ahead(spec, plan, list(sys.path)))
        return ahead

    def end_ahead(self, ahead):
        """Kill an ahead child and have the worker reap it; how it ended."""
        return self._end(_Child(ahead.pid, ahead.connection))

    def call(self, spec, method, call):
        """(True, value) or (False, error raised by the call); None when it timed out."""
        self.load(spec)
        connection = self.spawn()
        to_child = connection is not None
        self._send(protocol.call(spec, method, call, self._sys_path(to_child)), connection)
        reply = self._receive(spec.timeout if spec.timeout and spec.timeout > 0 else None,
                              connection=connection)
        if reply is None:
            return None
        if reply["kind"] == "returned":
            return True, reply["value"]
        return False, _error_of(reply)

    def drop_child(self, reap_within=SPAWN_TIMEOUT_S):
        """Kill the child serving the calls, with whatever it started, and have the worker
        reap it (its CPU time then counts in the run's): the next call gets a fresh fork.
        False where the worker serves the calls itself."""
        child, self.child = self.child, None
        if child is None:
            return False
        self._end(child, reap_within)
        return True

    def _end(self, child, reap_within=SPAWN_TIMEOUT_S):
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        child.connection.close()
        returncode = self._reaped(child.pid, timeout=reap_within)
        wire.remove_leftovers(os.getpid())
        return returncode

    def kill(self):
        # Briefly: the worker may be the reason for the kill. A child it does not reap dies
        # with it (engine.children) and is reaped by the system.
        self.drop_child(reap_within=2.0)
        children.kill_group(self.process)
        for connection in (self.inbox, self.outbox, self.spawner):
            try:
                if connection is not None:
                    connection.close()
            except OSError:
                pass
        wire.remove_leftovers(os.getpid())

    def close(self):
        """Ask nicely (end of input), then make sure."""
        try:
            if self.child is not None:
                self.child.connection.close()
            self.outbox.close()
            self.process.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


def _label(call):
    shape = "x".join(str(n) for n in getattr(call.input, "shape", ())) or "0-d"
    return f"{shape} {call.dtype} reduction={call.reduction!r}"


class _Pool:
    """This process's call worker, replaced after every kill; and the breaker."""

    def __init__(self):
        self.worker = None
        self.breaker = CircuitBreaker()
        self.lock = threading.Lock()
        # Whether a process of the worker was killed while it could be writing a compiled
        # program (engine.compile_ahead keeps what the worker wrote only if none was).
        self.killed_at_work = False
        self.in_flight = False
        self.ahead = None       # the calls made ahead of the run (engine.calls_ahead)
        # Whether the run's calls will be made ahead beside it: a worker started then
        # shares the cores with this process (_worker_environment).
        self.calls_ahead_expected = False
        self.ahead_summary = None
        self.ahead_not_taken = None
        self.preloading = None  # a threading.Thread loading the implementation (prepare())
        self.prepared = None    # (spec key, worker) of the last prepare()

    def current(self):
        if self.worker is None:
            self.worker = CallWorker()
        return self.worker

    def replace(self):
        """After a call crashed or hung: where the worker forked the child that made it, a
        new fork serves the next call, and the worker stays; else a new worker."""
        self.killed_at_work = True
        if self.worker is not None:
            if self.worker.drop_child() and self.worker.process.poll() is None:
                return
            self.worker.kill()
        # Started now, so its imports overlap the rest of the run instead of the next call.
        self.worker = CallWorker()

    def stop_ahead(self):
        if self.ahead is not None:
            self.ahead.stop()
            self.ahead_summary = self.ahead.summary()
            self.ahead_not_taken = self.ahead.not_taken()
            self.ahead = None

    def shutdown(self, now=False):
        self.stop_ahead()
        if self.worker is not None:
            self.worker.kill() if now else self.worker.close()
            self.worker = None
            compile_ahead.worker_ended(whole=not (self.killed_at_work or self.in_flight))


_pool = _Pool()
atexit.register(_pool.shutdown)


def shutdown(now=False):
    """End the call worker (`now`: kill it, before a fast exit that skips atexit handlers)
    and the compiling ahead of its calls."""
    _pool.shutdown(now)
    compile_ahead.stop()


def prepare(spec):
    """Start the worker and have it load `spec` in the background: the implementation's
    imports then overlap this process's own. Asked again of the same worker, nothing: the
    run's pytest_cmdline_main starts the load before pytest_configure asks for it."""
    if _pool.worker is not None and _pool.prepared == (spec.key, _pool.worker):
        return
    with _pool.lock:
        worker = _pool.current()
        _pool.prepared = (spec.key, worker)
        _pool.preloading = threading.Thread(target=_preload, args=(worker, spec),
                                            name="klconform-preload", daemon=True)
        _pool.preloading.start()


def loading():
    """Whether prepare()'s load is still under way: this process has time for other work
    until the library has loaded (or failed to)."""
    return _pool.preloading is not None and _pool.preloading.is_alive()


def _preload(worker, spec):
    with _pool.lock:
        try:
            worker.load(spec)
        except (WorkerLoadError, WorkerCrashed, ProtocolError):
            pass  # _load_failure() or the first real call meets the same error


def _load_failure(spec):
    """Why the call worker cannot load `spec` (once prepare()'s load has ended), in one
    line, or None. Where this process only describes the implementation, the worker's import
    of its library is the first one: a library installed but not importing fails here."""
    with _pool.lock:
        try:
            _pool.current().load(spec)
        except (WorkerLoadError, WorkerCrashed) as error:
            cause = getattr(error, "cause", None)
            # klconform's own load errors already name --impl and say what to do.
            return str(cause) if isinstance(cause, KLConformError) else \
                f"--impl {spec.impl}: {error}"
    return None


def _described(spec):
    """The adapter describing `spec` in this process: rebuilt from what the call worker said
    of it where it could (adapters.described), else loaded here. Raises
    ImplementationLoadError, in one line, where the worker could not load it."""
    from klconform.adapters import load_adapter
    from klconform.adapters.described import adapter_from_description

    with _pool.lock:
        worker = _pool.current()
        try:
            worker.load(spec)
        except WorkerLoadError as error:
            if isinstance(error.cause, KLConformError):
                raise error.cause from None
        except (WorkerCrashed, ProtocolError):
            pass   # loaded here instead: the same error, or an adapter, as before the worker
        description = worker.descriptions.get(spec.key)
    if description is not None:
        return adapter_from_description(description)
    return load_adapter(spec.impl, convention=spec.convention, describe_only=True)


def expect_calls_ahead():
    """Before the call worker starts: its calls will be made ahead of the run, a second
    busy process beside this one."""
    _pool.calls_ahead_expected = True


def start_calls_ahead(spec, plan):
    """Make the calls of `plan` (engine.calls_ahead: the selected tests in the order they
    run) ahead of the run in a second child of the call worker, from the first test the run
    reaches on. Nothing where the worker cannot fork."""
    with _pool.lock:
        _pool.stop_ahead()
        worker = _pool.current()

        def fork(plan_from, share):
            try:
                return worker.fork_ahead(spec, plan_from, share) \
                    if worker is _pool.worker else None
            except (WorkerCrashed, WorkerLoadError, ProtocolError):
                return None

        def kill(child):
            return worker.end_ahead(child) if worker is _pool.worker else None

        _pool.ahead = calls_ahead.CallsAhead(spec.key, plan, fork, kill)


def stop_calls_ahead():
    """The end of a run's session: its ahead child goes (a later session in this process
    may run another implementation, and decides again whether to make calls ahead)."""
    with _pool.lock:
        _pool.stop_ahead()
        _pool.calls_ahead_expected = False


def reached(test):
    """The run starts the test at index `test` of the plan given start_calls_ahead()."""
    with _pool.lock:
        if _pool.ahead is not None:
            _pool.ahead.reached(test, _pool.breaker)


def calls_ahead_summary():
    """What the calls made ahead of this run (or of the last one) came to
    (CallsAhead.summary()); None where none were."""
    return _pool.ahead.summary() if _pool.ahead is not None else _pool.ahead_summary


def answers_not_taken():
    """Of the calls made ahead of the run stopped last, the keys not worth making ahead next
    time (CallsAhead.not_taken()), once; None where none were made ahead since."""
    keys, _pool.ahead_not_taken = _pool.ahead_not_taken, None
    return keys


def call_in_worker(spec, method, call):
    """The adapter's <method>(call) in the call worker, under the spec's per-call timeout and
    the breaker; its answer made ahead (engine.calls_ahead) where there is one."""
    with _pool.lock:
        refusal = _pool.breaker.refuse(spec.key, call)
        if refusal is not None:
            raise refusal
        ahead = _pool.ahead
        answer = ahead.take(method, call) if ahead is not None and ahead.implementation \
            == spec.key else None
        if answer is not None:
            return _settled_ahead(spec, call, answer)
        worker = _pool.current()
        _pool.in_flight = True
        try:
            result = worker.call(spec, method, call)
        except WorkerCrashed:
            _pool.replace()
            _pool.breaker.failed(spec.key, call, f"{_label(call)} {CALL_CRASHED}")
            raise
        if result is None:
            _pool.replace()
            _hung(spec, call)
        returned, value = result
        _pool.in_flight = False
        if returned:
            _pool.breaker.returned(spec.key, call)
        else:
            _pool.breaker.raised(spec.key, call, value)
    if not returned:
        raise value
    return value


def _hung(spec, call):
    _pool.breaker.failed(spec.key, call, f"{_label(call)} {CALL_HUNG}")
    raise CallTimeout(f"no result after {spec.timeout:g} s (per-call timeout; "
                      f"--kl-timeout); the call's process was killed")


def _settled_ahead(spec, call, answer):
    """The ahead child's answer to the call, counted by the breaker as the call worker's
    own answer is; a hang or crash there is this call's."""
    if answer.kind == "hung":
        _pool.killed_at_work = True
        _hung(spec, call)
    if answer.kind == "crashed":
        _pool.killed_at_work = True
        _pool.breaker.failed(spec.key, call, f"{_label(call)} {CALL_CRASHED}")
        raise WorkerCrashed(_crash_message(answer.returncode))
    if answer.kind == "returned":
        _pool.breaker.returned(spec.key, call)
        return answer.message["value"]
    error = _error_of(answer.message)
    _pool.breaker.raised(spec.key, call, error)
    raise error


def isolated(spec: ImplementationSpec):
    """The IsolatedAdapter of `spec`; the worker starts loading it first, so that its imports
    (torch, say) run beside this process's instead of after them. ImplementationLoadError if
    --impl does not resolve here. The user's own code is not imported here: the worker
    describes it once it has (IsolatedAdapter.load_failure waits for that)."""
    from klconform.adapters import described_by_its_importer, load_adapter

    prepare(spec)
    if described_by_its_importer(spec.impl, spec.convention):
        return IsolatedAdapter(spec)
    try:
        local = load_adapter(spec.impl, convention=spec.convention, describe_only=True)
    except BaseException:
        shutdown(now=True)
        raise
    return IsolatedAdapter(spec, local)


class IsolatedAdapter(Adapter):
    """The implementation of an ImplementationSpec: what it can be asked (capabilities, plans,
    snippets) from its adapter in this process (a built-in record's loaded without importing
    its library, the user's code as the call worker described it), its calls made in the call
    worker."""

    def __init__(self, spec: ImplementationSpec, local: Adapter | None = None):
        self.spec = spec
        self._local = local

    @property
    def local(self):
        """The describing adapter; ImplementationLoadError where the worker cannot load it
        (load_failure says so in one line first)."""
        if self._local is None:
            self._local = _described(self.spec)
        return self._local

    def load_failure(self):
        """Why the implementation cannot be loaded, in one line, or None."""
        message = _load_failure(self.spec)
        if message is None:
            try:
                _ = self.local
            except KLConformError as error:
                return str(error)
        return message

    def resolution_failure(self):
        """load_failure() where only the call worker has resolved --impl, else None at once."""
        return self.load_failure() if self._local is None else None

    @property
    def name(self):
        return self.local.name

    @property
    def capabilities(self):
        return self.local.capabilities

    @property
    def record(self):
        """The declarative record, if it has one."""
        return getattr(self.local, "record", None)

    def version(self):
        return self.local.version()

    def describe(self):
        return self.local.describe()

    def plan(self, call):
        # A case's call is planned by each of its tests, and by the work done ahead of them:
        # a plan checks the values too (a vocabulary-sized case's, 13 ms each, 21 times a
        # jax run), so it is kept with the case's arrays (engine.prepared).
        return prepared.derived(call, ("plan", self.spec.key, prepared.call_settings(call)),
                                lambda input, target: self.local.plan(
                                    dataclasses.replace(call, input=input, target=target)))

    @property
    def observation_key(self):
        return self.spec.key

    def snippet(self, call):
        return self.local.snippet(call)

    def compute(self, call):
        return self.run(call)

    def gradients(self, call):
        return self.run_gradients(call)

    def run(self, call):
        return call_in_worker(self.spec, "run", call)

    def run_gradients(self, call):
        return call_in_worker(self.spec, "run_gradients", call)


def measure_overhead(adapter: IsolatedAdapter, call, repeats=200):
    """Seconds per call through the worker and in this process, for benchmarks/run.py."""
    from klconform.adapters import load_adapter

    adapter.run(call)
    start = time.perf_counter()
    for _ in range(repeats):
        adapter.run(call)
    isolated = (time.perf_counter() - start) / repeats
    # The run's own adapter only describes the implementation: one that calls it here.
    in_process = load_adapter(adapter.spec.impl, convention=adapter.spec.convention)
    in_process.run(call)
    start = time.perf_counter()
    for _ in range(repeats):
        in_process.run(call)
    direct = (time.perf_counter() - start) / repeats
    return isolated, direct
