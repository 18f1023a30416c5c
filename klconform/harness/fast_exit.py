"""Ending the `klconform run` child the moment its reports are written.

Loaded only in that child (klconform.harness.child_runner.CHILD_PYTEST_FLAGS). Tearing the
interpreter down (torch's modules, hypothesis' caches, a garbage collection) takes most of a
second and writes nothing: the report, the journal and the terminal summary are flushed by
then, and the runner reads only the exit status.
"""

import os
import sys

import pytest

_SESSION = pytest.StashKey[pytest.Session]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    # The status is read at unconfigure, not here: another sessionfinish (klconform's
    # coverage gate) may still change it after this one.
    session.config.stash[_SESSION] = session


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    session = config.stash.get(_SESSION, None)
    status = None if session is None else int(session.exitstatus)
    if status not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        # Interrupted, a usage or internal error: pytest still has things to print.
        return
    from klconform.engine import isolation

    isolation.shutdown(now=True)
    writer = config.get_terminal_writer()
    writer.flush()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(status)
