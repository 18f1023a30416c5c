"""The default profile's stored property examples: what they hold, and that replaying them
decides exactly what Hypothesis's search decides."""

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from klconform.adapters.numpy_adapter import NumpyAdapter
from klconform.dtypes import DTYPES
from klconform.engine import properties, stored_examples
from klconform.engine.call_errors import CallNotRun
from klconform.harness.hypothesis_profiles import DEFAULT_EXAMPLES, configure

TOOL = Path(__file__).resolve().parents[1] / "tools" / "store_property_examples.py"


def _tool():
    spec = importlib.util.spec_from_file_location("store_property_examples", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def default_profile():
    configure("default")


def _same_example(first, second):
    return (first.dtype, first.reduction, first.log_target, first.kind, first.draws) == (
        second.dtype, second.reduction, second.log_target, second.kind, second.draws) and all(
        np.array_equal(a, b) for a, b in ((first.input, second.input),
                                          (first.target, second.target))) and (
        first.extra.keys() == second.extra.keys()) and all(
        np.array_equal(first.extra[key], second.extra[key]) for key in first.extra)


def test_every_builtin_drawing_is_stored_and_nothing_else(default_profile):
    wanted = set(_tool().drawings())
    _, examples, entries = stored_examples._store()
    assert examples == DEFAULT_EXAMPLES
    assert wanted == set(entries), (
        f"missing {len(wanted - set(entries))}, stale {len(set(entries) - wanted)}: "
        f"run python tools/store_property_examples.py")


def test_stored_examples_are_what_the_installed_hypothesis_draws(default_profile):
    import hypothesis

    stored_with = stored_examples.hypothesis_version()
    assert hypothesis.__version__ == stored_with, (
        f"the examples were stored with hypothesis {stored_with}: install with "
        f"-c constraints.txt, or store them again (tools/store_property_examples.py)")
    adapter = NumpyAdapter()
    for prop in properties.PROPERTIES:
        for dtype in ("float64", "float16"):
            if prop.unsupported(adapter, dtype, "cpu"):
                continue
            drawing = prop.drawing(adapter, dtype, "cpu")
            drawn = properties.drawn_examples(prop, drawing, dtype)
            stored = stored_examples.stored_draws(prop.id, dtype, drawing.as_data(),
                                                  DEFAULT_EXAMPLES)
            assert stored is not None, (prop.id, dtype)
            assert len(drawn) == len(stored), (prop.id, dtype)
            for example, draws in zip(drawn, stored, strict=True):
                # JSON has no tuples: compare as the file holds them.
                assert json.loads(json.dumps(example.draws)) == draws, (prop.id, dtype)
                assert _same_example(example, drawing.example(dtype, draws)), (prop.id, dtype)


@pytest.mark.slow
def test_the_tool_writes_the_committed_file_again(tmp_path):
    written = tmp_path / "stored.json"
    subprocess.run([sys.executable, str(TOOL), "--output", str(written)], check=True,
                   capture_output=True, cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": str(TOOL.parents[1])})
    assert written.read_bytes() == stored_examples.STORE.read_bytes()


class _WrongOnSomeSums(NumpyAdapter):
    """'sum' is off by 1% on inputs of more than 8 elements: a bug the search meets and
    shrinks."""

    def compute(self, call):
        observation = super().compute(call)
        if call.reduction == "sum" and call.input.size > 8:
            return replace(observation, value=observation.value * 1.01)
        return observation


def _outcome(outcome):
    return json.dumps(vars(outcome), default=str, sort_keys=True)


@pytest.mark.parametrize("adapter", [NumpyAdapter(), _WrongOnSomeSums()],
                         ids=["correct", "wrong"])
def test_replaying_decides_what_the_search_decides(default_profile, monkeypatch, adapter):
    searched = searches(monkeypatch)
    outcomes = {}
    for prop_id in ("sum-equals-none-sum", "mean-equals-sum-over-numel"):
        prop = properties.BY_ID[prop_id]
        replayed = properties.run_property(prop, adapter, "float32")
        with monkeypatch.context() as patched:
            patched.setattr(properties, "_stored_examples", lambda *args: None)
            outcomes[prop_id] = properties.run_property(prop, adapter, "float32")
        assert _outcome(replayed) == _outcome(outcomes[prop_id])
    if isinstance(adapter, _WrongOnSomeSums):
        assert outcomes["sum-equals-none-sum"].status == "failed"
        # The failing stored example goes to Hypothesis, which shrinks it.
        assert searched.count("sum-equals-none-sum") == 2
    else:
        assert all(outcome.status == "passed" for outcome in outcomes.values())
        # Only the runs with the store switched off searched.
        assert len(searched) == 2


def test_a_failing_stored_example_fails_where_the_search_finds_nothing(default_profile,
                                                                        monkeypatch):
    # Another Hypothesis version draws other examples, none of which may fail: the stored
    # example that failed is still the finding.
    monkeypatch.setattr(properties, "_hypothesis_test",
                        lambda *args: lambda: None)
    outcome = properties.run_property(properties.BY_ID["sum-equals-none-sum"],
                                      _WrongOnSomeSums(), "float32")
    assert outcome.status == "failed"
    assert "reduction-sum" in outcome.claim_results
    assert outcome.claim_results["reduction-sum"] == "failed"


def test_an_example_replaced_in_the_replay_hands_the_property_to_the_search(default_profile,
                                                                            monkeypatch):
    searched = searches(monkeypatch)
    observe = properties.ExampleRun.observe
    refused = []

    def refuse_the_first(self, call, label):
        if not refused:
            refused.append(call)
            self.refused += 1
            raise properties.ExampleReplaced("not run")
        return observe(self, call, label)

    monkeypatch.setattr(properties.ExampleRun, "observe", refuse_the_first)
    outcome = properties.run_property(properties.BY_ID["none-keeps-shape"], NumpyAdapter(),
                                      "float64")
    assert searched == ["none-keeps-shape"]
    assert outcome.status == "passed"
    # Counted once, by the search, not again for the replay.
    assert "not run" not in (outcome.message or "")


class _BreakerOpen(NumpyAdapter):
    """Calls as the run's adapter makes them once the call worker's circuit breaker is open
    for inputs of `refused_ranks` dimensions: not made."""

    def __init__(self, refused_ranks):
        super().__init__()
        self.refused_ranks = refused_ranks

    def run(self, call):
        if np.ndim(call.input) in self.refused_ranks:
            raise CallNotRun(f"not run: the implementation crashed on 2 calls in a row with "
                             f"{np.ndim(call.input)}-d inputs")
        return super().run(call)


def searches(monkeypatch):
    """The property ids Hypothesis's search runs for from now on, as a list it fills."""
    searched = []
    original = properties._hypothesis_test
    monkeypatch.setattr(properties, "_hypothesis_test",
                        lambda *args: searched.append(args[0]) or original(*args))
    return searched


def test_a_stored_example_the_breaker_refuses_is_left_out_and_the_replay_goes_on(
        default_profile, monkeypatch):
    searched = searches(monkeypatch)
    prop = properties.BY_ID["none-keeps-shape"]
    stored = list(properties.replayed_examples(prop, prop.drawing(NumpyAdapter(), "float64",
                                                                  "cpu"),
                                               "float64", DEFAULT_EXAMPLES))
    two_dimensional = sum(np.ndim(example.input) == 2 for example in stored)
    assert 0 < two_dimensional < len(stored)
    outcome = properties.run_property(prop, _BreakerOpen({2}), "float64")
    # A search for replacements would draw through the refused kind again and again.
    assert searched == []
    assert outcome.status == "passed"
    assert f"so {two_dimensional} of the stored examples were left out" in outcome.message


def test_a_property_whose_every_call_the_breaker_refused_checked_nothing_and_errs(
        default_profile, monkeypatch):
    searched = searches(monkeypatch)
    prop = properties.BY_ID["none-keeps-shape"]
    replayed = properties.run_property(prop, _BreakerOpen(range(8)), "float64")
    # Seeded: Hypothesis searches, and rejects every example it draws.
    searching = properties.run_property(prop, _BreakerOpen(range(8)), "float64", seed=3)
    assert searched == ["none-keeps-shape"]
    for outcome in (replayed, searching):
        assert outcome.status == "errored", (outcome.status, outcome.message)
        assert set(outcome.claim_results.values()) == {"errored"}
        assert outcome.checks[0].startswith("klconform raised CallNotRun on the ")
        assert "crashed on 2 calls in a row" in outcome.checks[0]
        assert outcome.checks[0].endswith("; no example was checked: the call(s) of every "
                                          "example were not run")


def test_seeded_and_other_sized_searches_are_not_replayed(default_profile, monkeypatch):
    searched = []
    original = properties._hypothesis_test
    monkeypatch.setattr(properties, "_hypothesis_test",
                        lambda *args: searched.append(args[2]) or original(*args))
    prop = properties.BY_ID["none-keeps-shape"]
    properties.run_property(prop, NumpyAdapter(), "float64", seed=11)
    configure("default", max_examples=5)
    try:
        properties.run_property(prop, NumpyAdapter(), "float64")
    finally:
        configure("default")
    properties.run_property(prop, NumpyAdapter(), "float64")
    assert searched == [11, None]


def test_a_store_entry_without_draws_is_refused_by_name(tmp_path):
    store = tmp_path / "stored.json"
    store.write_text(json.dumps({"format": stored_examples.FORMAT, "hypothesis": "0",
                                 "examples": 25, "entries": [
                                     {"property": "asymmetric", "dtype": "float16",
                                      "drawing": {}, "draws": []}]}))
    with pytest.raises(stored_examples.StoreError, match=r"entry 0 \(asymmetric, float16\) "
                                                         r"has no draws"):
        stored_examples.stored_draws("asymmetric", "float16", {}, 25, path=store)
    store.write_text('{"format": 99}')
    stored_examples._store.cache_clear()
    with pytest.raises(stored_examples.StoreError, match="not a stored-examples file"):
        stored_examples.stored_draws("asymmetric", "float16", {}, 25, path=store)


def test_every_dtype_of_the_numpy_record_replays(default_profile):
    adapter = NumpyAdapter()
    for prop in properties.PROPERTIES:
        for dtype in DTYPES:
            if prop.unsupported(adapter, dtype, "cpu"):
                continue
            assert properties._stored_examples(prop, prop.drawing(adapter, dtype, "cpu"),
                                               dtype, None) is not None, (prop.id, dtype)


def test_listing_the_builtin_drawings_leaves_this_process_as_it_was():
    from klconform.adapters import convention

    check_installed, environment = convention._check_installed, dict(os.environ)
    _tool().drawings()
    assert convention._check_installed is check_installed
    assert dict(os.environ) == environment


def _manifest(claims, dtypes=None):
    from klconform.spec.deviations import Deviation, Manifest

    return Manifest([Deviation(claim, "owned up to", None, dtypes) for claim in claims])


def test_a_failure_owned_as_a_known_deviation_is_reported_unshrunk(default_profile,
                                                                    monkeypatch):
    from klconform.constants import SHRUNK_EXAMPLE, UNSHRUNK_EXAMPLE
    from klconform.statuses import FAILING

    searched = searches(monkeypatch)
    prop, adapter = properties.BY_ID["sum-equals-none-sum"], _WrongOnSomeSums()
    shrunk = properties.run_property(prop, adapter, "float32")
    failing = [claim for claim, status in shrunk.claim_results.items() if status in FAILING]
    assert failing and SHRUNK_EXAMPLE in shrunk.diagnosis and searched
    searched.clear()
    owned = properties.run_property(prop, adapter, "float32", deviations=_manifest(failing))
    assert not searched
    assert UNSHRUNK_EXAMPLE in owned.diagnosis and SHRUNK_EXAMPLE not in owned.diagnosis
    assert (owned.status, owned.claim_results) == (shrunk.status, shrunk.claim_results)
    # The first stored example that fails, as the replay met it.
    for example in properties._stored_examples(prop, prop.drawing(adapter, "float32", "cpu"),
                                               "float32", None):
        probe = properties.ExampleRun(adapter, example, "cpu", list(prop.claims),
                                      attribute=False)
        prop.check(probe, example)
        if probe.failures:
            break
    assert f"{UNSHRUNK_EXAMPLE}{example!r}" in owned.diagnosis


@pytest.mark.parametrize("deviations", [
    _manifest(["log-target"]),                               # another claim
    _manifest(["reduction-sum", "none-pointwise", "elementwise"], dtypes=["float16"]),
], ids=["other-claim", "other-dtype"])
def test_a_failure_not_owned_is_still_shrunk(default_profile, monkeypatch, deviations):
    from klconform.constants import SHRUNK_EXAMPLE

    searched = searches(monkeypatch)
    prop, adapter = properties.BY_ID["sum-equals-none-sum"], _WrongOnSomeSums()
    outcome = properties.run_property(prop, adapter, "float32", deviations=deviations)
    assert searched and SHRUNK_EXAMPLE in outcome.diagnosis
    assert _outcome(outcome) == _outcome(properties.run_property(prop, adapter, "float32"))
