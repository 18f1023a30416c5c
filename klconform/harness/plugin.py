"""The pytest plugin: options, case parametrization, fixtures, and the report at the end.

Registered through the `pytest11` entry point, so it loads in every pytest run where
klconform is installed. It stays inert (no case loading, no torch import) unless a
collected test asks for a klconform fixture.
"""

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from klconform.constants import AUTO
from klconform.errors import KLConformError
from klconform.harness.ahead import (
    PLANNED_INDEX,
    keep_answers_not_taken,
    makes_calls_ahead,
    start_ahead,
    work_while_loading,
)
from klconform.harness.collector import Collector
from klconform.harness.conclude import conclude
from klconform.harness.options import (
    BY_NAME,
    DEFAULT_IMPL,
    IMPL_ENV,
    add_pytest_options,
    default_report_dir,
    replay_command,
    replay_prefix,
)
from klconform.harness.session import (
    RECORD_KEY,
    SETTINGS_KEY,
    STATE_KEY,
    RunSettings,
    choose_seed,
    run_settings,
    run_state,
)
from klconform.statuses import Status


def pytest_addoption(parser):
    add_pytest_options(parser.getgroup("klconform", "KL-divergence conformance"))


def pytest_configure(config):
    option = config.option
    if not hasattr(config, "workerinput"):
        # Chosen once, here: xdist hands the options to its workers, so every worker draws
        # from the same seed.
        option.kl_seed = choose_seed(option.kl_profile, option.kl_seed)
    settings = settings_from(config)
    config.stash[SETTINGS_KEY] = settings
    if settings.min_coverage:
        check_min_coverage(settings.min_coverage)
    config.addinivalue_line("markers", "klconform: a conformance test run against --impl")
    collector = Collector(config)
    config.pluginmanager.register(collector, "klconform-collector")
    if settings.requested:
        set_up_the_call_worker(settings)
        # Resolved before collection: a wrong --impl is a usage error, whatever else runs.
        collector.state.load_implementation(makes_calls=makes_calls(config))
        # xdist workers parse the command line again and collect for themselves: they
        # select the same suites the same way.
        collector.state.named_suites = select_suites(config, only=option.kl_only)
        keep_hypothesis_out_of(config)


def set_up_the_call_worker(settings):
    """Before the call worker starts: its environment names the folder of kept programs, and
    the share of the cores it has."""
    from klconform.engine import compile_ahead

    compile_ahead.keep_in(settings.compile_cache)
    if makes_calls_ahead(settings):
        from klconform.engine import isolation

        isolation.expect_calls_ahead()


def start_loading(config):
    """Have the call worker start loading --impl now, where this process will call it;
    whether it did. pytest_configure's load_implementation then finds the load under way."""
    settings = settings_from(config)
    if not settings.requested or not makes_calls(config):
        return False
    from klconform.engine import isolation
    from klconform.engine.worker_protocol import implementation_spec

    set_up_the_call_worker(settings)
    isolation.prepare(implementation_spec(settings.impl, settings.convention,
                                          settings.timeout))
    return True


def makes_calls(config):
    """Whether this process calls the implementation: not an xdist controller, and not a
    --collect-only run (a call worker importing the implementation would be time lost)."""
    return not (is_xdist_controller(config) or config.option.collectonly)


def is_xdist_controller(config):
    """This process hands the tests to xdist workers and makes no implementation call."""
    return not hasattr(config, "workerinput") and getattr(config.option, "dist", "no") != "no" \
        and bool(getattr(config.option, "numprocesses", None))


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """--kl-workers auto: serial or pytest-xdist workers (harness.workers), chosen before
    pytest-xdist reads -n; said once (a run resumed after a crash chooses the same)."""
    option = config.option
    if option.kl_workers != AUTO or hasattr(config, "workerinput"):
        return
    from klconform.harness.workers import choose_workers, serial_unless_compiling

    # Serial is the usual choice: the call worker starts loading the library beside the
    # choosing, which reads the records (0.15 s), and goes where workers are chosen.
    loading = serial_unless_compiling(option) and start_loading(config)
    workers, why = choose_workers(option, requested_impl(option),
                                  xdist_loaded=config.pluginmanager.hasplugin("xdist"))
    if not option.kl_journal_append:
        sys.stderr.write(f"klconform run: {why}\n")
    if workers:
        option.numprocesses = workers
        if loading:
            from klconform.engine import isolation

            isolation.shutdown(now=True)


def requested_impl(option):
    return option.impl or os.environ.get(IMPL_ENV) or DEFAULT_IMPL


def settings_from(config):
    option = config.option
    impl = requested_impl(option)
    return RunSettings(
        impl=impl,
        report_dir=option.report_dir or default_report_dir(config.invocation_params.dir, impl),
        # --impl (or --kl-only) on the command line asks for a conformance run: the bundled
        # suites join the collection wherever pytest runs. Without it the plugin stays inert,
        # except for suites a project collects itself (this repository's testpaths).
        requested=option.impl is not None or bool(option.kl_only),
        strict=option.kl_strict, device=option.kl_device, profile=option.kl_profile,
        seed=option.kl_seed, max_examples=option.kl_max_examples, timeout=option.kl_timeout,
        cases_dir=option.kl_only_cases, extra_cases_dir=option.kl_cases,
        xfails_path=option.kl_xfails, convention=option.kl_convention,
        min_coverage=option.kl_min_coverage, journal_append=option.kl_journal_append,
        compile_ahead=option.kl_compile_ahead, compile_cache=option.kl_compile_cache,
        calls_ahead=option.kl_calls_ahead,
        options=tuple({name: getattr(option, name) for name in BY_NAME}.items())
        + (("impl", impl),))


def check_min_coverage(min_coverage):
    """A --kl-min-coverage no run can meet is a usage error now, not a failure at the end."""
    from klconform.report.gate import impossible, spec_claims
    from klconform.spec.claims import load_spec

    problem = impossible(min_coverage, spec_claims(load_spec().claims.values()),
                         BY_NAME["kl_min_coverage"].pytest)
    if problem:
        raise pytest.UsageError(f"klconform: {problem}")


def select_suites(config, only):
    """Point the collection at the bundled suites; returns the parts of them the user named
    (empty when the whole of them runs).

    Arguments relative to the suites folder (`test_cases.py::test_case[ID]`, the form replay
    commands print) are resolved there, so they work from any directory. With --kl-only the
    project's own test paths are dropped.
    """
    from klconform import resources

    suites = resources.suites_dir().resolve()
    suite_files = sorted(suites.glob("test_*.py"))
    invocation = Path(config.invocation_params.dir)
    explicit = config.args_source == config.ArgsSource.ARGS
    # pytest does not look inside an installed package's folder, so only a checkout's
    # top-level folders can hold the suites "by accident" (this repository's own testpaths).
    reachable_from_ancestors = "site-packages" not in suites.parts
    arguments, named, covered = [], [], False
    for argument in config.args:
        path, separator, rest = argument.partition("::")
        local = invocation / path
        if explicit and path and not local.exists() and (suites / path).exists():
            local = suites / path
            argument = f"{local}{separator}{rest}"
        resolved = local.resolve()
        if suites in resolved.parents:
            named.append(f"{resolved.relative_to(suites).as_posix()}{separator}{rest}")
        elif resolved == suites or (reachable_from_ancestors and resolved in suites.parents):
            if only and resolved != suites:
                # --kl-only: the suites alone, never the other tests of a folder that
                # happens to hold klconform's installation (a --target dir, a checkout).
                continue
            covered = True
        elif only:
            continue
        arguments.append(argument)
    if not covered and not named:
        arguments += [str(path) for path in suite_files]
    if covered or set(named) >= {path.name for path in suite_files}:
        named = []
    config.args[:] = arguments
    return named


def keep_hypothesis_out_of(config):
    """Hypothesis caches under ./.hypothesis; a conformance run must not leave it behind.

    A project that already has a .hypothesis folder uses hypothesis itself and keeps it.
    """
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY") \
            or (Path(config.invocation_params.dir) / ".hypothesis").exists():
        return
    import shutil
    import tempfile

    from hypothesis.configuration import set_hypothesis_home_dir

    directory = tempfile.mkdtemp(prefix="klconform-hypothesis-")
    set_hypothesis_home_dir(directory)
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = directory  # xdist workers inherit it

    def remove():
        os.environ.pop("HYPOTHESIS_STORAGE_DIRECTORY", None)
        shutil.rmtree(directory, ignore_errors=True)

    config.add_cleanup(remove)


def pytest_generate_tests(metafunc):
    from klconform.harness.identity import BY_ARGUMENT, tests_of

    suite = next((BY_ARGUMENT[name] for name in metafunc.fixturenames if name in BY_ARGUMENT),
                 None)
    if suite is None:
        return
    problem = None
    state = run_state(metafunc.config)
    try:
        cases = state.loaded_cases()
    except KLConformError as error:
        problem = str(error)
    if problem:  # outside the except: pytest would print the chained exception twice
        pytest.fail(problem, pytrace=False)
    params = []
    for subject, identity in tests_of(suite, cases):
        marks = [pytest.mark.klconform]
        if getattr(subject, "profile", None) == "thorough" \
                and state.settings.profile != "thorough":
            marks.append(pytest.mark.skip(reason="thorough profile only (--kl-profile thorough)"))
        params.append(pytest.param(subject, identity.dtype, identity, id=identity.param,
                                   marks=marks))
    metafunc.parametrize((suite.argument, "kl_dtype", "kl_identity"), params)


def is_conformance(item):
    return "kl_adapter" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    kl_items = [item for item in items if is_conformance(item)]
    state = run_state(config)
    state.collected = len(kl_items)
    if not kl_items:
        return
    if not state.hypothesis:
        from klconform.harness.hypothesis_profiles import configure

        settings = state.settings
        state.hypothesis = configure(settings.profile, settings.seed, settings.max_examples)
    from klconform.engine.isolation import IsolatedAdapter

    if not config.option.collectonly and not isinstance(state.adapter, IsolatedAdapter):
        # Tests run in this process after all (or --impl came from the environment): their
        # calls go to a call worker, never straight into this process.
        state.load_implementation()


# pytest registers a hook function by its "pytest_" name only; this one is a second
# implementation of pytest_collection_modifyitems, after -k and --deselect.
@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")
def pytest_collection_modifyitems_once_selected(session, config, items):
    """Once the selection is final (-k, --deselect): the tests' oracle work while the call
    worker still imports the library, then the refusal of one that does not load."""
    kl_items = [item for item in items if is_conformance(item)]
    if not kl_items:
        return
    state = run_state(config)
    if not config.option.collectonly:
        work_while_loading(config, state, kl_items)
        refuse_an_implementation_that_does_not_load(config, state, items, kl_items)
    state.known_deviations()


def refuse_an_implementation_that_does_not_load(config, state, items, kl_items):
    """A usage error, in one line, where the call worker cannot load --impl: where this
    process only describes it, the worker's import is the first (a library installed but
    broken). Otherwise every case would error on it, and a case expecting an error would
    find one."""
    from klconform.engine.isolation import IsolatedAdapter

    adapter = state.adapter
    message = adapter.load_failure() if isinstance(adapter, IsolatedAdapter) else None
    if message is None:
        return
    state.load_error = message
    if not hasattr(config, "workerinput"):
        raise pytest.UsageError(message)
    # xdist turns a usage error in a worker into an internal error of the controller: the
    # worker runs no conformance test and tells the controller, which ends the run with it.
    items[:] = [item for item in items if not is_conformance(item)]
    config.hook.pytest_deselected(items=kl_items)


def refuse_an_unresolved_implementation(state):
    """The one-line usage error of an --impl naming the user's code that does not resolve
    (a misspelt attribute), which only the call worker has tried (engine.isolation)."""
    from klconform.engine.isolation import IsolatedAdapter

    adapter = state.adapter
    message = adapter.resolution_failure() if isinstance(adapter, IsolatedAdapter) else None
    if message is not None:
        raise pytest.UsageError(message)


def pytest_deselected(items):
    if items:
        config = items[0].config
        if STATE_KEY in config.stash:
            run_state(config).deselected += sum(1 for item in items if is_conformance(item))


def pytest_collection_finish(session):
    config = session.config
    state = run_state(config)
    counts = state.conformance_tests
    counts["selected"] = sum(1 for item in session.items if is_conformance(item))
    counts["available"] = counts["selected"] + state.deselected
    for reason in selection_reasons(config, state):
        state.note_partial(reason)
    if hasattr(config, "workerinput"):
        # The controller collects nothing itself: it learns the counts from the workers.
        config.workeroutput["klconform"] = {"conformance_tests": dict(counts),
                                            "partial": list(state.partial),
                                            "load_error": state.load_error}
        return
    if state.load_error:
        return   # pytest_collection_modifyitems raised it, and pytest still calls this hook
    if state.settings.requested and not counts["selected"]:
        refuse_an_unresolved_implementation(state)
        raise pytest.UsageError(
            f"klconform: --impl {state.settings.impl}: no conformance test was "
            + ("collected" if not counts["available"] else
               f"selected ({'; '.join(state.partial)})")
            + "; a conformance run that checks nothing cannot pass")
    if counts["selected"] and not config.option.collectonly:
        start_ahead(state, [item for item in session.items if is_conformance(item)])


def pytest_runtest_setup(item):
    index = item.stash.get(PLANNED_INDEX, None)
    if index is not None:
        from klconform.engine import compile_ahead, isolation

        compile_ahead.reached(index)
        isolation.reached(index)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist controller: take the collection counts and reasons of a worker."""
    output = getattr(node, "workeroutput", None) or {}
    worker = output.get("klconform")
    if worker:
        state = run_state(node.config)
        for key in ("available", "selected"):
            state.conformance_tests[key] = max(state.conformance_tests[key],
                                               worker["conformance_tests"][key])
        for reason in worker["partial"]:
            state.note_partial(reason)
        state.load_error = state.load_error or worker.get("load_error")


def selection_reasons(config, state):
    """Why the selected conformance tests are fewer than all of them, in the user's words."""
    option = config.option
    reasons = []
    if state.named_suites:
        reasons.append("the command named only " + ", ".join(state.named_suites)
                       + " of the conformance suites")
    if getattr(option, "lf", False):
        last_failed = getattr(config.pluginmanager.get_plugin("lfplugin"), "lastfailed", None)
        if last_failed:
            reasons.append("--lf ran only the tests that failed in the previous run")
    if state.deselected:
        causes = []
        if getattr(option, "keyword", ""):
            causes.append(f"-k {shlex.quote(option.keyword)}")
        if getattr(option, "markexpr", ""):
            causes.append(f"-m {shlex.quote(option.markexpr)}")
        if getattr(option, "deselect", None) and not option.kl_journal_append:
            # After a crash `klconform run` deselects the tests that crashed: those are in
            # the report as errored, not missing.
            causes.append("--deselect")
        if getattr(option, "stepwise", False):
            causes.append("--stepwise")
        if getattr(option, "lf", False):
            causes.append("--lf")
        counts = state.conformance_tests
        if causes or not state.settings.journal_append:
            reasons.append(f"{' '.join(causes) or 'a plugin'} deselected {state.deselected} "
                           f"of {counts['available']} conformance tests")
    return reasons


def stop_reason(session, state, exitstatus):
    """Why fewer conformance tests ran than were selected, or None."""
    counts = state.conformance_tests
    if counts["run"] >= counts["selected"]:
        return None
    ran = f"{counts['run']} of {counts['selected']} selected conformance tests ran"
    maxfail = getattr(session.config.option, "maxfail", 0)
    if maxfail and (session.shouldstop or session.testsfailed >= maxfail):
        what = "-x" if maxfail == 1 else f"--maxfail={maxfail}"
        return f"{what} stopped the run after {maxfail} failure(s) ({ran})"
    if int(exitstatus) == int(pytest.ExitCode.INTERRUPTED):
        return f"the run was interrupted ({ran})"
    return f"the run stopped early ({ran})"


@pytest.fixture(scope="session")
def kl_adapter(request):
    return run_state(request.config).adapter


@pytest.fixture(scope="session")
def kl_device(request):
    return run_settings(request.config).device


@pytest.fixture
def kl_identity():
    """What the running conformance test checks (harness.identity); parametrized with each
    test, so None only in a test that is not one of the suites'."""
    return None


@pytest.fixture
def kl_record(request, kl_identity):
    """Attach a result to the running test so the report (and xdist) carry it."""

    def record(**entry):
        entry.setdefault("nodeid", request.node.nodeid)
        if kl_identity is not None:
            entry.update(kind=kl_identity.kind, test=kl_identity.test)
        entry.setdefault("test", request.node.nodeid)
        # As the run stream will hold it, in JSON's types only: xdist's channel carries
        # nothing else (a status word is a str subclass until here).
        request.node.user_properties.append((RECORD_KEY, json.loads(json.dumps(entry,
                                                                               default=str))))

    return record


def claim_levels():
    from klconform.spec.claims import load_spec

    return {claim.id: claim.level for claim in load_spec().claims.values()}


# The fixtures made for each test take the session's `pytestconfig` rather than `request`
# where they need only the configuration: pytest builds a new definition of `request` each
# time a fixture asks for it.
@pytest.fixture
def kl_conclude(pytestconfig, kl_record):
    """Record an Outcome and turn it into pass / fail / skip / xfail / warning."""
    state = run_state(pytestconfig)

    def finish(outcome):
        conclude(outcome, kl_record, state.settings.strict, state.manifest, claim_levels())
        return outcome

    return finish


@pytest.fixture
def kl_check_property(pytestconfig, kl_identity, kl_adapter, kl_device, kl_conclude):
    """Search a property at a dtype for a falsifying example, and conclude it."""
    from klconform.engine.properties import BY_ID, run_property

    settings = run_settings(pytestconfig)
    example_dir = os.path.join(settings.report_dir, "examples")

    def check(property_id, dtype):
        replay = replay_command(kl_identity.test, settings)
        kl_conclude(run_property(BY_ID[property_id], kl_adapter, dtype, kl_device,
                                 settings.seed, example_dir, replay,
                                 run_state(pytestconfig).known_deviations()))

    return check


@pytest.fixture
def kl_check(kl_adapter, kl_device, kl_conclude):
    """Evaluate a case at a dtype and conclude it."""
    from klconform.engine.evaluate import evaluate

    def check(case, dtype):
        return kl_conclude(evaluate(case, dtype, kl_adapter, kl_device))

    return check


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report, config):
    if report.when == "call" and report.passed:
        for key, entry in report.user_properties:
            if key == RECORD_KEY and entry.get("status") == Status.WARNED:
                return "warned", "W", "WARNED (should-level)"
    return None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    isolation = sys.modules.get("klconform.engine.isolation")
    if isolation is not None:   # else no call was made in this process
        isolation.stop_calls_ahead()
    if hasattr(config, "workerinput"):
        return  # xdist worker: the controller writes the one stream and report
    state = run_state(config)
    if isolation is not None:
        keep_answers_not_taken(state)
    if state.load_error and int(exitstatus) != int(pytest.ExitCode.USAGE_ERROR):
        # The workers' usage error (refuse_an_implementation_that_does_not_load), as pytest
        # writes its own (a serial run's it has written).
        session.exitstatus = exitstatus = pytest.ExitCode.USAGE_ERROR
        sys.stderr.write(f"ERROR: {state.load_error}\n")
    if int(exitstatus) == int(pytest.ExitCode.USAGE_ERROR) or config.option.collectonly:
        return  # no test ran: nothing to report, and a previous report stays
    reason = stop_reason(session, state, exitstatus)
    if reason:
        state.note_partial(reason)
    settings = state.settings
    if settings.requested and not state.conformance_tests["run"] and not exitstatus:
        # Under xdist the controller finds out only now that nothing was checked.
        session.exitstatus = exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
        state.gate_error = (f"--impl {settings.impl}: no conformance test ran; a conformance "
                            "run that checks nothing cannot pass")
    if not state.collected and not state.records:
        return
    config.pluginmanager.get_plugin("klconform-collector").finish(exitstatus)
    from klconform.harness.run_stream import read_stream
    from klconform.report.build import write_reports

    try:
        # After a crash restart the file holds the earlier processes' events too.
        events = read_stream(state.journal.path) if state.journal else state.events
        state.report_paths = write_reports(events, settings.report_dir)
    except Exception as error:  # a broken report writer must never change the exit status
        state.report_error = f"{type(error).__name__}: {error}"
        state.report_paths = None
    if state.journal:
        state.journal.close()
    gate = (state.report_paths.report.get("gate") or {}) if state.report_paths else {}
    if gate.get("passed") is False:
        # The coverage gate: a run that checked nothing (or fewer claims than
        # --kl-min-coverage asks for) fails, even when every test it ran passed or skipped.
        state.gate_error = state.gate_error or f"--impl {settings.impl}: {gate['reason']}"
        if int(session.exitstatus) == int(pytest.ExitCode.OK):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = config.stash.get(STATE_KEY, None)
    if state is None or hasattr(config, "workerinput") or state.load_error:
        return  # a worker; or the run ended on the one-line error its --impl does not load
    if state.report_error:
        terminalreporter.write_line(f"klconform: could not write the report: {state.report_error}")
    paths = state.report_paths
    if paths:
        from klconform.report.terminal import summary_lines

        verdict, summary = paths.verdict, paths.summary
        counts = ", ".join(f"{n} {s}" for s, n in summary.items() if n and s != "total")
        for line in summary_lines(paths.report, replay_prefix(state.settings), str(paths.json)):
            terminalreporter.write_line(f"klconform: {line}")
        terminalreporter.write_line(
            f"klconform: {state.settings.impl} {verdict.upper()} ({counts}); report: {paths.json}")
    for reason in state.partial:
        terminalreporter.write_line(f"klconform: partial run: {reason}")
    if state.gate_error:
        terminalreporter.write_line(f"klconform: FAILED: {state.gate_error}")
