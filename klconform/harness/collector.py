"""Gathering result records from test reports, and streaming them as they arrive."""

import time

import pytest

from klconform.harness.identity import errored
from klconform.harness.session import RECORD_KEY, STATE_KEY, RunState, run_settings
from klconform.statuses import Status


class Collector:
    """Owns the run state (harness.session.RunState) and gathers records from reports; on
    the controller under xdist, from every worker.

    Every start and result also goes to the run stream (klconform.harness.run_stream), so
    that a hard crash of the implementation leaves enough behind to write the report; the
    stream opens with its header, written before the first test starts. Start events and
    the records of tests that died carry the test's identity (harness.identity), looked up
    by the test's id relative to the suites.
    """

    def __init__(self, config):
        self.config = config
        self.state = RunState(run_settings(config))
        config.stash[STATE_KEY] = self.state

    def _journal(self, event, **fields):
        state = self.state
        if hasattr(self.config, "workerinput"):
            return
        if not state.events:
            state.events.append({"event": "header", **self._header()})
            self._write(state.events[0])
        entry = {"event": event, **fields}
        state.events.append(entry)
        self._write(entry)

    def _write(self, entry):
        state = self.state
        if state.journal is False:
            return
        try:
            if state.journal is None:
                from klconform.harness.run_stream import RunStream

                state.journal = RunStream(state.settings.report_dir,
                                          append=state.settings.journal_append)
            fields = {key: value for key, value in entry.items() if key != "event"}
            state.journal.write(entry["event"], **fields)
        except OSError as error:
            # Without the stream file only crash recovery is lost; the report is still
            # built from the events kept in memory.
            state.journal = False
            state.report_error = f"run stream file disabled: {error}"

    def _header(self):
        from klconform.errors import KLConformError
        from klconform.harness.stream_header import header
        from klconform.spec.claims import load_spec

        state = self.state
        if state.adapter is None:
            # xdist controller of a run the command line did not ask for (a project's own
            # testpaths): the workers make the calls; the adapter is loaded here only to be
            # described.
            try:
                state.load_implementation(makes_calls=False)
            except pytest.UsageError as error:
                state.report_error = f"the report cannot describe --impl: {error}"
        if state.adapter is not None:
            state.known_deviations()
        try:
            spec = load_spec()
        except KLConformError as error:
            state.report_error = f"the specification could not be loaded: {error}"
            spec = None
        return header(state, spec)

    def finish(self, exitstatus):
        """The footer: the run ended (a stream without one was cut short), and why it was
        partial if it was."""
        state = self.state
        self._journal("footer", exitstatus=int(exitstatus), finished=time.time(),
                      partial=list(state.partial),
                      conformance_tests=dict(state.conformance_tests))

    def identity_fields(self, nodeid, location):
        """The identity of a conformance test as the stream carries it; {} for a test that
        is not one of the suites'."""
        from klconform.errors import KLConformError
        from klconform.harness.options import suite_test_id

        test = suite_test_id(self.config.rootpath / location[0], nodeid)
        try:
            identity = self.state.test_identities().get(test)
        except KLConformError:
            return {"test": test}   # the cases did not load: collection has said why
        return identity.fields() if identity else {"test": test}

    @pytest.hookimpl
    def pytest_runtest_logstart(self, nodeid, location):
        if self.state.collected or self.config.pluginmanager.has_plugin("dsession"):
            self._journal("start", nodeid=nodeid, **self.identity_fields(nodeid, location))

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report):
        state = self.state
        conformance = _is_conformance(report)
        if report.when == "teardown" and conformance:
            # Every test that started tears down, whatever its outcome: the count of
            # conformance tests that ran (a crash or -x leaves it short of those selected).
            state.conformance_tests["run"] += 1
        entries = [dict(entry) for key, entry in report.user_properties if key == RECORD_KEY]
        if report.when == "call" or (report.when == "setup" and report.skipped):
            for entry in entries:
                self._record(entry)
        if entries or not conformance:
            return
        if report.when == "setup" and report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            self._record(self._without_result(report, Status.SKIPPED, message=reason))
        elif report.failed and report.when in ("setup", "call"):
            # A conformance test failed without a record: its setup broke, or (under xdist)
            # the worker running it crashed (segfault, os._exit), or klconform itself broke.
            # Either way the report must show it, against what the test checks.
            self._record(self._without_result(report, Status.ERRORED,
                                              checks=[_last_line(report.longreprtext)]))

    def _without_result(self, report, status, **fields):
        identity = self.identity_fields(report.nodeid, report.location)
        if status == Status.ERRORED:
            identity = errored(identity)
        return {"nodeid": report.nodeid, "status": status, **identity, **fields}

    def _record(self, entry):
        self.state.records.append(entry)
        self._journal("record", **entry)


def _is_conformance(report):
    return "klconform" in report.keywords


def _last_line(text):
    """pytest's failure text ends with the line that says what went wrong."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
