"""The child side of klconform.engine.isolation: a process that runs implementation calls.

Started as `python -m klconform.engine.call_worker READ_FD WRITE_FD PARENT_PID [SPAWN_FD]`.
It loads adapters from the ImplementationSpec each message carries
(klconform.adapters.load_adapter), runs the calls the parent sends and returns what they gave
or raised; a load is answered with what the parent needs to describe the implementation
without importing it (adapters.described). It imports nothing of the implementation until
asked, and never touches stdin/stdout of the run: the protocol (engine.worker_protocol) has
its own pipes.

With SPAWN_FD (a Unix socket) it is also a template: asked to `spawn`, it forks a child that
serves the calls on the socket the request carried, with every adapter the template has
loaded already imported. A call that crashes or hangs then costs the run a fork, not a new
process importing the library again. It forks only while it runs no thread but those it
started with: a library that started one while loading (a GPU runtime, a thread pool) may
hold a lock that its forked copy would wait on forever, which the run would report as a
hang. It refuses then, and the run sends its calls to the template itself.
"""

import os
import signal
import socket
import sys
import time
from multiprocessing.connection import Connection, wait

from klconform.engine import children, wire
from klconform.engine import worker_protocol as protocol


def _load_reply(key, adapter, run_pid):
    """What the run is told of a loaded implementation: its description where the run does
    not import it (the user's own code, adapters.described), else None; None too for a
    description that does not travel (the run then loads the implementation itself)."""
    from klconform.adapters import described_by_its_importer
    from klconform.adapters.described import description_of

    if described_by_its_importer(*key):
        try:
            return wire.encode(protocol.returned(description_of(adapter)), run_pid)
        except Exception:
            pass
    return wire.encode(protocol.returned(None), run_pid)


def _native_threads():
    """The ids of this process's threads, native ones included, or None where that cannot be
    known."""
    try:
        return set(os.listdir("/proc/self/task"))
    except OSError:
        return None


class _Template:
    """Forks the children that serve calls (see the module's doc) and reaps them."""

    def __init__(self, spawner: socket.socket, run_pid):
        self.spawner = spawner
        self.run_pid = run_pid
        # Taken once klconform's own imports (numpy's thread pool among them) and the parent
        # watch are running: a fork is only ever made with these.
        self.threads = _native_threads()
        self.children = set()   # forked and not reaped yet

    def answer(self, channels):
        """Answer one request of the run's. Returns in a forked child only, with the
        Connection that child serves."""
        try:
            data, fds, _, _ = socket.recv_fds(self.spawner, 1 << 16, 1)
        except OSError:
            return None
        if not data:  # the run closed its end: it is over
            self.reap()
            sys.exit(0)
        message = protocol.checked(wire.decode(data), ("spawn", "wait"))
        if message["kind"] == "wait":
            self.children.discard(message["pid"])
            self._reply(protocol.exited(message["pid"], _reaped(message["pid"])))
            return None
        child_end = fds[0] if fds else None
        refusal = self._refusal() if child_end is not None else "no socket came with the request"
        if refusal is not None:
            if child_end is not None:
                os.close(child_end)
            self._reply(protocol.refused(refusal))
            return None
        # What the library printed on import would otherwise be printed again by each child.
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            return self._become_child(channels, child_end)
        os.close(child_end)
        self.children.add(pid)
        self._reply(protocol.spawned(pid))
        return None

    def reap(self):
        """At the end of the run, which has closed the children's sockets too: a child
        reaped here has its CPU time counted in the run's, as a worker's always was."""
        for pid in self.children:
            _reaped(pid, patience_s=2.0)
        self.children.clear()

    def _refusal(self):
        threads = _native_threads()
        if threads is None or self.threads is None:
            return "this platform does not say which threads a process runs"
        # Fewer is no harm: numpy's thread pool stops itself before each fork.
        started = threads - self.threads
        if started:
            return (f"loading the implementation started {len(started)} thread(s), which a "
                    f"forked copy would not have")
        return None

    def _reply(self, message):
        self.spawner.send(wire.encode(message, self.run_pid))

    def _become_child(self, channels, child_end):
        template_pid = os.getppid()
        for channel in channels:
            channel.close()
        self.spawner.close()
        # A session of its own: the run kills it with whatever it starts, the template spared.
        os.setsid()
        children.die_with_parent(template_pid)
        return Connection(child_end)


def _reaped(pid, patience_s=5.0):
    """The exit status of the child `pid` (negative: the signal that ended it), once it has
    ended; killed first if it has not ended within `patience_s`."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            ended, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if ended:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            deadline = float("inf")
        time.sleep(0.01)


def _exit_forked():
    # Nothing of the template's (its stack, its exit handlers) is a forked child's to run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def serve(inbox: Connection, outbox: Connection, run_pid, template=None):
    from klconform.adapters import load_adapter

    adapters = {}
    forked = False
    outbox.send_bytes(wire.encode(protocol.ready(), run_pid))
    while True:
        if template is not None and template.spawner in wait([inbox, template.spawner]):
            child = template.answer((inbox, outbox))
            if child is not None:
                # The forked child: it serves its own socket, with the template's adapters.
                template = None
                forked = True
                inbox = outbox = child
                outbox.send_bytes(wire.encode(protocol.ready(), run_pid))
            continue
        try:
            payload = inbox.recv_bytes()
        except (EOFError, OSError):
            if forked:
                _exit_forked()
            if template is not None:
                template.reap()
            return  # the parent closed the pipe: the run is over
        try:
            message = protocol.checked(wire.decode(payload), ("load", "call", "ahead"))
            if message["sys_path"] is not None:
                sys.path[:] = message["sys_path"]
            implementation = message["implementation"]
            key = (implementation["impl"], implementation["convention"])
            adapter = adapters.get(key)
            if adapter is None:
                adapter = adapters[key] = load_adapter(*key)
            if message["kind"] == "ahead":
                from klconform.adapters.convention import compile_apart
                from klconform.engine.calls_ahead import make_ahead

                compile_apart(f"ahead-{os.getpid()}")

                try:
                    make_ahead(adapter, key, message["plan"], outbox, run_pid)
                except BaseException:
                    # The run closed its socket, or this child cannot go on: its end tells
                    # the run, which makes its calls itself.
                    _exit_forked()
                continue   # the plan is made: it waits for the run to close the socket
            if message["kind"] == "call":
                value = getattr(adapter, message["method"])(message["call"])
                reply = wire.encode(protocol.returned(value), run_pid)
            else:
                reply = _load_reply(key, adapter, run_pid)
        except BaseException as error:  # KeyboardInterrupt too: the parent re-raises it
            reply = wire.encode(protocol.raised_rebuildable(error), run_pid)
        outbox.send_bytes(reply)


def main(argv):
    read_fd, write_fd, parent_pid = (int(value) for value in argv[:3])
    children.die_with_parent(parent_pid)
    template = None
    if len(argv) > 3:
        template = _Template(socket.socket(fileno=int(argv[3])), parent_pid)
    serve(Connection(read_fd, writable=False), Connection(write_fd, readable=False), parent_pid,
          template)


if __name__ == "__main__":
    main(sys.argv[1:])
