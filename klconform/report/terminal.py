"""The last lines a conformance run prints: root causes and the failing tests, capped.

A terminal is where a person first looks after `pytest --impl` or `klconform run`: one line
per root cause (klconform.report.root_causes) and the failing tests as ids pytest takes back
from any directory (`test_cases.py::test_case[ID]`, relative to the bundled suites). Long
lists stop at a cap and point at the report, which has everything.

Reads the report dict only.
"""

import shlex

from klconform.report.root_causes import root_causes
from klconform.statuses import FAILING

ROOT_CAUSE_LINES = 5
FAILING_TEST_LINES = 10
CLAIMS_NAMED = 3
LINE_LIMIT = 200


def _clip(text, limit=LINE_LIMIT):
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def summary_lines(report, rerun=None, report_path=None):
    """Lines (without the 'klconform: ' prefix) naming root causes and failing tests.

    `rerun` is the command a test id is appended to (harness/options.py replay_prefix)."""
    groups = root_causes(report)
    if not groups:
        return []
    where = report_path or "report.json"
    tests = sum(len(group.failures) for group in groups)
    lines = [f"{len(groups)} root cause{'s' * (len(groups) != 1)} of {tests} failing or "
             f"warning test{'s' * (tests != 1)}:"]
    for number, group in enumerate(groups[:ROOT_CAUSE_LINES], 1):
        count = len(group.failures)
        claims = ", ".join(group.claims[:CLAIMS_NAMED]) + (
            f" and {len(group.claims) - CLAIMS_NAMED} more" if len(group.claims) > CLAIMS_NAMED
            else "")
        tally = f" [{count} test{'s' * (count != 1)}; {claims}]"
        # The tally stays whole; a long title gives way.
        head = f"  {number}. "
        room = max(LINE_LIMIT - len(head) - len(tally), 60)
        lines.append(f"{head}{_clip(group.title, room)}{tally}")
    if len(groups) > ROOT_CAUSE_LINES:
        lines.append(f"  ... and {len(groups) - ROOT_CAUSE_LINES} more root causes "
                     f"(report.md beside {where})")
    failing = []
    for group in groups:  # the likeliest root cause's tests first
        for failure in group.failures:
            test = failure.get("test") or failure.get("nodeid")
            if failure.get("status") in FAILING and test and test not in failing:
                failing.append(test)
    if not failing:
        return lines
    lines.append("failing tests" + (f" (rerun one: {rerun} ID)" if rerun else "")
                 + ":")
    for test in failing[:FAILING_TEST_LINES]:
        lines.append(f"  {shlex.quote(test)}")
    if len(failing) > FAILING_TEST_LINES:
        lines.append(f"  ... and {len(failing) - FAILING_TEST_LINES} more in {where}")
    return lines
