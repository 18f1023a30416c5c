"""A case's own call, rounded once and judged by a kept oracle answer: every call still
gets arrays of its own, and only a call still holding them finds what was kept."""

from dataclasses import replace

import numpy as np
import pytest

from klconform.constants import REDUCTIONS
from klconform.engine import prepared
from klconform.engine.diagnosis import predictions
from klconform.engine.evaluate import make_call
from klconform.engine.expectations import oracle_for
from klconform.oracle import float64 as oracle
from klconform.spec.cases import load_cases


@pytest.fixture(autouse=True)
def nothing_kept():
    prepared.forget_all()
    yield
    prepared.forget_all()


@pytest.fixture
def case():
    return next(case for case in load_cases() if case.id == "batchmean-2d")


def _fresh_oracle(call, dtype=None):
    return oracle.expected(call.input, call.target, reduction=call.reduction or "mean",
                           log_target=bool(call.log_target), dtype=dtype or call.dtype,
                           mask=call.mask)


def test_each_call_gets_arrays_of_its_own(case):
    first = make_call(case, "float32", "cpu")
    before = first.input.copy()
    first.input[...] = 7.0  # an in-process function writing into its argument
    second = make_call(case, "float32", "cpu")
    assert second.input is not first.input
    np.testing.assert_array_equal(second.input, before)
    assert second.input.flags.writeable


def test_the_oracle_answer_is_kept_for_the_calls_own_arrays(case):
    call = make_call(case, "float32", "cpu")
    kept = oracle_for(call)
    assert oracle_for(call) is kept
    assert oracle_for(make_call(case, "float32", "cpu")) is kept
    assert not kept.budget.flags.writeable and not np.asarray(kept.value).flags.writeable
    np.testing.assert_array_equal(kept.value, _fresh_oracle(call).value)
    np.testing.assert_array_equal(kept.budget, _fresh_oracle(call).budget)


def test_what_else_the_answer_depends_on_is_part_of_the_key(case):
    call = make_call(case, "float32", "cpu")
    oracle_for(call)
    for other in (replace(call, reduction="sum"), replace(call, log_target=True)):
        np.testing.assert_array_equal(oracle_for(other).value, _fresh_oracle(other).value)
    np.testing.assert_array_equal(oracle_for(call, dtype="float64").budget,
                                  _fresh_oracle(call, "float64").budget)
    assert oracle_for(call, dtype="float64").budget != oracle_for(call).budget


def test_a_call_whose_arrays_were_replaced_is_worked_out_afresh(case):
    call = make_call(case, "float32", "cpu")
    kept = oracle_for(call)
    stepped = replace(call, input=call.input - 0.5)
    assert oracle_for(stepped).value != kept.value
    np.testing.assert_array_equal(oracle_for(stepped).value, _fresh_oracle(stepped).value)
    # Arrays handed out for two different dtypes together, or another mask: nothing kept
    # applies.
    other = make_call(case, "float64", "cpu")
    assert prepared._entry_of(replace(call, target=other.target)) is None
    assert prepared._entry_of(replace(call, mask=np.ones(call.input.shape[:-1], bool))) is None


def test_the_kept_answer_is_the_one_for_the_values_handed_out(case):
    """Worked out on the kept arrays: a function that wrote into its argument before the
    oracle was asked does not move the expected value."""
    call = make_call(case, "float32", "cpu")
    untouched = _fresh_oracle(call).value
    call.input[...] = 0.0
    np.testing.assert_array_equal(oracle_for(call).value, untouched)


def test_a_dead_calls_arrays_leave_the_registry(case):
    call = make_call(case, "float32", "cpu")
    ids = {id(call.input), id(call.target)}
    assert ids <= set(prepared._HANDED_OUT)
    del call
    assert not ids & set(prepared._HANDED_OUT)


def test_kept_bytes_stay_within_the_bound(monkeypatch):
    cases = [case for case in load_cases() if case.profile != "thorough"
             and case.kind == "value" and case.call.get("reduction") in REDUCTIONS][:40]
    one = make_call(cases[0], "float64", "cpu")
    monkeypatch.setattr(prepared, "KEPT_BYTES", 4 * (one.input.nbytes + one.target.nbytes))
    for each in cases:
        call = make_call(each, "float64", "cpu")
        np.testing.assert_array_equal(oracle_for(call).value, _fresh_oracle(call).value)
        assert prepared._KEPT_NBYTES <= prepared.KEPT_BYTES or len(prepared._KEPT) == 1
    assert prepared._KEPT_NBYTES == sum(entry.nbytes for entry in prepared._KEPT.values())
    assert len(prepared._KEPT) < len(cases)


def test_an_evicted_case_is_rounded_again_to_the_same_values(monkeypatch, case):
    first = make_call(case, "bfloat16", "cpu")
    monkeypatch.setattr(prepared, "KEPT_BYTES", 0)
    make_call(next(each for each in load_cases() if each.id != case.id), "float32", "cpu")
    assert len(prepared._KEPT) == 1
    again = make_call(case, "bfloat16", "cpu")
    np.testing.assert_array_equal(again.input, first.input)
    np.testing.assert_array_equal(again.target, first.target)


def test_a_result_too_large_to_keep_is_handed_out_writable(monkeypatch, case):
    call = make_call(case, "float32", "cpu")
    monkeypatch.setattr(prepared, "KEPT_BYTES", 8)
    correct, found = predictions(replace(call, reduction="none"), "none")
    assert correct.flags.writeable
    assert not any(key[0] == "diagnosis" for entry in prepared._KEPT.values()
                   for key in entry.derived)


def test_an_evicted_entrys_calls_are_still_judged_and_keep_nothing_more(monkeypatch, case):
    call = make_call(case, "float32", "cpu")
    monkeypatch.setattr(prepared, "KEPT_BYTES", 0)
    make_call(next(each for each in load_cases() if each.id != case.id), "float32", "cpu")
    assert prepared._entry_of(call) is not None and len(prepared._KEPT) == 1
    monkeypatch.setattr(prepared, "KEPT_BYTES", 2**30)
    np.testing.assert_array_equal(oracle_for(call).value, _fresh_oracle(call).value)
    assert prepared._KEPT_NBYTES == sum(entry.nbytes for entry in prepared._KEPT.values())


class _DoubledGradients:
    """torch's KL with its gradients doubled (its value right), its forward calls counted;
    `observation_key` as the run's IsolatedAdapter names its implementation, or None; the
    first `raising` forward calls raise."""

    def __init__(self, adapter, observation_key, raising=0):
        self._adapter = adapter
        self.observation_key = observation_key
        self.forward = 0
        self.raising = raising

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def run(self, call):
        self.forward += 1
        if self.forward <= self.raising:
            raise RuntimeError("not this time")
        return self._adapter.run(call)

    def run_gradients(self, call):
        return tuple(None if gradient is None else 2 * gradient
                     for gradient in self._adapter.run_gradients(call))


@pytest.mark.parametrize("key, raising, again", [
    (("torch", None), 0, 0),    # the value test's observation judged again
    (None, 0, 2),               # an adapter that names no implementation: called each time
    # The value test's call raised: nothing kept, the gradient test makes it, once.
    (("torch", None), 1, 1),
], ids=["kept", "no-key", "raised"])
def test_a_failing_gradient_test_judges_the_value_its_value_test_observed(case, key, raising,
                                                                          again):
    pytest.importorskip("torch")
    from klconform.adapters import load_adapter
    from klconform.engine.evaluate import evaluate
    from klconform.engine.gradients import evaluate_gradients

    adapter = _DoubledGradients(load_adapter("torch"), key, raising)
    value = evaluate(case, "float64", adapter)
    assert value.status == ("errored" if raising else "passed")
    made = adapter.forward
    gradients = evaluate_gradients(case, "float64", adapter)
    assert gradients.status == "failed"
    assert {"gradient-input", "gradient-target"} <= set(gradients.claims)
    assert adapter.forward - made == again
