"""klconform's own test runs under -n: conftest.py's scheduler keeps each module that shares
runs made once per process on one worker, and deals every other test singly."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def root_conftest():
    spec = importlib.util.spec_from_file_location("klconform_root_conftest",
                                                  ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class XdistConfig:
    """What xdist's schedulers read of the configuration."""

    def __init__(self, dist):
        self.values = {"dist": dist, "tx": ["2*popen"]}

    def getvalue(self, name):
        return self.values[name]


def test_each_kept_module_is_one_scope_and_every_other_test_its_own():
    pytest.importorskip("xdist")
    conftest = root_conftest()
    scheduler = conftest.pytest_xdist_make_scheduler(XdistConfig("load"), None)
    for module in conftest.KEPT_ON_ONE_WORKER:
        assert {scheduler._split_scope(f"{module}::test_one[a-b]"),
                scheduler._split_scope(f"{module}::test_two")} == {module}
    other = "tests/test_oracle.py::test_divisor_rules"
    assert scheduler._split_scope(other) == other


def test_every_kept_module_exists():
    # A renamed module would silently go back to being dealt test by test, its shared runs
    # made on every worker.
    for module in root_conftest().KEPT_ON_ONE_WORKER:
        assert (ROOT / module).is_file(), module


def test_an_explicit_distribution_is_left_to_xdist():
    pytest.importorskip("xdist")
    assert root_conftest().pytest_xdist_make_scheduler(XdistConfig("loadfile"), None) is None
