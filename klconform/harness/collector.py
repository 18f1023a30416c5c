"""Gathering result records from test reports, and journaling them as they arrive."""

import pytest

from klconform.harness.session import RECORD_KEY, kl_session


class Collector:
    """Gathers records from reports; on the controller under xdist, from every worker.

    Every start and result also goes to the journal, so that a hard crash of the
    implementation leaves enough behind for `klconform run` to write the report.
    """

    def __init__(self, config):
        self.config = config

    def _journal(self, event, **fields):
        state = kl_session(self.config)
        if hasattr(self.config, "workerinput") or state.journal is False:
            return
        try:
            if state.journal is None:
                from klconform.harness.run_stream import Journal

                state.journal = Journal(state.report_dir, append=state.journal_append)
                state.journal.write("session", impl=state.impl, started=state.started)
            state.journal.write(event, **fields)
        except OSError as error:
            # Without a journal only crash recovery is lost; the run itself goes on.
            state.journal = False
            state.report_error = f"journal disabled: {error}"

    @pytest.hookimpl
    def pytest_runtest_logstart(self, nodeid, location):
        if kl_session(self.config).collected or self.config.pluginmanager.has_plugin("dsession"):
            self._journal("start", nodeid=nodeid)

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report):
        state = kl_session(self.config)
        if report.when == "teardown" and _is_conformance(report):
            # Every test that started tears down, whatever its outcome: the count of
            # conformance tests that ran (a crash or -x leaves it short of those selected).
            state.conformance_tests["run"] += 1
        entries = [dict(entry) for key, entry in report.user_properties if key == RECORD_KEY]
        if report.when == "call" or (report.when == "setup" and report.skipped):
            for entry in entries:
                state.records.append(entry)
                self._journal("record", **entry)
        if entries or report.when != "setup" or not _is_conformance(report):
            if report.failed and not entries and report.when == "call" \
                    and _is_conformance(report):
                self._record_crash_report(report)
            return
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            entry = {"kind": "skipped", "nodeid": report.nodeid, "status": "skipped",
                     "message": reason}
        elif report.failed:
            entry = {"kind": "error", "nodeid": report.nodeid, "status": "errored",
                     "checks": [_last_line(report.longreprtext)]}
        else:
            return
        state.records.append(entry)
        self._journal("record", **entry)

    def _record_crash_report(self, report):
        # A conformance test failed without a record: under xdist, the worker running it
        # crashed (segfault, os._exit); serially, klconform itself broke. Either way the
        # report must show it.
        entry = {"kind": "error", "nodeid": report.nodeid, "status": "errored",
                 "case_id": _case_from_nodeid(report.nodeid), "level": "must",
                 "checks": [_last_line(report.longreprtext)]}
        kl_session(self.config).records.append(entry)
        self._journal("record", **entry)


def _is_conformance(report):
    return "klconform" in report.keywords


def _case_from_nodeid(nodeid):
    return nodeid.rsplit("[", 1)[-1].rstrip("]") if "[" in nodeid else nodeid


def _last_line(text):
    """pytest's failure text ends with the line that says what went wrong."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
