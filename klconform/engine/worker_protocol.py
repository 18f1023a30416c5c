"""The messages between a run and its call worker (engine.isolation, engine.call_worker).

Each message is a dict with the protocol version and a kind; spec/call-worker.schema.json
states them, as spec/run-stream.schema.json states the run stream. They travel encoded by
engine.wire (pickled, large arrays in shared memory), so `call`, `value` and `error` are
Python objects: a Call, an Observation or gradients, an exception.

    run -> worker   load    {implementation, sys_path}
                    call    {implementation, method, call, sys_path}
    worker -> run   ready   {}
                    returned {value}
                    raised  {error} | {error_type, error_text} (an error that does not pickle)

Where the worker is a template (engine.call_worker), the run also asks it, on a socket of
their own, for the children that serve the calls; a child then speaks the protocol above on
the socket that came with `spawn`, starting with `ready`:

    run -> template spawn   {}  with a socket passed along
                    wait    {pid}
    template -> run spawned {pid}
                    refused {reason}   (it cannot fork safely: calls go to the template)
                    exited  {pid, returncode}  (returncode negative: the signal; null: unknown)

`implementation` is the ImplementationSpec as data: the worker keeps one adapter per spec.
The value returned to a load describes the loaded implementation (adapters.described), or is
None where only its own adapter, loaded in the run too, can describe it.
`sys_path` is the run's sys.path when it changed since the last message, else None: modules
named by --impl are found where the run finds them, and tests and conftest files change it.
"""

import os
from dataclasses import dataclass

from klconform.constants import DEFAULT_TIMEOUT_S

PROTOCOL = 1
METHODS = ("run", "run_gradients")


class ProtocolError(Exception):
    """A message of another protocol version or of an unknown kind."""


@dataclass(frozen=True)
class ImplementationSpec:
    """What an implementation is re-created from in the call worker, and how long one of its
    calls may take. Built once, where --impl is resolved; immutable, so every process holding
    it means the same implementation."""

    impl: str                       # the --impl string
    convention: str | None = None   # absolute path of the --kl-convention record, if any
    timeout: float = DEFAULT_TIMEOUT_S   # seconds per call; 0 or less: no limit

    @property
    def key(self):
        """The implementation itself, whatever the timeout: what the worker loads once and
        the circuit breaker counts under."""
        return (self.impl, self.convention)

    def as_data(self):
        """What the worker needs to load it (the timeout is enforced by the run)."""
        return {"impl": self.impl, "convention": self.convention}


def implementation_spec(impl, convention=None, timeout=DEFAULT_TIMEOUT_S):
    """The spec of an --impl string, with its --kl-convention file (any relative path made
    absolute: the worker may not share the run's working directory for long)."""
    return ImplementationSpec(impl.strip(),
                              None if convention is None else os.path.abspath(str(convention)),
                              timeout)


def load(spec, sys_path):
    return {"protocol": PROTOCOL, "kind": "load", "implementation": spec.as_data(),
            "sys_path": sys_path}


def call(spec, method, the_call, sys_path):
    if method not in METHODS:
        raise ProtocolError(f"no such call worker method: {method!r} (one of {METHODS})")
    return {"protocol": PROTOCOL, "kind": "call", "implementation": spec.as_data(),
            "method": method, "call": the_call, "sys_path": sys_path}


def ready():
    return {"protocol": PROTOCOL, "kind": "ready"}


def returned(value):
    return {"protocol": PROTOCOL, "kind": "returned", "value": value}


def raised(error):
    return {"protocol": PROTOCOL, "kind": "raised", "error": error}


def raised_text(error):
    return {"protocol": PROTOCOL, "kind": "raised", "error_type": type(error).__name__,
            "error_text": str(error)}


def spawn():
    return {"protocol": PROTOCOL, "kind": "spawn"}


def wait(pid):
    return {"protocol": PROTOCOL, "kind": "wait", "pid": pid}


def spawned(pid):
    return {"protocol": PROTOCOL, "kind": "spawned", "pid": pid}


def refused(reason):
    return {"protocol": PROTOCOL, "kind": "refused", "reason": reason}


def exited(pid, returncode):
    return {"protocol": PROTOCOL, "kind": "exited", "pid": pid, "returncode": returncode}


def checked(message, kinds):
    """`message`, once it is of this protocol and one of `kinds`."""
    if not isinstance(message, dict) or message.get("protocol") != PROTOCOL:
        found = message.get("protocol") if isinstance(message, dict) else type(message).__name__
        raise ProtocolError(f"call worker protocol {found!r}, expected {PROTOCOL}: the run and "
                            f"its worker come from different klconform installations")
    if message.get("kind") not in kinds:
        raise ProtocolError(f"unexpected call worker message {message.get('kind')!r} "
                            f"(expected {' or '.join(kinds)})")
    return message
