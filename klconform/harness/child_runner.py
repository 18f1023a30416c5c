"""`klconform run`: pytest in a child process, surviving hard crashes of the implementation.

A segfault or os._exit inside the implementation kills the pytest process. The runner then
reads the run stream, records the test that was running as errored ("crashed the process"),
and starts pytest again with that test deselected and the stream appended to, until the run
completes or too many tests have crashed. The report is rebuilt from the whole stream.
"""

import signal
import subprocess
import sys
import time

from klconform.harness.identity import errored
from klconform.harness.run_stream import RunStream, ended, finished, in_flight, read_stream
from klconform.statuses import Status, Verdict

MAX_CRASHES = 10
# The conformance suites assert nothing with `assert` (records carry the verdicts) and log
# nothing: rewriting klconform's modules and capturing logs per test only cost time. The
# child exits as soon as its reports are written (klconform.harness.fast_exit), without
# pytest's last full garbage collection (50 ms), which only turns an exception raised in a
# finalizer into a warning: this process runs no implementation code, and Python's own hook
# still prints one.
CHILD_PYTEST_FLAGS = ("--assert=plain", "-p", "no:logging", "-p", "no:unraisableexception",
                      "-p", "klconform.harness.fast_exit")


def run_surviving_crashes(pytest_args, report_dir):
    crashes = []
    while True:
        command = [sys.executable, "-m", "pytest", *CHILD_PYTEST_FLAGS, *pytest_args]
        command += [f"--deselect={crash['nodeid']}" for crash in crashes]
        if crashes:
            command.append("--kl-journal-append")
        returncode = subprocess.call(command)
        if not crashes and ended(report_dir):
            return returncode
        events = read_stream(report_dir)
        if not events and not crashes:
            return returncode  # stopped before any test (usage or collection error)
        if finished(events) and not crashes:
            return returncode
        if not finished(events):
            started = in_flight(events)
            nodeid = started["nodeid"] if started else None
            crash = {"nodeid": nodeid, "returncode": returncode,
                     "signal": _signal_name(returncode)}
            crashes.append(crash)
            _append_crash(report_dir, crash, started)
            print(f"klconform: the implementation crashed the test process "
                  f"({_describe(returncode)}) during {nodeid or 'an unknown test'}",
                  file=sys.stderr)
            if nodeid is None or len(crashes) > MAX_CRASHES:
                return _rewrite_report(report_dir, crashes, exitstatus=3)
            continue
        return _rewrite_report(report_dir, crashes, exitstatus=returncode)


def _append_crash(report_dir, crash, started):
    """The crash, and an errored record for the test that was running, counted against what
    its start event says it checks."""
    stream = RunStream(report_dir, append=True)
    stream.write("crash", crash=crash, time=time.time())
    if started:
        identity = errored({key: value for key, value in started.items() if key != "event"})
        stream.write("record", **identity, status=Status.ERRORED,
                     checks=[f"the implementation crashed the test process "
                             f"({_describe(crash['returncode'])})"])
    stream.close()


def _rewrite_report(report_dir, crashes, exitstatus):
    from klconform.report.build import write_reports

    events = read_stream(report_dir)
    if not finished(events):
        RunStream(report_dir, append=True).write(
            "footer", exitstatus=exitstatus, finished=time.time(),
            partial=[f"stopped after {len(crashes)} crashes"])
        events = read_stream(report_dir)
    written = write_reports(events, report_dir)
    print(f"klconform: {written.verdict.upper()} after {len(crashes)} crash(es); "
          f"report: {written.json}")
    gate = written.report["gate"]
    if not gate["passed"]:
        print(f"klconform: FAILED: {gate['reason']}")
    return 1 if written.verdict == Verdict.FAIL or not gate["passed"] else exitstatus


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
