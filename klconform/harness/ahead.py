"""Work done ahead of a run's tests: the oracle's while the call worker loads the library,
then the implementation's calls (engine.calls_ahead) or compilations (engine.compile_ahead)
in a second child, following one plan of the selected tests in the order they run.

Called by the plugin's hooks (harness.plugin); imports nothing heavy until asked.
"""

import os

import pytest

from klconform.constants import AUTO, OFF

# A test's place in the plan, stashed on its item: its setup tells the children where the
# run is.
PLANNED_INDEX = pytest.StashKey[int]()


def work_while_loading(config, state, kl_items):
    """The oracle's part of the tests (engine.planned_calls.worked_out_ahead), in their
    order, for as long as the call worker is importing the library: this process would
    otherwise wait idle (about a second for torch), and the tests then find it done. Not in
    an xdist worker, whose tests are handed out later and whose siblings share the cores."""
    from klconform.engine import isolation
    from klconform.engine.planned_calls import worked_out_ahead

    if hasattr(config, "workerinput") or not isolation.loading():
        return
    plan = run_plan(state, [planned for _, planned in planned_tests(kl_items)])
    key = None
    if makes_calls_ahead(state.settings):
        from klconform.engine.calls_ahead import call_key as key
    for _ in worked_out_ahead(state.adapter, plan, key):
        if not isolation.loading():
            return


def start_ahead(state, items):
    """Work on the run's calls ahead of them, following the plan (the selected tests in the
    order they run; each test's setup says where the run is): where a core is free for it,
    the calls themselves are made ahead (klconform.engine.calls_ahead; by two children, each
    with its own dtypes, where the implementation's library compiles each new shape); else,
    for such a library, its programs are compiled ahead in a second process
    (klconform.engine.compile_ahead)."""
    from klconform.adapters.convention import compiles_ahead
    from klconform.engine import isolation

    adapter, settings = state.adapter, state.settings
    if not isinstance(adapter, isolation.IsolatedAdapter):
        return
    local = adapter.local
    record, bridge = getattr(local, "record", None), getattr(local, "bridge", None)
    compiling = record is not None and bridge is not None and compiles_ahead(record, bridge)
    calling = makes_calls_ahead(settings)
    if not (calling or compiling and settings.compile_ahead == AUTO):
        return
    from klconform.engine import compile_ahead as ahead

    tests = []
    for item, planned in planned_tests(items):
        item.stash[PLANNED_INDEX] = len(tests)
        tests.append(planned)
    plan = run_plan(state, tests)
    if calling:
        from klconform.engine import answers_not_taken
        from klconform.engine.calls_ahead import COMPILING_CHILDREN

        plan["children"] = COMPILING_CHILDREN if compiling else 1
        if compiling and settings.compile_cache != OFF:
            # Kept beside its programs, where the children are what the run waits for.
            plan["not_taken"] = answers_not_taken.load(calls_identity(state))
        isolation.start_calls_ahead(adapter.spec, plan)
    else:
        ahead.start(adapter.spec, plan, os.environ)


def calls_identity(state):
    """What makes the calls a run's plan asks of its implementation, besides the tests
    selected (engine.answers_not_taken)."""
    spec, plan = state.adapter.spec, run_plan(state, [])
    return spec.impl, spec.convention, plan["device"], plan["max_examples"]


def keep_answers_not_taken(state):
    """After a run whose calls were made ahead: keep for the next run of the same
    implementation which of them it did not take (engine.answers_not_taken)."""
    from klconform.engine import answers_not_taken, isolation

    keys = isolation.answers_not_taken()
    if keys is not None:
        answers_not_taken.save(calls_identity(state), keys)


def run_plan(state, tests):
    """What is worked on ahead of the tests: `tests` (planned_tests()), the device, and the
    examples per property that the properties replay from the default profile's store;
    elsewhere they search afresh, and what they will call cannot be planned (None)."""
    settings = state.settings
    stored = settings.profile != "thorough" and settings.seed is None
    return {"tests": tests, "device": settings.device,
            "max_examples": state.hypothesis["max_examples"] if stored else None}


def planned_tests(items):
    """(item, compile_ahead.planned_test()) of each of the conformance tests `items` that
    will run, in order."""
    from klconform.engine.compile_ahead import planned_test
    from klconform.harness.identity import BY_ARGUMENT

    for item in items:
        if item.get_closest_marker("skip"):
            continue
        params = item.callspec.params
        suite = next(BY_ARGUMENT[name] for name in params if name in BY_ARGUMENT)
        yield item, planned_test(suite.kind, params[suite.argument], params["kl_dtype"])


def makes_calls_ahead(settings):
    """Whether the run's calls are made ahead of it (klconform.engine.calls_ahead): asked for,
    on the CPU (a GPU's runtime would start twice), and with a core of its own for the second
    child beside each pytest process, where it makes the run faster."""
    from klconform.machine import pytest_processes, usable_cores

    return settings.calls_ahead == AUTO and settings.device == "cpu" \
        and usable_cores() >= 2 * pytest_processes()
