"""What a run works out while the call worker imports the library
(engine.planned_calls.worked_out_ahead): the oracle's answers its tests will ask for, kept by
engine.prepared. A test then asks the oracle nothing more, and its verdict is the one it
gives without them, for a right function and for wrong ones."""

from dataclasses import asdict

import numpy as np
import pytest

from klconform.adapters import load_adapter
from klconform.engine import expectations, gradients, prepared, properties
from klconform.engine.evaluate import evaluate
from klconform.engine.planned_calls import worked_out_ahead
from klconform.harness.hypothesis_profiles import DEFAULT_EXAMPLES
from klconform.oracle import float64 as oracle
from klconform.spec.cases import load_cases

CASES = {case.id: case for case in load_cases()}
# A relation (two calls), a mask-free 'batchmean', the one summation-accuracy case.
CASE_IDS = ("mean-divides-by-numel", "batchmean-2d", "large-vocab-summation-accuracy")


@pytest.fixture(autouse=True)
def nothing_kept():
    def forget():
        prepared.forget_all()
        properties.forget_replayed()
    forget()
    yield
    forget()


@pytest.fixture(scope="module")
def torch_adapter():
    return load_adapter("torch")


def _plan(*tests):
    return {"tests": list(tests), "device": "cpu", "max_examples": DEFAULT_EXAMPLES}


def _counting(monkeypatch, module, name):
    counted = []
    original = getattr(module, name)

    def count(*args, **kwargs):
        counted.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, count)
    return counted


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_a_case_worked_out_ahead_asks_the_oracle_nothing_more(monkeypatch, torch_adapter,
                                                              case_id):
    case = CASES[case_id]
    list(worked_out_ahead(torch_adapter, _plan(("case", case, "float32"))))
    asked = _counting(monkeypatch, oracle, "expected") + \
        _counting(monkeypatch, oracle, "pointwise")
    outcome = evaluate(case, "float32", torch_adapter)
    assert outcome.status == "passed", outcome.checks
    assert asked == []


def test_without_it_the_same_case_asks_the_oracle(monkeypatch, torch_adapter):
    """The counting above can fail: the same evaluation, nothing worked out first."""
    asked = _counting(monkeypatch, oracle, "expected")
    evaluate(CASES["batchmean-2d"], "float32", torch_adapter)
    assert asked


def test_a_gradient_test_worked_out_ahead_asks_the_oracle_nothing_more(monkeypatch,
                                                                       torch_adapter):
    case = CASES["batchmean-2d"]
    list(worked_out_ahead(torch_adapter, _plan(("gradient", case, "float64"))))
    asked = _counting(monkeypatch, oracle, "expected") + \
        _counting(monkeypatch, gradients, "analytic") + \
        _counting(monkeypatch, gradients, "_budgets")
    outcome = gradients.evaluate_gradients(case, "float64", torch_adapter)
    assert outcome.status == "passed", outcome.checks
    assert asked == []


def test_the_kept_gradients_are_the_plans_own(torch_adapter):
    """A distillation plan's T**2 scale and logits change the analytic gradients: what was
    kept for one plan is not handed to another."""
    from dataclasses import replace

    from klconform.engine.evaluate import make_call

    call = make_call(CASES["batchmean-2d"], "float64", "cpu")
    plan = torch_adapter.plan(call)
    scaled = replace(plan, scale=4.0)
    logits = replace(plan, logits_gradients=("input",))
    for each in (plan, scaled, logits, plan):
        (want_input, _, _), (budget_input, _) = gradients._wanted(call, each)
        np.testing.assert_array_equal(want_input, gradients.analytic(call, each)[0])
        np.testing.assert_array_equal(budget_input, gradients._budgets(call, each)[0])
    kept = [key for entry in prepared._KEPT.values() for key in entry.derived
            if key[0] == "gradients"]
    assert len(kept) == 3


def test_one_step_per_test_so_the_run_can_stop_between_them(torch_adapter):
    first, second = CASES["batchmean-2d"], CASES["mean-divides-by-numel"]
    steps = worked_out_ahead(torch_adapter, _plan(("case", first, "float32"),
                                                  ("case", second, "float32")))
    next(steps)
    assert {id(entry.case) for entry in prepared._KEPT.values()} == {id(first)}
    next(steps)
    assert id(second) in {id(entry.case) for entry in prepared._KEPT.values()}


def test_an_error_in_one_test_leaves_it_to_that_test(monkeypatch, torch_adapter):
    first, second = CASES["batchmean-2d"], CASES["mean-divides-by-numel"]

    def broken(*args, **kwargs):
        raise ValueError("the oracle cannot do this one")

    original = oracle.expected
    monkeypatch.setattr(oracle, "expected", broken)
    steps = worked_out_ahead(torch_adapter, _plan(("case", first, "float32"),
                                                  ("case", second, "float32")))
    next(steps)
    monkeypatch.setattr(oracle, "expected", original)
    next(steps)
    assert id(second) in {id(entry.case) for entry in prepared._KEPT.values()}


def _replayed(property_id, dtype, adapter):
    prop = properties.BY_ID[property_id]
    drawing = prop.drawing(adapter, dtype, "cpu")
    return prop, drawing, properties.replayed_examples(prop, drawing, dtype, DEFAULT_EXAMPLES)


def test_a_replayed_example_is_made_once_and_read_only(torch_adapter):
    _, _, first = _replayed("sum-equals-none-sum", "float32", torch_adapter)
    _, _, again = _replayed("sum-equals-none-sum", "float32", torch_adapter)
    first, again = list(first), list(again)
    assert len(first) == DEFAULT_EXAMPLES
    assert all(a is b for a, b in zip(first, again, strict=True))
    example = first[0]
    with pytest.raises(ValueError):
        example.input[...] = 0.0


def test_only_a_replayed_examples_own_arrays_are_kept(torch_adapter):
    _, drawing, examples = _replayed("log-target-equivalence", "float32", torch_adapter)
    example = next(iter(examples))
    run = properties.ExampleRun(torch_adapter, example, "cpu")
    own = run.call()
    made_for_the_call = run.call(target=np.exp(example.target), log_target=False)
    assert prepared._entry_of(own) is not None
    assert prepared._entry_of(made_for_the_call) is None
    # The same example made afresh (a search's draw) is not the replayed one.
    fresh = drawing.example(example.dtype, example.draws)
    assert prepared._entry_of(properties.ExampleRun(torch_adapter, fresh, "cpu").call()) is None
    np.testing.assert_array_equal(expectations.oracle_for(own).value,
                                  expectations.oracle_for(run.call()).value)


def test_a_property_worked_out_ahead_asks_the_oracle_nothing_more(monkeypatch, torch_adapter):
    prop, _, examples = _replayed("sum-equals-none-sum", "float32", torch_adapter)
    list(worked_out_ahead(torch_adapter, _plan(("property", prop.id, "float32"))))
    asked = _counting(monkeypatch, oracle, "expected")
    for example in examples:
        run = properties.ExampleRun(torch_adapter, example, "cpu", attribute=False)
        prop.check(run, example)
        assert not run.failures
    assert asked == []


MUTANTS = ("batchmean_divides_by_numel", "in_bits", "roles_swapped", "log_target_ignored",
           "terms_clamped")


@pytest.mark.parametrize("mutant", MUTANTS)
def test_a_wrong_functions_verdicts_do_not_depend_on_it(mutant):
    """Kept answers are read-only and keyed by all they depend on: every outcome of a wrong
    function is the same, field by field, with the run's oracle work done first or not."""
    adapter = load_adapter(f"tests.mutants:{mutant}")
    case_ids = CASE_IDS[:2] + ("log-target-pointwise",)
    tests = [(kind, CASES[case_id], dtype) for case_id in case_ids
             for dtype in ("float32", "bfloat16") for kind in ("case", "gradient")]

    def outcomes():
        return [asdict(evaluate(case, dtype, adapter) if kind == "case"
                       else gradients.evaluate_gradients(case, dtype, adapter))
                for kind, case, dtype in tests]

    alone = outcomes()
    prepared.forget_all()
    list(worked_out_ahead(adapter, _plan(*tests)))
    assert outcomes() == alone
    assert any(outcome["status"] == "failed" for outcome in alone)


def test_with_a_key_the_digests_of_a_cases_arrays_are_worked_out_too(torch_adapter):
    """The run takes answers made ahead by their key (engine.calls_ahead.call_key): the
    vocabulary-sized case's digests are then kept before its tests run."""
    from klconform.engine.calls_ahead import call_key

    case = CASES["large-vocab-summation-accuracy"]
    list(worked_out_ahead(torch_adapter, _plan(("case", case, "float32"))))
    assert not any(entry.digests for entry in prepared._KEPT.values())
    list(worked_out_ahead(torch_adapter, _plan(("case", case, "float32")), key=call_key))
    assert any(entry.digests for entry in prepared._KEPT.values())


def test_a_run_works_out_only_its_selected_tests_and_a_collection_none(pytester, monkeypatch):
    """The plugin works out the tests left after -k, in their order, while the call worker
    loads (here: for as long as it asks), and nothing for --collect-only."""
    from klconform.engine import isolation, planned_calls
    from tests.suite_runner import run_suite

    seen = []
    original = planned_calls.worked_out_ahead

    def recording(adapter, plan, key=None):
        seen.extend(plan["tests"])
        yield from original(adapter, plan, key)

    monkeypatch.setattr(planned_calls, "worked_out_ahead", recording)
    monkeypatch.setattr(isolation, "loading", lambda: True)
    run = run_suite(pytester, "numpy", "--co", "-q", suites=("test_cases.py",))
    assert run.result.ret == 0 and seen == []
    run = run_suite(pytester, "numpy", "-k", "batchmean-2d",
                    suites=("test_cases.py", "test_gradients.py"))
    assert run.result.ret == 0, run.output[-2000:]
    assert seen and all("batchmean-2d" in getattr(subject, "id", "") for _, subject, _ in seen)
    assert {kind for kind, _, _ in seen} == {"case", "gradient"}
    assert run.report["summary"]["failed"] == 0


@pytest.mark.parametrize("mutant", ("batchmean_divides_by_numel", "log_target_ignored",
                                    "terms_clamped"))
def test_a_wrong_functions_properties_do_not_depend_on_it(mutant):
    """The same for the properties, whose replayed examples are made once and whose own
    arrays' answers are kept: every outcome the same, field by field."""
    from klconform.harness.hypothesis_profiles import configure

    configure("default")
    adapter = load_adapter(f"tests.mutants:{mutant}")
    tests = [("property", prop.id, dtype) for prop in properties.PROPERTIES
             for dtype in ("float32", "float64")]

    def outcomes():
        return [asdict(properties.run_property(properties.BY_ID[subject], adapter, dtype))
                for _, subject, dtype in tests]

    alone = outcomes()
    prepared.forget_all()
    properties.forget_replayed()
    list(worked_out_ahead(adapter, _plan(*tests)))
    assert outcomes() == alone
    assert any(outcome["status"] == "failed" for outcome in alone)
