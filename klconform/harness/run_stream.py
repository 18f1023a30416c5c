"""An append-only record of a run, so a run killed by its implementation still has a report.

The plugin (serial run or xdist controller) appends one JSON line per test start and per
result, flushed as it goes. If the process dies hard (segfault, os._exit), `klconform run`
reads the journal, names the test that was running, and writes the report itself.
"""

import json
from pathlib import Path

JOURNAL_NAME = "journal.jsonl"
# Set by `klconform run` for its child: the runner reads the journal and removes it itself.
KEEP_JOURNAL_ENV = "KLCONFORM_KEEP_JOURNAL"


class Journal:
    def __init__(self, report_dir, append=False):
        self.path = Path(report_dir) / JOURNAL_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115

    def write(self, event, **fields):
        self._stream.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        # Flushed to the OS, which keeps it when the process dies; an fsync per event would
        # only add protection against the machine itself going down, at ~1 ms an event.
        self._stream.flush()

    def close(self, remove=False):
        self._stream.close()
        if remove:
            self.path.unlink(missing_ok=True)


def read_journal(report_dir):
    path = Path(report_dir) / JOURNAL_NAME
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break  # the line being written when the process died
    return events


def in_flight(events):
    """The nodeid that started last and has no result: the test that killed the process."""
    finished = {event.get("nodeid") for event in events if event["event"] == "record"}
    starts = [event["nodeid"] for event in events if event["event"] == "start"]
    for nodeid in reversed(starts):
        if nodeid not in finished:
            return nodeid
    return None
