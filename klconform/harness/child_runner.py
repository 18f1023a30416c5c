"""`klconform run`: pytest in a child process, surviving hard crashes of the implementation.

A segfault or os._exit inside the implementation kills the pytest process. The runner then
reads the journal, records the test that was running as errored ("crashed the process"),
and starts pytest again with that test deselected, until the run completes or too many
tests have crashed. The final report is rebuilt from the whole journal.
"""

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

from klconform.harness.run_stream import KEEP_JOURNAL_ENV, in_flight, read_journal

MAX_CRASHES = 10
# The conformance suites assert nothing with `assert` (records carry the verdicts) and log
# nothing: rewriting klconform's modules and capturing logs per test only cost time. The
# child exits as soon as its reports are written (klconform.harness.fast_exit).
CHILD_PYTEST_FLAGS = ("--assert=plain", "-p", "no:logging", "-p", "klconform.harness.fast_exit")


def run_isolated(pytest_args, report_dir, impl, settings):
    crashes = []
    started = time.time()
    while True:
        command = [sys.executable, "-m", "pytest", *CHILD_PYTEST_FLAGS, *pytest_args]
        command += [f"--deselect={crash['nodeid']}" for crash in crashes]
        if crashes:
            command.append("--kl-journal-append")
        returncode = subprocess.call(command, env={**os.environ, KEEP_JOURNAL_ENV: "1"})
        events = read_journal(report_dir)
        finished = bool(events) and events[-1]["event"] == "finished"
        if not events and not crashes:
            return returncode  # stopped before any test (usage or collection error)
        if finished and not crashes:
            _remove_journal(report_dir)
            return returncode
        if not finished:
            nodeid = in_flight(events)
            crashes.append({"nodeid": nodeid, "returncode": returncode,
                            "signal": _signal_name(returncode)})
            print(f"klconform: the implementation crashed the test process "
                  f"({_describe(returncode)}) during {nodeid or 'an unknown test'}",
                  file=sys.stderr)
            if nodeid is None or len(crashes) > MAX_CRASHES:
                return _write_merged(report_dir, impl, settings, events, crashes, started,
                                     exitstatus=3)
            continue
        return _write_merged(report_dir, impl, settings, events, crashes, started,
                             exitstatus=returncode)


def _write_merged(report_dir, impl, settings, events, crashes, started, exitstatus):
    from klconform.report.build import write_reports

    records = {}
    for event in events:
        if event["event"] == "record":
            entry = {key: value for key, value in event.items() if key != "event"}
            records[entry.get("nodeid")] = entry  # a re-run test: its last result wins
    for crash in crashes:
        if crash["nodeid"]:
            records[crash["nodeid"]] = {
                "kind": "crash", "nodeid": crash["nodeid"], "status": "errored",
                "checks": [f"the implementation crashed the test process "
                           f"({_describe(crash['returncode'])})"]}
    state = SimpleNamespace(
        impl=impl, adapter=None, records=list(records.values()), started=started,
        collected=len(records), cases_dir=settings.get("cases_dir"),
        profile=settings.get("profile", "default"), strict=settings.get("strict", False),
        device=settings.get("device", "cpu"), settings={}, report_dir=report_dir)
    paths = write_reports(state, exitstatus, crashes=crashes,
                          invocation=["klconform", "run", *sys.argv[2:]])
    _remove_journal(report_dir)
    print(f"klconform: {impl} {paths[2].upper()} after {len(crashes)} crash(es); "
          f"report: {paths[0]}")
    return 1 if paths[2] == "fail" else exitstatus


def _remove_journal(report_dir):
    from pathlib import Path

    from klconform.harness.run_stream import JOURNAL_NAME

    (Path(report_dir) / JOURNAL_NAME).unlink(missing_ok=True)


def _signal_name(returncode):
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return None


def _describe(returncode):
    name = _signal_name(returncode)
    return name if name else f"exit status {returncode}"
