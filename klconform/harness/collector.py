"""Gathering result records from test reports, and streaming them as they arrive."""

import pytest

from klconform.harness.session import RECORD_KEY, kl_session


class Collector:
    """Gathers records from reports; on the controller under xdist, from every worker.

    Every start and result also goes to the run stream (klconform.harness.run_stream), so
    that a hard crash of the implementation leaves enough behind to write the report; the
    stream opens with its header, written before the first test starts.
    """

    def __init__(self, config):
        self.config = config

    def _journal(self, event, **fields):
        state = kl_session(self.config)
        if hasattr(self.config, "workerinput"):
            return
        if not state.events:
            state.events.append({"event": "header", **self._header()})
            self._write(state, state.events[0])
        entry = {"event": event, **fields}
        state.events.append(entry)
        self._write(state, entry)

    def _write(self, state, entry):
        if state.journal is False:
            return
        try:
            if state.journal is None:
                from klconform.harness.run_stream import RunStream

                state.journal = RunStream(state.report_dir, append=state.journal_append)
            fields = {key: value for key, value in entry.items() if key != "event"}
            state.journal.write(entry["event"], **fields)
        except OSError as error:
            # Without the stream file only crash recovery is lost; the report is still
            # built from the events kept in memory.
            state.journal = False
            state.report_error = f"run stream file disabled: {error}"

    def _header(self):
        from klconform.harness.stream_header import header

        state = kl_session(self.config)
        if state.adapter is None:
            # xdist controller: the workers make the calls; the adapter is loaded here only to
            # describe it.
            try:
                from klconform.adapters import load_adapter

                state.adapter = load_adapter(state.impl, convention=state.convention)
            except Exception:
                state.adapter = None
        if state.manifest is None and state.adapter is not None:
            try:
                from klconform.harness.plugin import known_deviations

                state.manifest = known_deviations(self.config, state)
            except Exception:
                state.manifest = None
        try:
            from klconform.harness.plugin import loaded_cases
            from klconform.spec.claims import load_spec

            spec, cases = load_spec(), loaded_cases(self.config)
        except Exception:
            spec, cases = None, ()
        if not state.settings:
            from klconform.harness.hypothesis_profiles import describe

            state.settings = describe(state.profile, state.seed, state.max_examples)
        return header(state, cases, spec)

    def finish(self, exitstatus, partial=(), conformance_tests=None):
        """The footer: the run ended (a stream without one was cut short), and why it was
        partial if it was."""
        import time

        self._journal("footer", exitstatus=int(exitstatus), finished=time.time(),
                      partial=list(partial), conformance_tests=dict(conformance_tests or {}))

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
                     "test": self._test_id(report),
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
                 "test": self._test_id(report),
                 "case_id": _case_from_nodeid(report.nodeid), "level": "must",
                 "checks": [_last_line(report.longreprtext)]}
        kl_session(self.config).records.append(entry)
        self._journal("record", **entry)

    def _test_id(self, report):
        from klconform.harness.options import suite_test_id

        return suite_test_id(self.config.rootpath / report.location[0], report.nodeid)


def _is_conformance(report):
    return "klconform" in report.keywords


def _case_from_nodeid(nodeid):
    return nodeid.rsplit("[", 1)[-1].rstrip("]") if "[" in nodeid else nodeid


def _last_line(text):
    """pytest's failure text ends with the line that says what went wrong."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
