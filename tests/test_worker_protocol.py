"""The run and its call worker speak the versioned protocol of spec/call-worker.schema.json."""

import json
import time

import jsonschema
import numpy as np
import pytest

from klconform import resources
from klconform.adapters.base import Call
from klconform.engine import isolation, wire
from klconform.engine import worker_protocol as protocol
from klconform.engine.worker_protocol import ProtocolError, implementation_spec

SCHEMA = json.loads((resources.spec_dir() / "call-worker.schema.json").read_text())


def _uniform(shape, reduction="sum"):
    classes = shape[-1]
    return Call(np.log(np.full(shape, 1 / classes)), np.full(shape, 1 / classes),
                dtype="float64", reduction=reduction)


def _recorded_messages(monkeypatch):
    """The lists this process's sent and received messages are appended to, as they go."""
    sent, received = [], []
    encode, decode = wire.encode, wire.decode
    monkeypatch.setattr(wire, "encode", lambda message, pid: sent.append(message)
                        or encode(message, pid))
    monkeypatch.setattr(wire, "decode", lambda payload: received.append(decode(payload))
                        or received[-1])
    return sent, received


def test_every_message_of_a_real_exchange_matches_the_schema(monkeypatch):
    isolation.shutdown()   # a fresh worker: its ready message and a load are part of it
    sent, received = _recorded_messages(monkeypatch)
    adapter = isolation.isolated(implementation_spec("numpy", timeout=60))
    assert adapter.run(_uniform((2, 3))).shape == ()
    with pytest.raises(NotImplementedError):   # numpy's record declares no autograd
        adapter.run_gradients(_uniform((2, 3)))
    isolation._pool.replace()   # where the worker forks the child making the calls: a new one
    assert adapter.run(_uniform((2, 3))).shape == ()
    kinds = [message["kind"] for message in sent + received]
    assert {"load", "call", "ready", "returned", "raised"} <= set(kinds)
    if isolation._pool.worker.spawner is not None:
        assert {"spawn", "spawned", "wait", "exited"} <= set(kinds)
    for message in sent + received:
        jsonschema.validate(message, SCHEMA)
    assert all(message["implementation"] == {"impl": "numpy", "convention": None}
               for message in sent if message["kind"] in ("load", "call"))


def test_the_messages_of_calls_made_ahead_match_the_schema(monkeypatch):
    from klconform.engine.compile_ahead import planned_test
    from klconform.engine.evaluate import evaluate
    from klconform.spec.cases import load_cases

    isolation.shutdown()
    sent, received = _recorded_messages(monkeypatch)
    spec = implementation_spec("numpy", timeout=60)
    adapter = isolation.isolated(spec)
    case = next(case for case in load_cases() if case.id == "worked-uniform-vs-9-12-4")
    isolation.start_calls_ahead(spec, {"tests": [planned_test("case", case, "float64")],
                                       "device": "cpu", "max_examples": None})
    isolation.reached(0)
    assert evaluate(case, "float64", adapter).status == "passed"
    if isolation._pool.worker.spawner is None:
        pytest.skip("the worker does not fork here: nothing is made ahead")
    assert isolation.calls_ahead_summary()["taken"] == 1
    deadline = time.monotonic() + 10
    while not any(message["kind"] == "passed" for message in received) \
            and time.monotonic() < deadline:
        isolation.reached(1)   # past the plan's end: the child's last messages are read
    isolation.stop_calls_ahead()
    kinds = [message["kind"] for message in sent + received]
    assert {"ahead", "making", "returned", "passed"} <= set(kinds)
    assert any("key" in message for message in received if message["kind"] == "returned")
    for message in sent + received + [protocol.reached(1)]:   # sent only to a late child
        jsonschema.validate(message, SCHEMA)
    isolation.shutdown()


def test_the_schema_refuses_a_call_without_its_implementation():
    message = protocol.call(implementation_spec("numpy"), "run", None, None)
    del message["implementation"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(message, SCHEMA)


def test_a_message_of_another_version_is_refused_by_the_worker():
    adapter = isolation.isolated(implementation_spec("numpy", timeout=60))
    adapter.run(_uniform((3,)))
    worker = isolation._pool.current()
    old = {**protocol.call(adapter.spec, "run", _uniform((3,)), None), "protocol": 0}
    worker._send(old)
    reply = worker._receive(60)
    assert reply["kind"] == "raised"
    assert isinstance(reply["error"], ProtocolError)
    assert "protocol 0, expected 1" in str(reply["error"])
    with pytest.raises(ProtocolError, match="protocol 2"):
        protocol.checked({"protocol": 2, "kind": "returned"}, ("returned",))


def test_a_spec_is_immutable_and_its_convention_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = implementation_spec(" mymod:kl ", "conventions/kl.yaml", timeout=5)
    assert spec.impl == "mymod:kl"
    assert spec.convention == str(tmp_path / "conventions" / "kl.yaml")
    with pytest.raises(AttributeError):
        spec.timeout = 1


def test_the_benchmarks_overhead_times_a_call_in_the_worker_and_one_made_here():
    # The run's own adapter only describes a built-in: the in-process side loads one that calls.
    adapter = isolation.isolated(implementation_spec("numpy", timeout=60))
    isolated, direct = isolation.measure_overhead(adapter, _uniform((4, 8), "none"), repeats=3)
    assert isolated > 0 and direct > 0
