"""Running the conformance suites in-process from klconform's own tests."""

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

from klconform import resources


@dataclass
class SuiteRun:
    result: object          # pytester.RunResult
    report_dir: Path

    @property
    def report(self):
        return json.loads((self.report_dir / "report.json").read_text(encoding="utf-8"))

    @property
    def output(self):
        return self.result.stdout.str() + self.result.stderr.str()

    def failing_claims(self):
        return {claim["id"] for claim in self.report["claims"] if claim["status"] == "fail"}


def suite_path(name="test_cases.py"):
    return str(resources.suites_dir() / name)


def run_suite(pytester, impl, *extra, suites=("test_cases.py",)):
    report_dir = pytester.path / "kl-report"
    result = pytester.runpytest_inprocess(
        *[suite_path(name) for name in suites], f"--impl={impl}",
        f"--report-dir={report_dir}", "-p", "no:cacheprovider", *extra)
    return SuiteRun(result, report_dir)


def implementation_module(pytester, name, source):
    """Write an importable module for --impl=MODULE:ATTR, put it on sys.path, return its name.

    The name is made unique per test: in-process runs share sys.modules, and a second
    module of the same name would otherwise be served from the first test's cache.
    """
    unique = f"{name}_{pytester.path.name}".replace("-", "_")
    pytester.makepyfile(**{unique: textwrap.dedent(source)})
    pytester.syspathinsert()
    return unique
