"""Root conftest: what klconform's own tests need beyond the installed plugin.

The klconform plugin itself is loaded through its pytest11 entry point (pyproject.toml),
never from here, so the suites behave the same inside and outside this repository.
"""

import contextlib
import os

import pytest

# Test modules whose tests run on one xdist worker, because they share what is made once per
# process: the mutation self-test's runs (its kill table reuses them) and the module-scoped
# whole runs of the third-party project and of the property layer.
KEPT_ON_ONE_WORKER = ("tests/test_mutation.py", "tests/test_third_party_project.py",
                      "tests/test_properties_layer.py")


def pytest_configure(config):
    _threads_shared_among_workers(config)
    # In-process pytester runs restore sys.modules afterwards, dropping modules first
    # imported during the run. Extension modules with native state (hypothesis' compiled
    # core, torch) cannot be imported a second time after that, so they are imported once,
    # up front. Only where pytester is on: with an editable install this file also loads in
    # a project outside the repository that runs the suites (`pytest --impl=numpy ...`), and
    # there importing torch would only cost its start-up seconds.
    if not config.pluginmanager.hasplugin("pytester"):
        return
    import hypothesis  # noqa: F401
    import hypothesis.strategies  # noqa: F401
    import yaml  # noqa: F401

    # The engine too: a test that meets the engine's exception classes after an in-process run
    # had imported them first would otherwise hold another copy of each, which the engine's
    # own `except` clauses do not catch.
    import klconform.engine.evaluate  # noqa: F401
    import klconform.engine.properties  # noqa: F401

    # torch is optional: library environments (mlx, jax, ...) run the suites without it.
    with contextlib.suppress(ImportError):
        import torch  # noqa: F401
        import torch.nn.functional  # noqa: F401


def _threads_shared_among_workers(config):
    """Under `-n N`, each worker, and every run and call worker it starts, gets its share of
    the cores for OpenMP. Left to itself torch gives every process all of them, and its
    threads spin waiting for work while another worker needs the core: measured on 2 cores,
    the suite under `-n 2` took 255 s with one thread each against 287 s (8 min 27 s of user
    CPU against 7 min 28 s). Set here, in the controller, before xdist starts its workers,
    which inherit it; a value already set is the user's and kept."""
    from klconform.machine import THREADS_VARIABLE, threads_per_process

    workers = config.getoption("numprocesses", None)
    if isinstance(workers, int) and workers > 1:
        os.environ.setdefault(THREADS_VARIABLE, str(threads_per_process(workers)))


# pytester is enabled with `-p pytester` in pyproject.toml, not with pytest_plugins here:
# with an editable install, a project outside this repository that runs the suites
# (`pytest --impl ...`) loads this file too, and pytest refuses pytest_plugins in a
# conftest that is not at its own rootdir.


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n`'s default distribution, test by test, except that each module of
    KEPT_ON_ONE_WORKER goes to one worker as a whole. xdist's `--dist loadgroup` would do it
    from `xdist_group` marks, but under pytest 9.2 it silently groups nothing: it renames node
    ids, which pytest no longer reads (pytest-dev/pytest-xdist#1386, open)."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesKeptTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            module = nodeid.split("::", 1)[0]
            return module if module in KEPT_ON_ONE_WORKER else nodeid

    return ModulesKeptTogether(config, log)
