"""The same implementation and seed give the same verdict whatever the install layout (a source
checkout or the wheel's bundled suites), the working directory, the hash seed and the number
of xdist workers: nothing that seeds the examples may depend on paths, node ids or hashing."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
IMPL = "tests.example_sensitive:wrong_on_some_sizes"
# Fewer examples than the default keeps the test short; seeding is the same at any count.
SELECTION = ("--max-examples", "10", "--", "-k", "test_properties")


def wheel_layout(site):
    """klconform as the wheel installs it: the package with spec, cases, suites in _bundle."""
    package = site / "klconform"
    shutil.copytree(REPOSITORY / "klconform", package,
                    ignore=shutil.ignore_patterns("__pycache__", "_bundle"))
    for folder in ("spec", "cases", "suites"):
        shutil.copytree(REPOSITORY / folder, package / "_bundle" / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return site


def start(directory, hash_seed, *extra, site=None):
    directory.mkdir(parents=True)
    path = [str(site)] if site else []
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed),
               PYTHONPATH=os.pathsep.join([*path, str(REPOSITORY)]))
    return subprocess.Popen(
        [sys.executable, "-m", "klconform.cli.main", "run", f"--impl={IMPL}",
         "--report-dir", str(directory / "report"), *SELECTION, "-p", "no:cacheprovider",
         "-rf", *extra], cwd=directory, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


def failing(process, directory):
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 1, output[-3000:]
    report = json.loads((directory / "report" / "report.json").read_text())
    by_report = {(failure["case"], failure["dtype"]) for failure in report["failures"]}
    by_pytest = set(re.findall(r"^FAILED \S*::(\S+)", output, re.MULTILINE))
    return by_report, by_pytest, output


@pytest.mark.slow
def test_failing_tests_are_the_same_across_installs_directories_hash_seeds_and_workers(
        tmp_path):
    # Two runs that differ in everything at once: install layout, working directory, hash
    # seed and worker count. Equal results mean none of them changes the examples.
    # Under a site-packages folder, as pip installs it: hypothesis takes literal constants
    # from "local" modules only, so a checkout and an installed wheel would draw different
    # examples unless klconform keeps those constants out.
    site = wheel_layout(tmp_path / "lib" / "site-packages")
    checkout = start(tmp_path / "a", 0, "-n", "2")
    wheel = start(tmp_path / "b" / "elsewhere", 12345, site=site)
    checkout_report, checkout_ids, _ = failing(checkout, tmp_path / "a")
    wheel_report, wheel_ids, wheel_output = failing(wheel, tmp_path / "b" / "elsewhere")
    assert "_bundle/suites/test_properties.py::" in wheel_output  # the copy is what ran
    # Some property tests fail and some pass: the verdict depends on the drawn examples.
    assert checkout_report and len(checkout_report) < 11 * 4
    assert wheel_report == checkout_report, sorted(wheel_report ^ checkout_report)
    assert wheel_ids == checkout_ids, sorted(wheel_ids ^ checkout_ids)


def test_no_local_constant_reaches_the_draws_and_the_pool_comes_back_after():
    from hypothesis.internal.conjecture import providers

    from klconform.engine.properties import without_local_constants

    outside = providers._get_local_constants
    with without_local_constants():
        assert len(providers._get_local_constants()) == 0
        assert len(providers.CONSTANTS_CACHE.cache) == 0
    assert providers._get_local_constants is outside
