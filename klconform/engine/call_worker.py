"""The child side of klconform.engine.isolation: a process that runs implementation calls.

Started as `python -m klconform.engine.call_worker READ_FD WRITE_FD PARENT_PID`. It loads
adapters from the ImplementationSpec each message carries (klconform.adapters.load_adapter),
runs the calls the parent sends and returns what they gave or raised; a load is answered with
what the parent needs to describe the implementation without importing it
(adapters.described). It imports nothing of the implementation until asked, and never
touches stdin/stdout of the run: the protocol (engine.worker_protocol) has its own pipes.
"""

import pickle
import sys
from multiprocessing.connection import Connection

from klconform.engine import children, wire
from klconform.engine import worker_protocol as protocol


def _raised(error, run_pid):
    """The error as a message the parent can rebuild, even when its class cannot be pickled."""
    try:
        pickle.loads(pickle.dumps(error, protocol=wire.PROTOCOL))
        return wire.encode(protocol.raised(error), run_pid)
    except Exception:
        return wire.encode(protocol.raised_text(error), run_pid)


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


def serve(inbox: Connection, outbox: Connection, run_pid):
    from klconform.adapters import load_adapter

    adapters = {}
    outbox.send_bytes(wire.encode(protocol.ready(), run_pid))
    while True:
        try:
            payload = inbox.recv_bytes()
        except (EOFError, OSError):
            return  # the parent closed the pipe: the run is over
        try:
            message = protocol.checked(wire.decode(payload), ("load", "call"))
            if message["sys_path"] is not None:
                sys.path[:] = message["sys_path"]
            implementation = message["implementation"]
            key = (implementation["impl"], implementation["convention"])
            adapter = adapters.get(key)
            if adapter is None:
                adapter = adapters[key] = load_adapter(*key)
            if message["kind"] == "call":
                value = getattr(adapter, message["method"])(message["call"])
                reply = wire.encode(protocol.returned(value), run_pid)
            else:
                reply = _load_reply(key, adapter, run_pid)
        except BaseException as error:  # KeyboardInterrupt too: the parent re-raises it
            reply = _raised(error, run_pid)
        outbox.send_bytes(reply)


def main(argv):
    read_fd, write_fd, parent_pid = (int(value) for value in argv[:3])
    children.die_with_parent(parent_pid)
    serve(Connection(read_fd, writable=False), Connection(write_fd, readable=False), parent_pid)


if __name__ == "__main__":
    main(sys.argv[1:])
