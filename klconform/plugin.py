"""The pytest plugin: options, case parametrization, fixtures, result collection, report.

Registered through the `pytest11` entry point, so it loads in every pytest run where
klconform is installed. It stays inert (no case loading, no torch import) unless a
collected test asks for a klconform fixture.
"""

import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field

import pytest

from klconform.errors import KLConformError

RECORD_KEY = "klconform"
SESSION_KEY = pytest.StashKey["KLSession"]()


class ShouldLevelWarning(UserWarning):
    """A should-level claim failed: reported, and failing only under --kl-strict."""


@dataclass
class KLSession:
    impl: str
    report_dir: str
    strict: bool
    device: str
    profile: str
    cases_dir: str | None
    adapter: object = None
    cases: list | None = None
    records: list = field(default_factory=list)
    started: float = field(default_factory=time.time)
    report_paths: tuple | None = None
    report_error: str | None = None
    collected: int = 0


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
    group.addoption("--kl-cases", default=None,
                    help="directory of case files to run instead of the bundled ones")


def pytest_configure(config):
    option = config.option
    impl = option.impl
    report_dir = option.report_dir or os.path.join(
        str(config.invocation_params.dir), "reports", report_slug(impl))
    config.stash[SESSION_KEY] = KLSession(
        impl=impl, report_dir=report_dir, strict=option.kl_strict, device=option.kl_device,
        profile=option.kl_profile, cases_dir=option.kl_cases)
    config.addinivalue_line("markers", "klconform: a conformance test run against --impl")
    config.pluginmanager.register(_Collector(config), "klconform-collector")


def report_slug(text):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "impl"


def kl_session(config) -> KLSession:
    return config.stash[SESSION_KEY]


def loaded_cases(config):
    session = kl_session(config)
    if session.cases is None:
        from klconform.cases import load_cases

        session.cases = load_cases(session.cases_dir)
    return session.cases


def pytest_generate_tests(metafunc):
    if "kl_case" not in metafunc.fixturenames:
        return
    try:
        cases = loaded_cases(metafunc.config)
    except KLConformError as error:
        pytest.fail(str(error), pytrace=False)
    session = kl_session(metafunc.config)
    params = []
    for case in cases:
        marks = [pytest.mark.klconform]
        if case.profile == "thorough" and session.profile != "thorough":
            marks.append(pytest.mark.skip(reason="thorough profile only (--kl-profile thorough)"))
        for dtype in case.dtypes:
            params.append(pytest.param(case, dtype, id=f"{case.id}-{dtype}", marks=marks))
    metafunc.parametrize(("kl_case", "kl_dtype"), params)


def pytest_collection_modifyitems(session, config, items):
    kl_items = [item for item in items if "kl_adapter" in getattr(item, "fixturenames", ())]
    state = kl_session(config)
    state.collected = len(kl_items)
    if kl_items and state.adapter is None:
        from klconform.adapters import load_adapter

        try:
            state.adapter = load_adapter(state.impl)
        except KLConformError as error:
            raise pytest.UsageError(str(error)) from None


@pytest.fixture(scope="session")
def kl_adapter(request):
    return kl_session(request.config).adapter


@pytest.fixture(scope="session")
def kl_device(request):
    return kl_session(request.config).device


@pytest.fixture
def kl_record(request):
    """Attach a result to the running test so the report (and xdist) carry it."""

    def record(**entry):
        entry.setdefault("nodeid", request.node.nodeid)
        request.node.user_properties.append((RECORD_KEY, entry))

    return record


@pytest.fixture
def kl_check(request, kl_adapter, kl_device, kl_record):
    """Evaluate a case at a dtype, record it, and turn it into pass / fail / skip / warning."""
    from klconform.evaluate import evaluate

    strict = kl_session(request.config).strict

    def check(case, dtype):
        outcome = evaluate(case, dtype, kl_adapter, kl_device)
        conclude(outcome, kl_record, strict)
        return outcome

    return check


def conclude(outcome, record, strict):
    from klconform.messages import failure_text

    failing = outcome.status in ("failed", "errored")
    if failing and outcome.level == "should" and not strict:
        outcome.status = "warned"
    entry = asdict(outcome)
    entry["kind"] = "case"
    record(**entry)
    if outcome.status == "unsupported":
        pytest.skip(f"unsupported: {outcome.message}")
    if outcome.status == "warned":
        warnings.warn(ShouldLevelWarning(failure_text(outcome)), stacklevel=2)
    elif failing:
        pytest.fail(failure_text(outcome), pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report, config):
    if report.when == "call" and report.passed:
        for key, entry in report.user_properties:
            if key == RECORD_KEY and entry.get("status") == "warned":
                return "warned", "W", "WARNED (should-level)"
    return None


class _Collector:
    """Gathers records from reports; on the controller under xdist, from every worker."""

    def __init__(self, config):
        self.config = config

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report):
        state = kl_session(self.config)
        for key, entry in report.user_properties:
            if key != RECORD_KEY:
                continue
            if report.when == "call" or (report.when == "setup" and report.skipped):
                state.records.append(dict(entry))
        if report.when == "setup" and report.skipped and not any(
                key == RECORD_KEY for key, _ in report.user_properties):
            if "kl_case" in report.keywords or "klconform" in report.keywords:
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
                state.records.append({"kind": "skipped", "nodeid": report.nodeid,
                                      "status": "skipped", "message": reason})


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if hasattr(config, "workerinput"):
        return  # xdist worker: the controller writes the one merged report
    state = kl_session(config)
    if not state.collected and not state.records:
        return
    from klconform.report import write_reports

    try:
        state.report_paths = write_reports(config, state, int(exitstatus))
    except Exception as error:  # the report must never change pytest's exit status
        state.report_error = f"{type(error).__name__}: {error}"


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
