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

A child forked that way can instead be sent the run's plan, whose calls it makes ahead of the
run (engine.calls_ahead) on that socket, answering each with its key:

    run -> child    ahead   {implementation, plan, sys_path}
                    reached {test}   (the run is at that test of the plan: skip to it)
    child -> run    making  {test, key}   (before the call)
                    returned {value, key} / raised {error, key}
                    passed  {test}   (every call of that test is made)
                    finished {}      (no call comes after it: the plan ended, or the rest
                                      was skipped past its end)

`implementation` is the ImplementationSpec as data: the worker keeps one adapter per spec.
The value returned to a load describes the loaded implementation (adapters.described), or is
None where only its own adapter, loaded in the run too, can describe it.
`sys_path` is the run's sys.path when it changed since the last message, else None: modules
named by --impl are found where the run finds them, and tests and conftest files change it.
"""

import os
import pickle
from dataclasses import dataclass

from klconform.constants import DEFAULT_TIMEOUT_S
from klconform.engine import wire

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


def ahead(spec, plan, sys_path):
    return {"protocol": PROTOCOL, "kind": "ahead", "implementation": spec.as_data(),
            "plan": plan, "sys_path": sys_path}


def reached(test):
    return {"protocol": PROTOCOL, "kind": "reached", "test": test}


def making(test, key):
    return {"protocol": PROTOCOL, "kind": "making", "test": test, "key": key}


def passed(test):
    return {"protocol": PROTOCOL, "kind": "passed", "test": test}


def finished():
    return {"protocol": PROTOCOL, "kind": "finished"}


def ready():
    return {"protocol": PROTOCOL, "kind": "ready"}


def _keyed(message, key):
    """An answer made ahead carries the key of its call (engine.calls_ahead.call_key)."""
    if key is not None:
        message["key"] = key
    return message


def returned(value, key=None):
    return _keyed({"protocol": PROTOCOL, "kind": "returned", "value": value}, key)


def raised(error, key=None):
    return _keyed({"protocol": PROTOCOL, "kind": "raised", "error": error}, key)


def raised_text(error, key=None):
    return _keyed({"protocol": PROTOCOL, "kind": "raised", "error_type": type(error).__name__,
                   "error_text": str(error)}, key)


def raised_rebuildable(error, key=None):
    """`raised` with the error where it pickles and unpickles, else with its name and text:
    the run can rebuild either."""
    try:
        pickle.loads(pickle.dumps(error, protocol=wire.PROTOCOL))
        return raised(error, key)
    except Exception:
        return raised_text(error, key)


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
