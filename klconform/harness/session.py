"""The state of one klconform pytest session, shared by the plugin's hooks."""

import os
import re
import time
from dataclasses import dataclass, field

import pytest

from klconform.constants import DEFAULT_TIMEOUT_S

RECORD_KEY = "klconform"       # user_properties key of a result record
SESSION_KEY = pytest.StashKey["KLSession"]()


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
    seed: int | None = None
    max_examples: int | None = None
    settings: dict = field(default_factory=dict)
    xfails_path: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    journal_append: bool = False
    convention: str | None = None      # --kl-convention: the record file for --impl
    min_coverage: str | None = None    # --kl-min-coverage: '20' claims or '80%' of applicable
    journal: object = None             # the RunStream file, False once writing it failed
    events: list = field(default_factory=list)  # the run stream, kept in memory as well
    manifest: object = None
    report_paths: tuple | None = None
    report_error: str | None = None
    gate_error: str | None = None        # why a requested conformance run fails as a whole
    collected: int = 0
    extra_cases_dir: str | None = None   # --kl-cases: the user's cases beside the bundled ones
    requested: bool = False              # --impl or --kl-only given: a conformance run
    named_suites: list = field(default_factory=list)  # parts of the suites the command named
    options: dict = field(default_factory=dict)  # the klconform options, by name (for replays)
    # Why this run does not cover every conformance test, one readable reason each
    # ("-k worked deselected 280 of 326 conformance tests"); empty for a complete run.
    partial: list = field(default_factory=list)
    # Conformance tests: collected before any selection, selected to run, actually run.
    conformance_tests: dict = field(
        default_factory=lambda: {"available": 0, "selected": 0, "run": 0})

    deselected: int = 0                  # conformance tests deselected (-k, -m, --deselect...)

    def note_partial(self, reason):
        if reason not in self.partial:
            self.partial.append(reason)


def kl_session(config) -> KLSession:
    return config.stash[SESSION_KEY]


def default_report_dir(base_dir, impl):
    """reports/<impl>/ under base_dir: runs against several implementations sit side by side."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", impl).strip("_") or "impl"
    return os.path.join(str(base_dir), "reports", slug)
