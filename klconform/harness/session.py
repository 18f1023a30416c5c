"""One klconform pytest session: its settings, fixed at start, and its state as it runs.

`RunSettings` is what the command line asked for, decided in pytest_configure and never
changed (xdist workers rebuild the same from the same options). `RunState` is what the run
learns and gathers: the implementation, the cases and what each test checks, the known
deviations, and the results. The collector (harness.collector) owns the state; the plugin's
hooks and fixtures read it through `run_state(config)`.
"""

import secrets
import time
from dataclasses import dataclass, field

import pytest

from klconform.constants import AUTO, DEFAULT_TIMEOUT_S
from klconform.errors import KLConformError

RECORD_KEY = "klconform"       # user_properties key of a result record
SETTINGS_KEY = pytest.StashKey["RunSettings"]()
STATE_KEY = pytest.StashKey["RunState"]()


@dataclass(frozen=True)
class RunSettings:
    impl: str
    report_dir: str
    requested: bool                      # --impl or --kl-only given: a conformance run
    strict: bool = False
    device: str = "cpu"
    profile: str = "default"
    seed: int | None = None              # None: the default profile's derandomized examples
    max_examples: int | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    cases_dir: str | None = None         # --kl-only-cases: these cases instead of the bundled
    extra_cases_dir: str | None = None   # --kl-cases: the user's cases beside the bundled ones
    xfails_path: str | None = None
    convention: str | None = None        # --kl-convention: the record file for --impl
    min_coverage: str | None = None      # --kl-min-coverage: '20' claims or '80%' of applicable
    journal_append: bool = False
    compile_ahead: str = AUTO            # --kl-compile-ahead: AUTO or OFF
    compile_cache: str | None = None     # --kl-compile-cache: a folder, 'off', None: the default
    calls_ahead: str = AUTO              # --kl-calls-ahead: AUTO or OFF
    options: tuple = ()                  # (name, value) of every klconform option, for replays


def choose_seed(profile, seed):
    """The thorough profile draws fresh examples from a seed chosen once, here, so that the
    report can name it for a replay; the default profile is derandomized and needs none."""
    if seed is None and profile == "thorough":
        return secrets.randbits(32)
    return seed


@dataclass
class RunState:
    settings: RunSettings
    started: float = field(default_factory=time.time)
    adapter: object = None
    cases: list | None = None
    identities: dict | None = None       # suite test id -> TestIdentity (harness.identity)
    manifest: object = None              # spec.deviations.Manifest
    hypothesis: dict = field(default_factory=dict)   # the example settings, as recorded
    records: list = field(default_factory=list)
    events: list = field(default_factory=list)       # the run stream, kept in memory as well
    journal: object = None               # the RunStream file, False once writing it failed
    report_paths: object = None          # report.build.Written, once written
    report_error: str | None = None
    gate_error: str | None = None        # why a requested conformance run fails as a whole
    load_error: str | None = None        # why the call worker cannot load --impl (xdist)
    collected: int = 0
    named_suites: list = field(default_factory=list)  # parts of the suites the command named
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

    def loaded_cases(self):
        if self.cases is None:
            from klconform.spec.cases import load_cases

            self.cases = load_cases(self.settings.cases_dir,
                                    extra_dirs=[self.settings.extra_cases_dir])
        return self.cases

    def test_identities(self):
        if self.identities is None:
            from klconform.harness.identity import identities

            self.identities = identities(self.loaded_cases())
        return self.identities

    def load_implementation(self, makes_calls=True):
        """The adapter for --impl: its calls made in the call worker, under the timeout. An
        xdist controller (`makes_calls` false) only describes it: no worker is started."""
        from klconform.engine.worker_protocol import implementation_spec

        settings = self.settings
        spec = implementation_spec(settings.impl, settings.convention, settings.timeout)
        try:
            if makes_calls:
                # Nothing else first: the worker's import of the library is what the first
                # call waits for.
                from klconform.engine.isolation import isolated

                self.adapter = isolated(spec)
            else:
                from klconform.adapters import load_adapter

                self.adapter = load_adapter(spec.impl, convention=spec.convention,
                                            describe_only=True)
        except KLConformError as error:
            raise pytest.UsageError(str(error)) from None
        return self.adapter

    def known_deviations(self):
        """The --kl-xfails manifest plus the deviations the implementation's record declares."""
        if self.manifest is None:
            from klconform.spec.deviations import Manifest, record_deviations

            manifest = self._load_manifest() if self.settings.xfails_path else Manifest([])
            record = getattr(self.adapter, "record", None)
            if record is not None and record.deviations:
                manifest = Manifest(manifest.deviations + record_deviations(record))
            self.manifest = manifest
        return self.manifest

    def _load_manifest(self):
        from klconform.engine.properties import BY_ID
        from klconform.spec.claims import load_spec
        from klconform.spec.deviations import load_manifest

        cases = self.loaded_cases()
        claims = {claim for case in cases for claim in case.claims} | set(load_spec().claims)
        try:
            return load_manifest(self.settings.xfails_path, {case.id for case in cases},
                                 claims, set(BY_ID))
        except KLConformError as error:
            raise pytest.UsageError(str(error)) from None

    def describe_hypothesis(self):
        if not self.hypothesis:
            from klconform.harness.hypothesis_profiles import describe

            settings = self.settings
            self.hypothesis = describe(settings.profile, settings.seed, settings.max_examples)
        return self.hypothesis


def run_settings(config) -> RunSettings:
    return config.stash[SETTINGS_KEY]


def run_state(config) -> RunState:
    return config.stash[STATE_KEY]


