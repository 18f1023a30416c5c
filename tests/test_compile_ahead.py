"""Compiling ahead (klconform.engine.compile_ahead): the second child makes the calls the
run makes, and nothing it does outlives the run or reaches a result."""

import os
import socket

import pytest

from klconform.adapters import load_adapter
from klconform.engine import compile_ahead
from klconform.engine.compile_ahead_worker import _signature
from klconform.engine.evaluate import evaluate
from klconform.engine.gradients import evaluate_gradients
from klconform.engine.layout_checks import evaluate_layouts
from klconform.engine.planned_calls import calls_of
from klconform.engine.properties import PROPERTIES, run_property
from klconform.engine.worker_protocol import implementation_spec
from klconform.harness.hypothesis_profiles import configure
from klconform.spec.cases import load_cases


class Recording:
    """An adapter as it is, its calls' signatures noted."""

    def __init__(self, adapter):
        self._adapter = adapter
        self.made = set()

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def run(self, call):
        self.made.add(("run", _signature(call)))
        return self._adapter.run(call)

    def run_gradients(self, call):
        self.made.add(("run_gradients", _signature(call)))
        return self._adapter.run_gradients(call)


def _rehearsed(kind, subjects, dtype, adapter, max_examples=None):
    plan = {"device": "cpu", "max_examples": max_examples}
    return {(method, _signature(call)) for subject in subjects
            for method, call in calls_of(kind, subject, dtype, adapter, plan)
            if not adapter.plan(call).unsupported}


@pytest.mark.parametrize("implementation", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_case_gradient_and_layout_tests_are_rehearsed_with_the_calls_the_run_makes(
        implementation, dtype):
    from klconform.engine.gradients import eligible
    from klconform.statuses import Status

    adapter = Recording(load_adapter(implementation))
    cases = [case for case in load_cases() if case.profile != "thorough"]
    for kind, evaluated in (("case", evaluate), ("gradient", evaluate_gradients),
                            ("layout", evaluate_layouts)):
        # Gradient and layout tests are made of the eligible cases only.
        for case in cases if kind == "case" else filter(eligible, cases):
            adapter.made = set()
            outcome = evaluated(case, dtype, adapter)
            rehearsed = _rehearsed(kind, [case], dtype, adapter)
            assert adapter.made <= rehearsed, (kind, case.id)
            if kind != "gradient" and adapter.made != rehearsed:
                # Only where the run decided, from the record alone, not to call at all.
                assert not adapter.made and outcome.status == Status.UNSUPPORTED, case.id


def test_every_property_is_rehearsed_with_the_calls_the_run_makes():
    recorded = configure("default")
    adapter = Recording(load_adapter("numpy"))
    for prop in PROPERTIES:
        adapter.made = set()
        run_property(prop, adapter, "float32")
        assert adapter.made, prop.id
        assert adapter.made == _rehearsed("property", [prop.id], "float32", adapter,
                                          recorded["max_examples"]), prop.id


def test_a_searching_profile_rehearses_no_property():
    adapter = load_adapter("numpy")
    assert not _rehearsed("property", [PROPERTIES[0].id], "float32", adapter, None)


def test_the_second_child_is_killed_and_its_folder_removed_when_the_run_ends(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setattr(compile_ahead, "_compiled_ahead", compile_ahead._CompiledAhead())
    compile_ahead.keep_in(str(tmp_path))
    spec = implementation_spec("numpy")
    environment = compile_ahead.worker_environment({})
    programs = environment[compile_ahead.COMPILED_AHEAD_VARIABLE]
    run = os.path.dirname(environment[compile_ahead.COMPILED_HERE_VARIABLE])
    assert not os.path.exists(run)   # named for the call worker, made only to compile ahead
    runs = os.path.dirname(run)
    host = socket.gethostname()
    ended = os.path.join(runs, f"{host}-999999999-0")   # no such process
    elsewhere = os.path.join(runs, "another-host-999999999-0")   # its processes are not seen
    for folder in (ended, elsewhere):
        os.makedirs(folder)
    compile_ahead.start(spec, {"tests": [], "device": "cpu", "max_examples": None},
                        dict(os.environ))
    assert os.path.isdir(run) and os.path.isdir(programs)
    assert not os.path.exists(ended)   # a run killed outright: its folder goes at the next
    assert os.path.exists(elsewhere)
    child = compile_ahead._compiled_ahead.process
    compile_ahead.reached(3)
    with open(os.path.join(run, compile_ahead.PROGRESS), "rb") as handle:
        assert int(handle.read()) == 3
    compile_ahead.stop()
    assert child.poll() is not None
    assert not os.path.exists(run)
    assert os.path.isdir(programs)   # kept for the next run


def test_a_run_compiles_ahead_only_for_a_record_that_asks_and_can(monkeypatch):
    from klconform.adapters.arrays import bridge
    from klconform.adapters.convention import compiles_ahead
    from klconform.spec.conventions import load_record

    records = resources_records()
    jax_record = load_record(records / "jax.yaml")
    assert compiles_ahead(jax_record, bridge("jax"))
    assert not compiles_ahead(load_record(records / "numpy.yaml"), bridge("numpy"))
    # The user's own jax cache is theirs: nothing is compiled ahead into another.
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/somewhere")
    assert not compiles_ahead(jax_record, bridge("jax"))


def resources_records():
    from pathlib import Path

    import klconform.adapters

    return Path(klconform.adapters.__file__).parent / "records"
