"""The pytest plugin: options, case parametrization, fixtures, and the report at the end.

Registered through the `pytest11` entry point, so it loads in every pytest run where
klconform is installed. It stays inert (no case loading, no torch import) unless a
collected test asks for a klconform fixture.
"""

import os
import shlex
from pathlib import Path

import pytest

from klconform.errors import KLConformError
from klconform.harness.collector import Collector
from klconform.harness.conclude import conclude
from klconform.harness.options import (
    BY_NAME,
    DEFAULT_IMPL,
    IMPL_ENV,
    add_pytest_options,
    replay_prefix,
    suite_test_id,
)
from klconform.harness.session import (
    RECORD_KEY,
    SESSION_KEY,
    KLSession,
    default_report_dir,
    kl_session,
)


def pytest_addoption(parser):
    add_pytest_options(parser.getgroup("klconform", "KL-divergence conformance"))


def pytest_configure(config):
    option = config.option
    if option.kl_profile == "thorough" and option.kl_seed is None \
            and not hasattr(config, "workerinput"):
        # Chosen once, here: xdist hands the options to its workers, so every worker draws
        # from the same seed and the report can name it for a replay.
        import secrets

        option.kl_seed = secrets.randbits(32)
    # --impl (or --kl-only) on the command line asks for a conformance run: the bundled
    # suites join the collection wherever pytest runs. Without it the plugin stays inert,
    # except for suites a project collects itself (this repository's testpaths).
    requested = option.impl is not None or option.kl_only
    impl = option.impl or os.environ.get(IMPL_ENV) or DEFAULT_IMPL
    report_dir = option.report_dir or default_report_dir(config.invocation_params.dir, impl)
    state = KLSession(
        impl=impl, report_dir=report_dir, strict=option.kl_strict, device=option.kl_device,
        profile=option.kl_profile, cases_dir=option.kl_only_cases, seed=option.kl_seed,
        max_examples=option.kl_max_examples, xfails_path=option.kl_xfails,
        timeout=option.kl_timeout, journal_append=option.kl_journal_append,
        extra_cases_dir=option.kl_cases, convention=option.kl_convention,
        min_coverage=option.kl_min_coverage,
        options={name: getattr(option, name) for name in BY_NAME} | {"impl": impl})
    state.requested = requested
    config.stash[SESSION_KEY] = state
    if state.min_coverage:
        check_min_coverage(state.min_coverage)
    config.addinivalue_line("markers", "klconform: a conformance test run against --impl")
    config.pluginmanager.register(Collector(config), "klconform-collector")
    if requested:
        # Resolved before collection: a wrong --impl is a usage error, whatever else runs.
        load_implementation(state)
        # xdist workers parse the command line again and collect for themselves: they
        # select the same suites the same way.
        state.named_suites = select_suites(config, only=option.kl_only)
        keep_hypothesis_out_of(config)


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


def loaded_cases(config):
    session = kl_session(config)
    if session.cases is None:
        from klconform.spec.cases import load_cases

        session.cases = load_cases(session.cases_dir, extra_dirs=[session.extra_cases_dir])
    return session.cases


def pytest_generate_tests(metafunc):
    names = metafunc.fixturenames
    if not {"kl_case", "kl_gradient_case", "kl_layout_case"} & set(names):
        return
    problem = None
    try:
        cases = loaded_cases(metafunc.config)
    except KLConformError as error:
        problem = str(error)
    if problem:  # outside the except: pytest would print the chained exception twice
        pytest.fail(problem, pytrace=False)
    session = kl_session(metafunc.config)
    argument = "kl_case"
    if "kl_gradient_case" in names:
        from klconform.engine.gradients import GRADIENT_DTYPES, eligible

        argument = "kl_gradient_case"
        cases = [case for case in cases if eligible(case)]
    elif "kl_layout_case" in names:  # the value cases the gradient suite takes, every dtype
        from klconform.engine.gradients import eligible

        argument = "kl_layout_case"
        cases = [case for case in cases if eligible(case)]
    params = []
    for case in cases:
        marks = [pytest.mark.klconform]
        if case.profile == "thorough" and session.profile != "thorough":
            marks.append(pytest.mark.skip(reason="thorough profile only (--kl-profile thorough)"))
        for dtype in case.dtypes:
            if argument == "kl_gradient_case" and dtype not in GRADIENT_DTYPES:
                continue
            params.append(pytest.param(case, dtype, id=f"{case.id}-{dtype}", marks=marks))
    metafunc.parametrize((argument, "kl_dtype"), params)


def is_conformance(item):
    return "kl_adapter" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    kl_items = [item for item in items if is_conformance(item)]
    state = kl_session(config)
    state.collected = len(kl_items)
    if kl_items and not state.settings:
        from klconform.harness.hypothesis_profiles import configure

        state.settings = configure(state.profile, state.seed, state.max_examples)
    if kl_items and state.adapter is None:
        load_implementation(state)

    if kl_items and state.manifest is None:
        state.manifest = known_deviations(config, state)


def known_deviations(config, state):
    """The --kl-xfails manifest plus the deviations the implementation's record declares."""
    from klconform.spec.deviations import Manifest, record_deviations

    manifest = _load_manifest(config, state) if state.xfails_path else Manifest([])
    record = getattr(state.adapter, "record", None)
    if record is not None and record.deviations:
        manifest = Manifest(manifest.deviations + record_deviations(record))
    return manifest


def load_implementation(state):
    from klconform.adapters import adapter_source, load_adapter
    from klconform.engine.isolation import prepare, shutdown

    # The call worker starts loading the implementation first, so that its imports (torch,
    # say) run beside this process's instead of after them.
    if state.impl.strip():
        prepare(adapter_source(state.impl, state.convention))
    try:
        state.adapter = load_adapter(state.impl, convention=state.convention)
    except KLConformError as error:
        shutdown(now=True)
        raise pytest.UsageError(str(error)) from None


def pytest_deselected(items):
    if items:
        config = items[0].config
        if SESSION_KEY in config.stash:
            kl_session(config).deselected += sum(1 for item in items if is_conformance(item))


def pytest_collection_finish(session):
    config = session.config
    state = kl_session(config)
    counts = state.conformance_tests
    counts["selected"] = sum(1 for item in session.items if is_conformance(item))
    counts["available"] = counts["selected"] + state.deselected
    for reason in selection_reasons(config, state):
        state.note_partial(reason)
    if hasattr(config, "workerinput"):
        # The controller collects nothing itself: it learns the counts from the workers.
        config.workeroutput["klconform"] = {"conformance_tests": dict(counts),
                                            "partial": list(state.partial)}
        return
    if state.requested and not counts["selected"]:
        raise pytest.UsageError(
            f"klconform: --impl {state.impl}: no conformance test was "
            + ("collected" if not counts["available"] else
               f"selected ({'; '.join(state.partial)})")
            + "; a conformance run that checks nothing cannot pass")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist controller: take the collection counts and reasons of a worker."""
    output = getattr(node, "workeroutput", None) or {}
    worker = output.get("klconform")
    if worker:
        state = kl_session(node.config)
        for key in ("available", "selected"):
            state.conformance_tests[key] = max(state.conformance_tests[key],
                                               worker["conformance_tests"][key])
        for reason in worker["partial"]:
            state.note_partial(reason)


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
        if causes or not option.kl_journal_append:
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


def _load_manifest(config, state):
    from klconform.spec.deviations import load_manifest

    cases = loaded_cases(config)
    claims = {claim for case in cases for claim in case.claims}
    from klconform.spec.claims import load_spec

    claims |= set(load_spec().claims)
    try:
        from klconform.engine.properties import BY_ID

        return load_manifest(state.xfails_path, {case.id for case in cases}, claims, set(BY_ID))
    except KLConformError as error:
        raise pytest.UsageError(str(error)) from None


@pytest.fixture(scope="session")
def kl_adapter(request):
    return kl_session(request.config).adapter


@pytest.fixture(scope="session")
def kl_device(request):
    return kl_session(request.config).device


@pytest.fixture(scope="session")
def kl_timeout(request):
    return kl_session(request.config).timeout


@pytest.fixture
def kl_record(request):
    """Attach a result to the running test so the report (and xdist) carry it."""

    def record(**entry):
        entry.setdefault("nodeid", request.node.nodeid)
        entry.setdefault("test", suite_test_id(request.node.path, request.node.nodeid))
        request.node.user_properties.append((RECORD_KEY, entry))

    return record


def claim_levels():
    from klconform.spec.claims import load_spec

    return {claim.id: claim.level for claim in load_spec().claims.values()}


@pytest.fixture
def kl_conclude(request, kl_record):
    """Record an Outcome and turn it into pass / fail / skip / xfail / warning."""
    state = kl_session(request.config)

    def finish(outcome):
        conclude(outcome, kl_record, state.strict, state.manifest, claim_levels())
        return outcome

    return finish


@pytest.fixture
def kl_check(kl_adapter, kl_device, kl_timeout, kl_conclude):
    """Evaluate a case at a dtype and conclude it."""
    from klconform.engine.evaluate import evaluate

    def check(case, dtype):
        return kl_conclude(evaluate(case, dtype, kl_adapter, kl_device, kl_timeout))

    return check


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report, config):
    if report.when == "call" and report.passed:
        for key, entry in report.user_properties:
            if key == RECORD_KEY and entry.get("status") == "warned":
                return "warned", "W", "WARNED (should-level)"
    return None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if hasattr(config, "workerinput"):
        return  # xdist worker: the controller writes the one stream and report
    state = kl_session(config)
    if int(exitstatus) == int(pytest.ExitCode.USAGE_ERROR) or config.option.collectonly:
        return  # no test ran: nothing to report, and a previous report stays
    reason = stop_reason(session, state, exitstatus)
    if reason:
        state.note_partial(reason)
    if state.requested and not state.conformance_tests["run"] and not exitstatus:
        # Under xdist the controller finds out only now that nothing was checked.
        session.exitstatus = exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
        state.gate_error = (f"--impl {state.impl}: no conformance test ran; a conformance "
                            "run that checks nothing cannot pass")
    if not state.collected and not state.records:
        return
    config.pluginmanager.get_plugin("klconform-collector").finish(
        exitstatus, state.partial, state.conformance_tests)
    from klconform.harness.run_stream import read_stream
    from klconform.report.build import write_reports

    try:
        # After a crash restart the file holds the earlier processes' events too.
        events = read_stream(state.journal.path) if state.journal else state.events
        state.report_paths = write_reports(events, state.report_dir)
    except Exception as error:  # a broken report writer must never change the exit status
        state.report_error = f"{type(error).__name__}: {error}"
        state.report_paths = None
    if state.journal:
        state.journal.close()
    gate = (state.report_paths.report.get("gate") or {}) if state.report_paths else {}
    if gate.get("passed") is False:
        # The coverage gate: a run that checked nothing (or fewer claims than
        # --kl-min-coverage asks for) fails, even when every test it ran passed or skipped.
        state.gate_error = state.gate_error or f"--impl {state.impl}: {gate['reason']}"
        if int(session.exitstatus) == int(pytest.ExitCode.OK):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = config.stash.get(SESSION_KEY, None)
    if state is None or hasattr(config, "workerinput"):
        return
    if getattr(state, "report_error", None):
        terminalreporter.write_line(f"klconform: could not write the report: {state.report_error}")
    paths = getattr(state, "report_paths", None)
    if paths:
        from klconform.report.terminal import summary_lines

        verdict, summary = paths.verdict, paths.summary
        counts = ", ".join(f"{n} {s}" for s, n in summary.items() if n and s != "total")
        for line in summary_lines(paths.report, replay_prefix(state), str(paths.json)):
            terminalreporter.write_line(f"klconform: {line}")
        terminalreporter.write_line(
            f"klconform: {state.impl} {verdict.upper()} ({counts}); report: {paths.json}")
    for reason in state.partial:
        terminalreporter.write_line(f"klconform: partial run: {reason}")
    if state.gate_error:
        terminalreporter.write_line(f"klconform: FAILED: {state.gate_error}")
