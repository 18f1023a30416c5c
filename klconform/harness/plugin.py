"""The pytest plugin: options, case parametrization, fixtures, and the report at the end.

Registered through the `pytest11` entry point, so it loads in every pytest run where
klconform is installed. It stays inert (no case loading, no torch import) unless a
collected test asks for a klconform fixture.
"""

import os

import pytest

from klconform.errors import KLConformError
from klconform.harness.collector import Collector
from klconform.harness.conclude import conclude
from klconform.harness.run_stream import KEEP_JOURNAL_ENV
from klconform.harness.session import (
    RECORD_KEY,
    SESSION_KEY,
    KLSession,
    default_report_dir,
    kl_session,
)


def pytest_addoption(parser):
    group = parser.getgroup("klconform", "KL-divergence conformance")
    group.addoption("--impl", default=os.environ.get("KLCONFORM_IMPL", "torch"),
                    help="implementation under test: torch (default), torch-module, numpy, an "
                         "entry point in group klconform.adapters, MODULE:ATTR or MODULE")
    group.addoption("--report-dir", default=None,
                    help="where report.json and report.md go (default: reports/<impl>/)")
    group.addoption("--kl-strict", action="store_true", default=False,
                    help="should-level failures fail the run too")
    group.addoption("--kl-device", default="cpu", help="device for adapters that have devices")
    group.addoption("--kl-profile", default="default", choices=("default", "thorough"),
                    help="thorough adds large-data cases and more generated examples")
    group.addoption("--kl-seed", default=None, type=int,
                    help="seed for the property layer's random examples (thorough profile)")
    group.addoption("--kl-max-examples", default=None, type=int,
                    help="examples per property (default 25, thorough 400)")
    group.addoption("--kl-xfails", default=None,
                    help="YAML manifest of known deviations (case or claim id -> reason, link)")
    group.addoption("--kl-timeout", default=60.0, type=float,
                    help="seconds one implementation call may take before it fails (0: none)")
    group.addoption("--kl-journal-append", action="store_true", default=False,
                    help=argparse_suppress())
    group.addoption("--kl-cases", default=None,
                    help="directory of case files to run instead of the bundled ones")


def pytest_configure(config):
    option = config.option
    if option.kl_profile == "thorough" and option.kl_seed is None \
            and not hasattr(config, "workerinput"):
        # Chosen once, here: xdist hands the options to its workers, so every worker draws
        # from the same seed and the report can name it for a replay.
        import secrets

        option.kl_seed = secrets.randbits(32)
    impl = option.impl
    report_dir = option.report_dir or default_report_dir(config.invocation_params.dir, impl)
    config.stash[SESSION_KEY] = KLSession(
        impl=impl, report_dir=report_dir, strict=option.kl_strict, device=option.kl_device,
        profile=option.kl_profile, cases_dir=option.kl_cases, seed=option.kl_seed,
        max_examples=option.kl_max_examples, xfails_path=option.kl_xfails,
        timeout=option.kl_timeout, journal_append=option.kl_journal_append)
    config.addinivalue_line("markers", "klconform: a conformance test run against --impl")
    config.pluginmanager.register(Collector(config), "klconform-collector")


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS  # internal: `klconform run` resuming after a crash


def loaded_cases(config):
    session = kl_session(config)
    if session.cases is None:
        from klconform.spec.cases import load_cases

        session.cases = load_cases(session.cases_dir)
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


def pytest_collection_modifyitems(session, config, items):
    kl_items = [item for item in items if "kl_adapter" in getattr(item, "fixturenames", ())]
    state = kl_session(config)
    state.collected = len(kl_items)
    if kl_items and not state.settings:
        from klconform.harness.hypothesis_profiles import configure

        state.settings = configure(state.profile, state.seed, state.max_examples)
    if kl_items and state.xfails_path and state.manifest is None:
        state.manifest = _load_manifest(config, state)
    if kl_items and state.adapter is None:
        from klconform.adapters import load_adapter

        try:
            state.adapter = load_adapter(state.impl)
        except KLConformError as error:
            raise pytest.UsageError(str(error)) from None
        from klconform.engine.isolation import prepare

        prepare(state.adapter)  # the call worker loads the adapter while the run starts


def _load_manifest(config, state):
    from klconform.spec.deviations import load_manifest

    cases = loaded_cases(config)
    claims = {claim for case in cases for claim in case.claims}
    from klconform.spec.claims import load_spec

    claims |= set(load_spec().claims)
    try:
        return load_manifest(state.xfails_path, {case.id for case in cases}, claims)
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
        request.node.user_properties.append((RECORD_KEY, entry))

    return record


@pytest.fixture
def kl_conclude(request, kl_record):
    """Record an Outcome and turn it into pass / fail / skip / xfail / warning."""
    state = kl_session(request.config)

    def finish(outcome):
        conclude(outcome, kl_record, state.strict, state.manifest)
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
        return  # xdist worker: the controller writes the one merged report
    state = kl_session(config)
    if not state.collected and not state.records:
        return
    from klconform.report.build import write_reports

    try:
        state.report_paths = write_reports(state, int(exitstatus))
    except Exception as error:  # the report must never change pytest's exit status
        state.report_error = f"{type(error).__name__}: {error}"
        state.report_paths = None
    if state.journal:
        state.journal.write("finished", exitstatus=int(exitstatus))
        # `klconform run` reads the journal after the child exits and removes it itself.
        keep = state.journal_append or os.environ.get(KEEP_JOURNAL_ENV)
        state.journal.close(remove=state.report_paths is not None and not keep)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = config.stash.get(SESSION_KEY, None)
    if state is None or hasattr(config, "workerinput"):
        return
    if getattr(state, "report_error", None):
        terminalreporter.write_line(f"klconform: could not write the report: {state.report_error}")
    paths = getattr(state, "report_paths", None)
    if paths:
        verdict, summary = paths[2], paths[3]
        counts = ", ".join(f"{n} {s}" for s, n in summary.items() if n and s != "total")
        terminalreporter.write_line(
            f"klconform: {state.impl} {verdict.upper()} ({counts}); report: {paths[0]}")
