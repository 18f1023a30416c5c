"""Calls made ahead of the run (klconform.engine.calls_ahead): the run takes an answer only
for the very call it would have made, a correct function's calls are all planned, and a
run's verdict, claims and root causes are the same with them as without."""

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from klconform.adapters import load_adapter
from klconform.adapters.base import Call
from klconform.adapters.numpy_adapter import NumpyAdapter
from klconform.engine import calls_ahead, isolation
from klconform.engine.calls_ahead import MAX_BYTES, call_key
from klconform.engine.evaluate import evaluate
from klconform.engine.gradients import eligible, evaluate_gradients
from klconform.engine.layout_checks import evaluate_layouts
from klconform.engine.planned_calls import calls_of
from klconform.engine.properties import PROPERTIES, run_property
from klconform.engine.worker_protocol import implementation_spec
from klconform.harness.hypothesis_profiles import configure
from klconform.spec.cases import load_cases
from klconform.statuses import Status
from tests.suite_runner import implementation_module, run_suite
from tests.test_stored_examples import searches

BASE = Call(np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([[0.5, 0.5], [0.25, 0.75]]),
            "float64", reduction="sum")


def _one_ulp_up(array):
    moved = array.copy()
    moved[0, 0] = np.nextafter(moved[0, 0], 1.0)
    return moved


def test_an_equal_call_has_the_key_and_any_change_another():
    key = call_key("run", BASE)
    assert call_key("run", replace(BASE, input=BASE.input.copy(), legacy={})) == key
    changed = [call_key("run_gradients", BASE)] + [call_key("run", replace(BASE, **change)) for
                                                   change in (
        {"input": _one_ulp_up(BASE.input)},
        {"target": BASE.target.astype(np.float32)},
        {"input": np.asfortranarray(BASE.input)},          # the same values, other strides
        {"reduction": "mean"}, {"log_target": False},      # False is not left out
        {"temperature": 1.0}, {"temperature": 1},          # nor is an int a float
        {"legacy": {"size_average": False}}, {"requires_grad": ("input",)},
        {"layout": "transposed"}, {"mask": np.array([True, False])}, {"dtype": "float32"},
        {"input_dtype": "float32"}, {"device": "cuda"})]
    assert key not in changed and len(set(changed)) == len(changed)


def test_a_call_of_objects_or_over_the_size_limit_has_no_key():
    objects = np.array([[0.1, 0.2], [0.3, 0.4]], dtype=object)
    assert call_key("run", replace(BASE, input=objects)) is None
    rows = MAX_BYTES // (2 * 8 * 1000) + 1
    large = np.full((rows, 1000), 1e-3)
    assert call_key("run", replace(BASE, input=large, target=large)) is None
    assert call_key("run", replace(BASE, input=large[:1], target=large[:1])) is not None


def test_a_cases_own_arrays_are_digested_once_and_keyed_as_their_bytes(monkeypatch):
    """A case's own call is keyed, whatever its size, by a digest worked out once on the
    kept arrays (engine.prepared.kept_digest): the key a copy of the same bytes would have,
    and none kept once the arrays were written into."""
    from klconform.engine import prepared
    from klconform.engine.evaluate import make_call

    cases = {case.id: case for case in load_cases()}
    prepared.forget_all()
    small = make_call(cases["batchmean-2d"], "float32", "cpu")
    assert prepared.kept_digest(small.input, calls_ahead._bytes_digest) is not None
    copied = replace(small, input=small.input.copy(), target=small.target.copy())
    assert prepared.kept_digest(copied.input, calls_ahead._bytes_digest) is None
    assert call_key("run", small) == call_key("run", copied)

    # Below the case's array size, so that the array written into has no key.
    monkeypatch.setattr(calls_ahead, "MAX_BYTES", 1 << 20)
    large = make_call(cases["large-vocab-summation-accuracy"], "float32", "cpu")
    assert large.input.nbytes > calls_ahead.MAX_BYTES
    digested = []
    monkeypatch.setattr(calls_ahead, "_bytes_digest",
                        lambda array: digested.append(array.nbytes) or b"d" * 16)
    key = call_key("run", large)
    again = make_call(cases["large-vocab-summation-accuracy"], "float32", "cpu")
    assert key is not None and call_key("run_gradients", again) != key
    assert call_key("run", again) == key
    assert len(digested) == 2   # input and target, once each for both calls
    large.input[0, 0] += 1.0
    assert call_key("run", large) is None
    prepared.forget_all()


def _child_said(*messages, timeout=60):
    """The run's side of an ahead child (plan from test 0) that sent `messages`."""
    import os
    import socket
    from multiprocessing.connection import Connection

    from klconform.engine import wire

    run_end, child_end = socket.socketpair()
    child = Connection(child_end.detach())
    for message in messages:
        child.send_bytes(wire.encode(message, os.getpid()))
    return calls_ahead.AheadChild(12345, Connection(run_end.detach()), timeout, 0), child


def test_the_same_call_made_twice_in_a_test_is_answered_twice_in_order():
    from klconform.engine import worker_protocol as protocol

    key = call_key("run", BASE)
    ahead, _ = _child_said(protocol.making(0, key), protocol.returned("first", key),
                           protocol.making(0, key), protocol.returned("second", key),
                           protocol.passed(0))
    assert ahead.take(key, 0).message["value"] == "first"
    assert ahead.take(key, 0).message["value"] == "second"
    assert ahead.take(key, 0) is None   # it made no third one: the run makes it
    assert ahead.ended is None


def test_an_answer_is_taken_only_in_the_test_it_was_made_for():
    from klconform.engine import worker_protocol as protocol

    key = call_key("run", BASE)
    ahead, _ = _child_said(protocol.making(0, key), protocol.returned("in test 0", key),
                           protocol.passed(0), protocol.making(1, key),
                           protocol.returned("in test 1", key), protocol.passed(1))
    assert ahead.take(call_key("run_gradients", BASE), 0) is None
    ahead.reached(1)   # test 0's answer is not taken now
    assert ahead.take(key, 1).message["value"] == "in test 1"
    assert ahead.take(key, 1) is None


def test_a_child_that_ends_mid_call_crashed_that_call_and_no_other():
    from klconform.engine import worker_protocol as protocol

    key, other = call_key("run", BASE), call_key("run", replace(BASE, reduction="none"))
    ahead, child = _child_said(protocol.making(0, key))
    child.close()
    assert ahead.take(other, 0) is None and ahead.ended == "its process ended"
    assert ahead.take(key, 0).kind == "crashed"


def test_a_child_stuck_in_a_call_is_ended_when_the_run_moves_on():
    from klconform.engine import worker_protocol as protocol

    key = call_key("run", BASE)
    ahead, _ = _child_said(protocol.making(0, key), timeout=0.2)
    ahead.reached(0)
    assert ahead.ended is None and ahead.making is not None
    time.sleep(0.3)
    ahead.reached(1)   # the run no longer waits for it: it still must not hold a core
    assert ahead.ended == "a call made no answer within the timeout"


class Recording:
    """An adapter as it is, the keys of its calls noted in order."""

    def __init__(self, adapter):
        self._adapter = adapter
        self.made = []

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def run(self, call):
        self.made.append(call_key("run", call))
        return self._adapter.run(call)

    def run_gradients(self, call):
        self.made.append(call_key("run_gradients", call))
        return self._adapter.run_gradients(call)


def _planned(kind, subject, dtype, adapter, max_examples=None):
    plan = {"device": "cpu", "max_examples": max_examples}
    return [call_key(method, call) for method, call in
            calls_of(kind, subject, dtype, adapter, plan, failure_paths=False)]


# torch, and a token-level distillation loss under its record (logits, a temperature, a mask
# of ignored labels, a mean over the kept tokens: many tests it cannot be asked).
PASSING = {"torch": ("torch", None),
           "distillation": ("tests.distillation.losses:token_kd_labels",
                            "tests/distillation/records/token_kd_labels.yaml")}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("passing", PASSING)
def test_every_call_a_passing_function_makes_is_planned_and_no_other(passing, dtype):
    impl, convention = PASSING[passing]
    adapter = Recording(load_adapter(impl, convention=convention))
    cases = [case for case in load_cases() if case.profile != "thorough"]
    for kind, evaluated, subjects in (("case", evaluate, cases),
                                      ("gradient", evaluate_gradients, filter(eligible, cases)),
                                      ("layout", evaluate_layouts, filter(eligible, cases))):
        for case in (case for case in subjects if dtype in case.dtypes):
            adapter.made = []
            outcome = evaluated(case, dtype, adapter)
            assert outcome.status not in (Status.FAILED, Status.ERRORED), (kind, case.id)
            planned = _planned(kind, case, dtype, adapter)
            # Those over the size limit have no key: the run makes them itself.
            assert [key for key in adapter.made if key] == [key for key in planned if key], \
                (kind, case.id)


@pytest.mark.parametrize("passing", PASSING)
def test_every_call_a_passing_function_s_properties_make_is_planned_and_no_other(passing):
    recorded = configure("default")
    impl, convention = PASSING[passing]
    adapter = Recording(load_adapter(impl, convention=convention))
    for prop in PROPERTIES:
        adapter.made = []
        run_property(prop, adapter, "float64")
        assert adapter.made == _planned("property", prop.id, "float64", adapter,
                                        recorded["max_examples"]), prop.id


class _RefusingThreeDimensions(NumpyAdapter):
    """numpy's KL, which cannot be asked 3-D inputs: a replay of stored examples meets one
    and hands the property to Hypothesis's search, which draws others in its place."""

    def plan(self, call):
        plan = super().plan(call)
        if np.ndim(call.input) == 3 and not plan.unsupported:
            return replace(plan, unsupported="3-D inputs (this test's refusal)")
        return plan


def test_the_search_after_a_replaced_example_repeats_no_call_the_replay_made(monkeypatch):
    from klconform.engine import properties

    recorded = configure("default")
    searched = searches(monkeypatch)
    adapter = Recording(_RefusingThreeDimensions())
    for prop in PROPERTIES:
        adapter.made = []
        outcome = run_property(prop, adapter, "float64")
        made = adapter.made
        if prop.id not in searched:
            assert made == _planned("property", prop.id, "float64", adapter,
                                    recorded["max_examples"]), prop.id
        else:
            with monkeypatch.context() as patched:
                patched.setattr(properties, "_stored_examples", lambda *args: None)
                adapter.made = []
                alone = run_property(prop, adapter, "float64")
            assert json.dumps(vars(outcome), default=str, sort_keys=True) == json.dumps(
                vars(alone), default=str, sort_keys=True), prop.id
            # The replay and the search that took over made each call once, in the order
            # the search alone makes them.
            assert made == adapter.made, prop.id
    assert len(set(searched)) >= 3


@pytest.fixture
def fresh_pool(monkeypatch):
    monkeypatch.setattr(isolation, "_pool", isolation._Pool())
    yield
    isolation._pool.shutdown()


pytestmark = pytest.mark.skipif(not isolation._CAN_FORK or not Path("/proc/self/task").exists(),
                                reason="the worker forks only where it can see its threads")


def _plan(tests, max_examples=None):
    return {"tests": tests, "device": "cpu", "max_examples": max_examples}


def _gradient_test():
    """A default gradient case in float64 (finite differences too), planned."""
    from klconform.engine.compile_ahead import planned_test

    case = next(case for case in load_cases() if case.profile != "thorough"
                and eligible(case) and "float64" in case.dtypes)
    return case, planned_test("gradient", case, "float64")


def test_the_run_takes_the_answers_made_ahead_and_makes_none_itself(fresh_pool):
    spec = implementation_spec("torch")
    adapter = isolation.isolated(spec)
    case, test = _gradient_test()
    isolation.start_calls_ahead(spec, _plan([test]))
    isolation.reached(0)
    outcome = evaluate_gradients(case, "float64", adapter)
    assert outcome.status == Status.PASSED
    summary = isolation.calls_ahead_summary()
    assert summary["taken"] > 4 and summary["made_by_the_run"] == 0, summary
    assert isolation._pool.worker.child is None   # the call worker's own child never forked


def _case_test(impl, rank, reduction):
    """A default case with `rank`-d arrays called with `reduction` whose test calls `impl`
    once, planned as a case test."""
    from klconform.engine.compile_ahead import planned_test
    from klconform.engine.evaluate import planned_case_calls

    adapter = load_adapter(impl)
    case = next(case for case in load_cases() if case.profile != "thorough"
                and np.ndim(case.arrays[0]) == rank and case.call.get("reduction") == reduction
                and "float64" in case.dtypes
                and len(planned_case_calls(case, "float64", adapter)) == 1)
    return case, planned_test("case", case, "float64")


def _its_call(case):
    from klconform.engine.evaluate import make_call

    return make_call(case, "float64", "cpu")


def test_a_call_hanging_ahead_is_the_run_s_hang_once_and_the_next_test_starts_a_child(
        fresh_pool):
    from klconform.engine.call_errors import CallTimeout

    spec = implementation_spec("tests.hanging:spins", timeout=1)
    adapter = isolation.isolated(spec)
    hangs, hanging_test = _case_test(spec.impl, 3, "sum")
    returns, returning_test = _case_test(spec.impl, 2, "sum")
    isolation.start_calls_ahead(spec, _plan([hanging_test, returning_test]))
    isolation.reached(0)
    with pytest.raises(CallTimeout, match="per-call timeout"):
        adapter.run(_its_call(hangs))
    summary = isolation.calls_ahead_summary()
    assert summary["ended"] == ["a call made no answer within the timeout"], summary
    assert isolation._pool.worker.child is None   # the run did not make it again
    assert isolation._pool.breaker.streaks        # counted as the call worker's own hang
    isolation.reached(1)
    adapter.run(_its_call(returns))
    summary = isolation.calls_ahead_summary()
    assert summary["children"] == 2 and summary["taken"] == 1, summary


def test_a_call_crashing_ahead_is_the_run_s_crash(fresh_pool):
    from klconform.engine.call_errors import WorkerCrashed

    spec = implementation_spec("tests.hanging:exits_on_2d_sum", timeout=60)
    adapter = isolation.isolated(spec)
    crashes, crashing_test = _case_test(spec.impl, 2, "sum")
    isolation.start_calls_ahead(spec, _plan([crashing_test]))
    isolation.reached(0)
    with pytest.raises(WorkerCrashed, match=r"crashed the call worker process \(exit status 3\)"):
        adapter.run(_its_call(crashes))
    assert isolation.calls_ahead_summary()["ended"] == ["its process ended"]
    assert isolation._pool.worker.child is None


MUTANT = """
import torch.nn.functional as F


def batchmean_over_numel(input, target, reduction="mean", log_target=False):
    if reduction == "batchmean":
        return F.kl_div(input, target, reduction="sum", log_target=log_target) / input.numel()
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)
"""


def _comparable(report):
    """The report without what differs between any two runs (times, the invocation)."""
    return {key: value for key, value in report.items() if key not in ("run", "environment")}


@pytest.mark.parametrize("impl", ["torch", "mutant"])
def test_a_run_s_report_is_the_same_with_calls_made_ahead_and_without(pytester, monkeypatch,
                                                                      impl):
    # This test's own session may run under pytest-xdist, whose workers leave no core free.
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    monkeypatch.setattr("klconform.machine.usable_cores", lambda: 2)
    if impl == "mutant":
        impl = implementation_module(pytester, "batchmean_mutant", MUTANT) \
            + ":batchmean_over_numel"
    suites = ("test_cases.py", "test_gradients.py", "test_layouts.py")
    ahead = run_suite(pytester, impl, suites=suites)
    summary = isolation.calls_ahead_summary()
    assert summary and summary["taken"] > 100, summary
    report = ahead.report
    isolation._pool.ahead_summary = None
    made_in_turn = run_suite(pytester, impl, "--kl-calls-ahead", "off", suites=suites)
    assert isolation.calls_ahead_summary() is None
    assert json.dumps(_comparable(report), sort_keys=True) == \
        json.dumps(_comparable(made_in_turn.report), sort_keys=True)
    assert (report["verdict"] == "fail") == (impl != "torch"), report["verdict"]


def test_calls_are_made_ahead_only_where_asked_on_the_cpu_with_a_core_free(monkeypatch):
    from klconform.constants import OFF
    from klconform.harness.ahead import makes_calls_ahead
    from klconform.harness.session import RunSettings

    monkeypatch.setattr("klconform.machine.usable_cores", lambda: 2)
    settings = RunSettings(impl="torch", report_dir="reports", requested=True)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert makes_calls_ahead(settings)
    assert not makes_calls_ahead(replace(settings, calls_ahead=OFF))
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    assert not makes_calls_ahead(settings)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    assert not makes_calls_ahead(replace(settings, device="cuda"))
    monkeypatch.setattr("klconform.machine.usable_cores", lambda: 1)
    assert not makes_calls_ahead(settings)


def test_a_child_behind_the_run_is_sent_past_it_and_the_tests_between_are_the_runs():
    """The run's side alone, against a connection this test answers for the child: a child
    still at test 0 when the run starts test 3 is told to jump LEAD_TESTS past it; the run
    makes the calls of the tests in between itself, without waiting on the child, and takes
    the child's answers from the test it jumped to."""
    import os
    from multiprocessing import Pipe

    from klconform.engine import wire
    from klconform.engine import worker_protocol as protocol

    run_end, child_end = Pipe()
    child = calls_ahead.AheadChild(os.getpid(), run_end, timeout=60, first=0)

    def say(message):
        child_end.send_bytes(wire.encode(message, os.getpid()))

    say(protocol.making(0, "k0"))
    child.reached(3)
    told = protocol.checked(wire.decode(child_end.recv_bytes()), ("reached",))
    assert told["test"] == 3 + calls_ahead.LEAD_TESTS
    assert child.take("k3", 3) is None       # behind: the run makes it
    say(protocol.returned(0.5, "k0"))
    say(protocol.passed(0))
    jumped = told["test"]
    say(protocol.making(jumped, "kj"))
    say(protocol.returned(0.25, "kj"))
    child.reached(jumped - 1)
    assert child.take("k-between", jumped - 1) is None   # it skipped that test: no wait
    child.reached(jumped)
    answer = child.take("kj", jumped)
    assert answer is not None and answer.kind == "returned" and answer.message["value"] == 0.25
    assert child.ended is None


def test_a_child_far_ahead_waits_while_its_unread_answers_fill_the_bound(tmp_path, monkeypatch):
    """What the run has not read of the child's answers in shared memory is bounded: the child
    waits until the run has read (removed) enough of them."""
    import threading

    monkeypatch.setattr(calls_ahead, "MAX_UNREAD_BYTES", 100)
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(b"")
    new.write_bytes(b"")
    unread = [(str(old), 80), (str(new), 40)]
    reader = threading.Timer(0.2, old.unlink)
    started = time.monotonic()
    reader.start()
    calls_ahead._wait_for_the_run_to_read(unread)
    assert time.monotonic() - started >= 0.15
    assert unread == [(str(new), 40)]
    calls_ahead._wait_for_the_run_to_read(unread)     # within the bound: no wait
    assert unread == [(str(new), 40)]


def test_a_child_told_past_the_plans_end_says_it_finished_and_the_run_waits_for_nothing():
    """Told to skip beyond the last test, the child makes no more calls and says so: a run
    level with where the child stopped makes its calls itself at once (it waited out the
    timeout for a message that never came)."""
    import os
    from multiprocessing import Pipe

    from klconform.engine import wire
    from klconform.engine import worker_protocol as protocol

    run_end, child_end = Pipe()
    child_end.send_bytes(wire.encode(protocol.reached(5), os.getpid()))
    never_called = object()   # an adapter: any call on it would raise
    calls_ahead.make_ahead(never_called, ("impl", None),
                           {"tests": [("case", None, "float64")] * 3, "first": 0},
                           run_end, os.getpid())
    assert child_end.poll(5), "the child said nothing"
    said = protocol.checked(wire.decode(child_end.recv_bytes()), calls_ahead.KINDS)
    assert said["kind"] == "finished" and not child_end.poll(0)

    run_end, child_end = Pipe()
    child = calls_ahead.AheadChild(os.getpid(), run_end, timeout=60, first=0)
    for message in (protocol.making(0, "k0"), protocol.returned(0.5, "k0"), protocol.passed(0),
                    protocol.finished()):
        child_end.send_bytes(wire.encode(message, os.getpid()))
    child.reached(0)
    assert child.take("k0", 0).message["value"] == 0.5
    child.reached(1)
    started = time.monotonic()
    assert child.take("k1", 1) is None
    assert time.monotonic() - started < 1.0 and child.ended is None


def test_shares_split_a_plans_tests_by_dtype_in_turn():
    from klconform.engine.calls_ahead import shares_of

    plan = {"tests": [("case", "a", "float16"), ("case", "a", "float32"),
                      ("gradient", "a", "float16"), ("case", "b", "float64"),
                      ("case", "b", "bfloat16")]}
    assert shares_of(plan, 1) == [None]
    first, second = shares_of(plan, 2)
    assert first.dtypes == ("float16", "float64") and second.dtypes == ("float32", "bfloat16")
    assert [first.next_owned(test) for test in range(6)] == [0, 2, 2, 3, math.inf, math.inf]
    assert [second.next_owned(test) for test in range(6)] == [1, 1, 4, 4, 4, math.inf]


def test_a_child_with_a_share_is_waited_for_and_never_sent_past_the_run():
    """Behind the run on a test of its share, it is waited for (the run making those calls
    itself would compile their programs twice); its place moves over the tests of other
    shares."""
    import os
    import threading
    from multiprocessing import Pipe

    from klconform.engine import wire
    from klconform.engine import worker_protocol as protocol

    plan = {"tests": [("case", "a", "float16"), ("case", "a", "float32"),
                      ("case", "b", "float16")]}
    share = calls_ahead.Share(plan, ["float16"])
    run_end, child_end = Pipe()
    child = calls_ahead.AheadChild(os.getpid(), run_end, timeout=60, first=0, owned=share)

    def say(*messages):
        for message in messages:
            child_end.send_bytes(wire.encode(message, os.getpid()))

    say(protocol.making(0, "k0"))
    child.reached(2)
    assert child.at == 0 and not child_end.poll(0)    # behind, and told nothing
    later = threading.Timer(0.3, say, (protocol.returned(0.5, "k0"), protocol.passed(0),
                                       protocol.making(2, "k2"), protocol.returned(0.25, "k2")))
    later.start()
    started = time.monotonic()
    answer = child.take("k2", 2)
    later.join()
    assert time.monotonic() - started >= 0.25          # it waited for the child
    assert answer.message["value"] == 0.25 and child.at == 2
    say(protocol.passed(2))
    child.reached(2)
    assert child.at == math.inf                        # past its share's last test


def test_two_children_each_answer_the_tests_of_their_dtypes(fresh_pool):
    from klconform.engine.compile_ahead import planned_test

    spec = implementation_spec("torch")
    adapter = isolation.isolated(spec)
    case = next(case for case in load_cases() if case.profile != "thorough"
                and eligible(case) and {"float32", "float64"} <= set(case.dtypes))
    tests = [planned_test("gradient", case, dtype) for dtype in ("float64", "float32")]
    isolation.start_calls_ahead(spec, {**_plan(tests), "children": 2})
    for index, dtype in enumerate(("float64", "float32")):
        isolation.reached(index)
        assert evaluate_gradients(case, dtype, adapter).status == Status.PASSED
    summary = isolation.calls_ahead_summary()
    assert summary["children"] == 2 and summary["made_by_the_run"] == 0, summary
    assert summary["taken"] > 8, summary


def test_a_child_with_a_share_stuck_behind_the_run_is_not_waited_for_past_a_bound(monkeypatch):
    """Without a per-call timeout too: the call it is stuck in is of an earlier test, which
    the run will not take; the run makes its own calls once the bound has passed."""
    import os
    from multiprocessing import Pipe

    from klconform.engine import wire
    from klconform.engine import worker_protocol as protocol

    monkeypatch.setattr(calls_ahead, "BETWEEN_CALLS_S", 0.2)
    plan = {"tests": [("case", "a", "float16"), ("case", "b", "float16")]}
    run_end, child_end = Pipe()
    child = calls_ahead.AheadChild(os.getpid(), run_end, timeout=None, first=0,
                                   owned=calls_ahead.Share(plan, ["float16"]))
    child_end.send_bytes(wire.encode(protocol.making(0, "k0"), os.getpid()))
    child.reached(1)
    started = time.monotonic()
    assert child.take("k1", 1) is None
    assert 0.15 < time.monotonic() - started < 5
    assert child.ended == "it made no call of the run's test within 0.2 s"


def test_what_a_run_went_past_without_taking_it_is_kept_for_the_next_run():
    from klconform.engine import worker_protocol as protocol

    taken, passed_by, needed = (call_key("run", replace(BASE, reduction=reduction))
                                for reduction in ("sum", "mean", "none"))
    not_reached, in_the_last_test = "0" * 32, "1" * 32
    child, _ = _child_said(protocol.making(0, taken), protocol.returned(1.0, taken),
                           protocol.making(0, passed_by), protocol.returned(2.0, passed_by),
                           protocol.passed(0), protocol.making(1, taken),
                           protocol.returned(1.0, taken), protocol.passed(1),
                           protocol.making(2, in_the_last_test),
                           protocol.returned(3.0, in_the_last_test))
    plan = {"tests": [("case", name, "float64") for name in "abc"],
            "not_taken": frozenset({needed, not_reached})}
    ahead = calls_ahead.CallsAhead(("impl", None), plan, lambda plan, share: child,
                                   lambda child: None)
    ahead.reached(0, None)
    assert ahead.take("run", replace(BASE, reduction="sum")).message["value"] == 1.0
    ahead.reached(1, None)
    # Left out by the child as the last run did not take it, and needed now: the run's.
    assert ahead.take("run", replace(BASE, reduction="none")) is None
    ahead.reached(2, None)
    ahead.stop()
    # Taken in one test, answered in another: worth making ahead still; the last test's
    # calls may yet have been taken, had the run gone on.
    assert ahead.not_taken() == {passed_by, not_reached}
    assert calls_ahead.CallsAhead(("impl", None), {"tests": []}, None, None).not_taken() is None


def test_a_child_leaves_out_the_calls_the_last_run_did_not_take(fresh_pool):
    spec = implementation_spec("torch")
    adapter = isolation.isolated(spec)
    case, test = _gradient_test()
    planned = set(_planned("gradient", case, "float64", load_adapter("torch")))
    isolation.start_calls_ahead(spec, {**_plan([test]), "not_taken": frozenset(planned)})
    isolation.reached(0)
    outcome = evaluate_gradients(case, "float64", adapter)
    assert outcome.status == Status.PASSED
    summary = isolation.calls_ahead_summary()
    isolation.stop_calls_ahead()
    assert summary["taken"] == 0 and summary["made_by_the_run"] == len(planned), summary
    # Every one was needed: the next run's children make them all again.
    assert isolation.answers_not_taken() == set()
    assert isolation.answers_not_taken() is None   # said once
