"""The run stream: one JSON object per line, everything a report is built from.

    header   what ran: the implementation (description, version, capabilities, convention,
             its declared deviations), environment, settings, the known-deviation manifest;
    start    a test began, with what it checks (kind, case_id, dtype, claims, level, test),
             so a hard crash is pinned on the test that was running and counted against
             its claims;
    record   one result (an Outcome as data, with its per-claim results), with the same
             identity fields;
    footer   the run ended: pytest's exit status, and why it was partial if it was.

A stream without a footer was cut short. `klconform run` appends the streams of the pytest
processes it restarts after crashes to one file. The reports are a pure
function of a stream and spec/claims.yaml (klconform.report.build.build_report); the format
is spec/run-stream.schema.json, and a remote or out-of-process runner would emit the same.

Events are flushed as written, not fsynced: an implementation that kills the process leaves
the lines already written in the page cache, which is all the crash recovery needs.
"""

import json
from pathlib import Path

STREAM_NAME = "run.jsonl"
# Set by `klconform run` for its child: the runner reads the stream after the child exits.
KEEP_STREAM_ENV = "KLCONFORM_KEEP_STREAM"


class RunStream:
    def __init__(self, report_dir, append=False):
        self.path = Path(report_dir) / STREAM_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115

    def write(self, event, **fields):
        self._stream.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        # Flushed to the OS, which keeps it when the process dies; an fsync per event would
        # only add protection against the machine itself going down, at ~1 ms an event.
        self._stream.flush()

    def close(self):
        self._stream.close()


def _stream_file(path):
    """The stream file of a report dir, or the file itself."""
    path = Path(path)
    return path / STREAM_NAME if path.is_dir() else path


def read_stream(path):
    """The events of a stream file (a report dir or the file itself); [] if there is none."""
    path = _stream_file(path)
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break  # the line being written when the process died
    return events


def ended(path):
    """Whether the stream file's last line is its footer (the run wrote it to the end),
    read from the file's end: a whole run's stream takes 0.04 s to parse."""
    try:
        with open(_stream_file(path), "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - TAIL_BYTES))
            lines = handle.read().splitlines()
    except OSError:
        return False
    try:
        return bool(lines) and finished([json.loads(lines[-1])])
    except (ValueError, KeyError, TypeError):
        return False


# More than any footer takes: it holds the exit status, times and why a run was partial.
TAIL_BYTES = 1 << 16


def in_flight(events):
    """The start event of the test that started last and has no result: the test that killed
    the process; None if every test that started has one."""
    finished = {event.get("nodeid") for event in events if event["event"] == "record"}
    starts = [event for event in events if event["event"] == "start"]
    for start in reversed(starts):
        if start["nodeid"] not in finished:
            return start
    return None


def finished(events):
    return bool(events) and events[-1]["event"] == "footer"
