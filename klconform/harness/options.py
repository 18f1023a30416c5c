"""The run options, declared once: the pytest plugin and `klconform run` are both built from
this table, so the two spellings cannot drift apart.

Each option has a pytest spelling (`--kl-strict`) and, unless it is internal to pytest
runs, a `klconform run` spelling (`--strict`). The CLI turns its own arguments back into
the pytest spelling for the child pytest it starts (`pytest_arguments`).
"""

import argparse
import functools
import os
import re
import shlex
from dataclasses import dataclass

from klconform.constants import AUTO, DEFAULT_TIMEOUT_S, OFF
from klconform.report.gate import parse_min_coverage


@dataclass(frozen=True)
class Option:
    name: str                  # the attribute on config.option / the argparse namespace
    pytest: str                # pytest spelling
    cli: str | None            # `klconform run` spelling; None: pytest only
    help: str
    type: type = str
    default: object = None
    flag: bool = False
    choices: tuple = ()
    path: bool = False         # relative paths are made absolute before they reach the child
    replay: bool = True        # part of the command that replays one test
    hidden: bool = False

    def argparse_kwargs(self, for_pytest):
        kwargs = {"dest": self.name, "default": self.default,
                  "help": argparse.SUPPRESS if self.hidden else self.help}
        if self.flag:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = self.type
            if self.choices:
                kwargs["choices"] = self.choices
        if for_pytest and self.name == "impl":
            # pytest's parser is shared by every project: the default is resolved later, so
            # the plugin can tell "--impl given" (run the conformance suites) from "not given".
            kwargs["default"] = None
        return kwargs


IMPL_HELP = ("implementation under test: torch (default), torch-module, numpy, an entry point "
             "in group klconform.adapters, MODULE:ATTR or MODULE")
IMPL_ENV = "KLCONFORM_IMPL"
DEFAULT_IMPL = "torch"

def _ahead(name, pytest_spelling, cli_spelling, help_text):
    """An option that has work done ahead of the run's calls where it pays (AUTO), or not
    (OFF): how a run gets its results, never what they are, so a replay leaves it out."""
    return Option(name, pytest_spelling, cli_spelling, help_text, default=AUTO,
                  choices=(AUTO, OFF), replay=False)


OPTIONS = (
    Option("impl", "--impl", "--impl", IMPL_HELP, default=DEFAULT_IMPL),
    Option("report_dir", "--report-dir", "--report-dir",
           "where report.json, report.md and junit.xml go (default: ./reports/<impl>/)",
           path=True, replay=False),
    Option("kl_strict", "--kl-strict", "--strict",
           "should-level failures (and stale known deviations) fail the run too", flag=True,
           default=False),
    Option("kl_device", "--kl-device", "--device", "device for adapters that have devices",
           default="cpu"),
    Option("kl_profile", "--kl-profile", "--profile",
           "thorough adds large-data cases and more generated examples",
           default="default", choices=("default", "thorough")),
    Option("kl_cases", "--kl-cases", "--cases",
           "directory of your own case files, run beside the bundled ones", path=True),
    Option("kl_only_cases", "--kl-only-cases", "--only-cases",
           "directory of case files run instead of the bundled ones", path=True),
    Option("kl_xfails", "--kl-xfails", "--xfails",
           "YAML manifest of known deviations (case or claim id -> reason, link)", path=True),
    Option("kl_seed", "--kl-seed", "--seed",
           "seed for the property layer's random examples (thorough profile)", type=int),
    Option("kl_max_examples", "--kl-max-examples", "--max-examples",
           "examples per property (default 25, thorough 400)", type=int),
    Option("kl_convention", "--kl-convention", "--convention",
           "implementation record (YAML, spec/implementation.schema.json) saying how the "
           "--impl MODULE:ATTR function is called; without it a plain callable is held to "
           "torch's convention", path=True),
    Option("kl_timeout", "--kl-timeout", "--timeout",
           "seconds one implementation call may take before it fails (0: none)",
           type=float, default=DEFAULT_TIMEOUT_S),
    # Not replayed: one test replayed alone would fall short of a run-wide minimum.
    Option("kl_min_coverage", "--kl-min-coverage", "--min-coverage",
           "fail the run unless at least N claims were checked (N), or N percent of the "
           "applicable ones (N%%); a claim is checked where a returned value was judged. "
           "Without it a run must still check one claim",
           type=parse_min_coverage, replay=False),
    _ahead("kl_compile_ahead", "--kl-compile-ahead", "--compile-ahead",
           "for a record that compiles each new shape (jax, optax, keras on jax): 'auto' "
           "compiles its calls' programs ahead of them in a second process (more CPU, less "
           "waiting); 'off' leaves every compilation to the call that needs it"),
    _ahead("kl_calls_ahead", "--kl-calls-ahead", "--calls-ahead",
           "'auto' makes the implementation's calls ahead of the tests in a second process "
           "where a core is free for it (the same calls, so the same results, with less "
           "waiting); 'off' makes each call when its test needs it (an implementation whose "
           "results depend on the calls made before)"),
    Option("kl_compile_cache", "--kl-compile-cache", "--compile-cache",
           "for a record that compiles each new shape (jax, optax, keras on jax): the folder "
           "its compiled programs are kept in between runs, so that a later run loads them "
           "(default: klconform/compiled in the user's cache folder, $XDG_CACHE_HOME or "
           "~/.cache); 'off' keeps them for the run only",
           default=None, replay=False),
    Option("kl_only", "--kl-only", None,
           "run only the bundled conformance suites, not this project's tests; test ids "
           "relative to the suites (test_cases.py::test_case[ID]) select from them",
           flag=True, default=False, replay=False),
    Option("kl_workers", "--kl-workers", None,
           "'auto': run serially or split over pytest-xdist workers, whichever is faster "
           "for this implementation on this machine, and say which (what `klconform run` "
           "passes unless -n follows --)", choices=(AUTO,), replay=False),
    # `klconform run` resuming after a crash appends to the journal of the first attempt.
    Option("kl_journal_append", "--kl-journal-append", None, "", flag=True, default=False,
           replay=False, hidden=True),
)
BY_NAME = {option.name: option for option in OPTIONS}


def add_pytest_options(group):
    for option in OPTIONS:
        group.addoption(option.pytest, **option.argparse_kwargs(for_pytest=True))


def add_cli_options(parser):
    for option in OPTIONS:
        if option.cli:
            parser.add_argument(option.cli, **option.argparse_kwargs(for_pytest=False))


def pytest_arguments(values, cwd=None):
    """The pytest spelling of option values (a namespace or dict keyed by option name).

    Options at their default are left out; paths are made absolute against cwd.
    """
    values = vars(values) if not isinstance(values, dict) else values
    arguments = []
    for option in OPTIONS:
        value = values.get(option.name, option.default)
        if value is None or value == option.default:
            continue
        if option.flag:
            arguments.append(option.pytest)
        else:
            if option.path:
                value = os.path.abspath(os.path.join(cwd or os.getcwd(), value))
            arguments.append(f"{option.pytest}={value}")
    return arguments


def suite_test_id(path, nodeid):
    """A conformance test's id relative to the bundled suites (`test_cases.py::test_case[ID]`),
    the form pytest --impl resolves from any directory; the nodeid itself for a test that is
    not in the suites. Outside the rootdir pytest names a suite test `::test_case[ID]`."""
    if "::" not in nodeid:
        return nodeid
    relative = _relative_to_suites(str(path))
    return nodeid if relative is None else f"{relative}::{nodeid.split('::', 1)[1]}"


@functools.lru_cache(maxsize=64)
def _relative_to_suites(path):
    """A test file's path relative to the bundled suites, or None: asked for every test's
    start, and resolving a path reads the file system."""
    from pathlib import Path

    from klconform import resources

    suites = resources.suites_dir().resolve()
    resolved = Path(path).resolve()
    return resolved.relative_to(suites).as_posix() if suites in resolved.parents else None


def replay_prefix(settings):
    """`python -m pytest --kl-only --impl=X ...`: the command a suite test id is appended to,
    to run it again from any directory.

    `python -m pytest` puts the current directory on sys.path as `klconform run` does, so an
    --impl module found there is found again. The replay writes its report beside the run's,
    under replay/, rather than over it.
    """
    values = {name: value for name, value in settings.options
              if name in BY_NAME and BY_NAME[name].replay and name != "impl"}
    if settings.seed is not None:
        values["kl_seed"] = settings.seed  # the seed the run drew, when it chose one itself
    report_dir = os.path.join(settings.report_dir, "replay")
    relative = os.path.relpath(report_dir)
    words = ["python", "-m", "pytest", "--kl-only", f"--impl={settings.impl}",
             *pytest_arguments(values),
             f"--report-dir={report_dir if relative.startswith('..') else relative}"]
    return " ".join(shlex.quote(word) for word in words)


def replay_command(test, settings):
    """A command that runs this one conformance test again, from any directory: `test` is
    named relative to the bundled suites (resolved there by --kl-only)."""
    return f"{replay_prefix(settings)} {shlex.quote(test)}"


def default_report_dir(base_dir, impl):
    """reports/<impl>/ under base_dir: runs against several implementations sit side by side."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", impl).strip("_") or "impl"
    return os.path.join(str(base_dir), "reports", slug)
