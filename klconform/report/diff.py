"""`klconform diff OLD.json NEW.json`: what changed between two reports.

A regression is a claim or a case (at a dtype) that passed in the old report and fails in
the new one; a must-level regression is what a pull request gate stops on. So is a coverage
regression: a must-level claim the old report checked (a returned value was judged) and the
new one does not (unsupported, not run, every call erroring), since a gate that stops
checking a claim would otherwise pass it silently; `--allow-coverage-drop` lets the rare
intended drop through. Fixes, claims and cases that became unsupported, failures that did
not pass before, and what is no longer run are listed too, without changing the exit status.

Input is two report.json dicts; nothing here runs or loads an implementation.
"""

from dataclasses import dataclass, field

from klconform.report.build import REPORT_SCHEMA_VERSION
from klconform.report.markdown import cell
from klconform.statuses import FAILING, JUDGED, ClaimStatus, Level, Status, strictest

# What a change from a failure to these counts as: fixed.
PASSING_CLAIM = frozenset({ClaimStatus.PASS, ClaimStatus.WARN, ClaimStatus.RECORDED,
                           ClaimStatus.KNOWN_DEVIATION})
PASSING_CASE = frozenset({Status.PASSED, Status.WARNED, Status.RECORDED, Status.XFAILED,
                          Status.STALE})
MARKDOWN_CASE_ROWS = 20


class ReportError(ValueError):
    """The file is not a klconform report."""


@dataclass(frozen=True)
class Change:
    kind: str        # "claim" or "case"
    name: str        # claim id, or "case-id[dtype]"
    level: str
    old: str
    new: str
    detail: str = ""


@dataclass
class Diff:
    old_label: str
    new_label: str
    regressions: list = field(default_factory=list)
    fixes: list = field(default_factory=list)
    new_unsupported: list = field(default_factory=list)
    new_failures: list = field(default_factory=list)     # failing now, not passing before
    no_longer_run: list = field(default_factory=list)
    coverage_drops: list = field(default_factory=list)   # must claims checked before, not now
    allow_coverage_drop: bool = False

    @property
    def must_regressions(self):
        return [change for change in self.regressions if change.level == Level.MUST]

    @property
    def gating_coverage_drops(self):
        return [] if self.allow_coverage_drop else self.coverage_drops

    @property
    def exit_status(self):
        return 1 if self.must_regressions or self.gating_coverage_drops else 0

    SECTIONS = (("regressions", "Regressions (passed before, fail now)"),
                ("coverage_drops", "Coverage regressions (must-level claims checked before, "
                                   "not checked now)"),
                ("new_failures", "Failing, and not passing before"),
                ("fixes", "Fixed (failed before, pass now)"),
                ("new_unsupported", "Newly unsupported"),
                ("no_longer_run", "No longer run"))


def check_report(report, label):
    if not isinstance(report, dict) or "claims" not in report or "report_schema" not in report:
        raise ReportError(f"{label}: not a klconform report.json (no 'report_schema'/'claims')")
    if report["report_schema"] != REPORT_SCHEMA_VERSION:
        raise ReportError(f"{label}: report schema {report['report_schema']!r} is not "
                          f"supported (expected {REPORT_SCHEMA_VERSION!r})")
    return report


def _claims(report):
    return {claim["id"]: claim for claim in report["claims"]}


def _cases(report):
    """(case, dtype) -> (status, level, claims) over every claim's case list."""
    levels = {claim["id"]: claim.get("level", Level.MUST) for claim in report["claims"]}
    cases = {}
    for claim in report["claims"]:
        for entry in claim.get("cases") or ():
            key = (entry.get("case"), entry.get("dtype"))
            status, level, claims = cases.get(key, (entry["status"], None, []))
            claims.append(claim["id"])
            level = strictest((level, levels.get(claim["id"])), default=Level.MUST)
            cases[key] = (status, level, claims)
    for failure in report.get("failures") or ():
        key = (failure.get("case"), failure.get("dtype"))
        if key in cases and failure.get("level"):
            status, _, claims = cases[key]
            cases[key] = (status, failure["level"], claims)
    return cases


def _failure_text(report, case, dtype):
    for failure in report.get("failures") or ():
        if failure.get("case") == case and failure.get("dtype") == dtype:
            return failure.get("diagnosis") or failure.get("summary") or ""
    return ""


def checked(claim):
    """Whether a report judged a returned value for this claim (report/build.py); reports
    written before the field existed counted every pass, fail, warning or deviation."""
    if "checked" in claim:
        return bool(claim["checked"])
    return any(status in JUDGED for status in claim.get("counts") or ())


def _why_unchecked(claim):
    status = claim.get("status")
    if status == ClaimStatus.UNSUPPORTED:
        reasons = claim.get("reasons") or ()
        return "unsupported" + (f": {reasons[0]}" if reasons else "")
    if status == ClaimStatus.NOT_RUN:
        return "not run in this report (deselected, or not collected)"
    return f"{status}, but no call returned a value to judge (every call errored)"


def compare(old, new, old_label="old", new_label="new", allow_coverage_drop=False):
    check_report(old, old_label)
    check_report(new, new_label)
    diff = Diff(old_label, new_label, allow_coverage_drop=allow_coverage_drop)
    old_claims, new_claims = _claims(old), _claims(new)
    for claim_id, claim in new_claims.items():
        before = old_claims.get(claim_id, {}).get("status", "absent")
        now = claim.get("status")
        level = claim.get("level", Level.MUST)
        failing_cases = [f"{e.get('case')}[{e.get('dtype')}]" for e in claim.get("cases") or ()
                         if e.get("status") in FAILING]
        detail = ", ".join(failing_cases[:3]) + (" ..." if len(failing_cases) > 3 else "")
        change = Change("claim", claim_id, level, before, now, detail)
        if before in PASSING_CLAIM and now == ClaimStatus.FAIL:
            diff.regressions.append(change)
            continue
        if level == Level.MUST and claim_id in old_claims and checked(old_claims[claim_id]) \
                and not checked(claim):
            diff.coverage_drops.append(Change("claim", claim_id, level, before, now,
                                              _why_unchecked(claim)))
            continue
        _classify(diff, change,
                  before in PASSING_CLAIM, before == ClaimStatus.FAIL, now == ClaimStatus.FAIL,
                  now in PASSING_CLAIM, now == ClaimStatus.UNSUPPORTED,
                  now == ClaimStatus.NOT_RUN)
    old_cases, new_cases = _cases(old), _cases(new)
    for (case, dtype), (now, level, _) in sorted(new_cases.items(), key=_key):
        before = old_cases.get((case, dtype), ("absent",))[0]
        _classify(diff, Change("case", f"{case}[{dtype}]", level, before, now,
                               _failure_text(new, case, dtype)),
                  before in PASSING_CASE, before in FAILING, now in FAILING,
                  now in PASSING_CASE, now == Status.UNSUPPORTED, False)
    for (case, dtype), (before, level, _) in sorted(old_cases.items(), key=_key):
        if (case, dtype) not in new_cases and before in PASSING_CASE:
            diff.no_longer_run.append(Change("case", f"{case}[{dtype}]", level, before,
                                             "not run"))
    return diff


def _key(item):
    (case, dtype), _ = item
    return (str(case), str(dtype))


def _classify(diff, change, passed_before, failed_before, fails_now, passes_now,
              unsupported_now, not_run_now):
    if fails_now and passed_before:
        diff.regressions.append(change)
    elif fails_now and not failed_before:
        diff.new_failures.append(change)
    elif passes_now and failed_before:
        diff.fixes.append(change)
    elif unsupported_now and change.old != ClaimStatus.UNSUPPORTED:
        diff.new_unsupported.append(change)
    elif not_run_now and passed_before:
        diff.no_longer_run.append(change)


def _verdict_line(diff, old, new):
    must = len(diff.must_regressions)
    drops = len(diff.coverage_drops)
    return (f"{old.get('verdict', '?')} -> {new.get('verdict', '?')}; "
            f"{len(diff.regressions)} regression(s), {must} at must level; "
            f"{drops} coverage regression(s)"
            + (" (allowed by --allow-coverage-drop)" if drops and diff.allow_coverage_drop
               else "")
            + f"; {len(diff.fixes)} fix(es); {len(diff.new_unsupported)} newly unsupported; "
            + _coverage_figures(old, new))


def _coverage_figures(old, new):
    def figure(report):
        coverage = report.get("coverage") or {}
        return f"{coverage.get('checked', '?')}/{coverage.get('applicable', '?')}"

    return f"coverage {figure(old)} -> {figure(new)}"


def render_text(diff, old, new):
    lines = [f"klconform diff {diff.old_label} -> {diff.new_label}: "
             + _verdict_line(diff, old, new)]
    for attribute, title in Diff.SECTIONS:
        changes = getattr(diff, attribute)
        if not changes:
            continue
        lines.append(f"{title}:")
        for change in changes:
            detail = f" — {' '.join(str(change.detail).split())[:200]}" if change.detail else ""
            lines.append(f"  {change.kind} {change.name} ({change.level}): "
                         f"{change.old} -> {change.new}{detail}")
    return "\n".join(lines) + "\n"


def render_markdown(diff, old, new):
    impl = (new.get("implementation") or {}).get("name", "")
    if diff.must_regressions:
        headline = "**Must-level regressions: this change breaks the specification.**"
    elif diff.gating_coverage_drops:
        headline = ("**Coverage regressions: must-level claims checked before are not "
                    "checked now.**")
    else:
        headline = "No must-level regression."
    lines = [f"## klconform diff: {cell(impl)}", "", headline, "",
             cell(_verdict_line(diff, old, new)), ""]
    for attribute, title in Diff.SECTIONS:
        changes = getattr(diff, attribute)
        if not changes:
            continue
        lines += [f"### {title}", "", "| | name | level | before | now | detail |",
                  "|---|---|---|---|---|---|"]
        # One bug fails many cases; a comment lists every claim and the first cases.
        claims = [change for change in changes if change.kind == "claim"]
        cases = [change for change in changes if change.kind != "claim"]
        left_out = max(0, len(cases) - MARKDOWN_CASE_ROWS)
        for change in claims + cases[:MARKDOWN_CASE_ROWS]:
            lines.append(f"| {change.kind} | {cell(change.name)} | {cell(change.level)} | "
                         f"{cell(change.old)} | {cell(change.new)} | "
                         f"{cell(str(change.detail)[:300])} |")
        if left_out:
            lines.append(f"| | ... and {left_out} more cases (`klconform diff` without "
                         f"--format lists them all) | | | | |")
        lines.append("")
    return "\n".join(lines)
