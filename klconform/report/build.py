"""The reports (report.json, report.md, report-full.md, junit.xml) from a run stream and
the claims, and nothing else.

The stream (klconform.harness.run_stream) carries the implementation's description, the
settings and every result; the claims come from spec/claims.yaml. Nothing here imports an
adapter, the engine or the case loader, so a saved stream rebuilds the same report on a
machine where the implementation cannot even be imported.

Layout of report.json: spec/report.schema.json. Files are written atomically and readable
by everyone (0644): they are CI artefacts.
"""

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from klconform import __version__
from klconform.constants import NOT_RUN_ERROR, STREAM_FORMAT
from klconform.errors import KLConformError
from klconform.files import write_atomically
from klconform.report.gate import gate_reason
from klconform.statuses import (
    CLAIM_PRECEDENCE,
    CLAIM_STATUS,
    FAILING,
    JUDGED,
    JUDGED_LEVELS,
    STATUSES,
    ClaimStatus,
    Status,
    Verdict,
)

REPORT_SCHEMA_VERSION = "2"


class StreamFormatError(KLConformError):
    """The run stream cannot be made into a report."""
# The engine's own exceptions about a call, which the engine words as "the implementation
# raised ...": klconform raised them (a result of the wrong type, a device it lacks, a call
# its circuit breaker did not make).
KLCONFORM_RAISED = re.compile(
    r"\bthe implementation raised "
    rf"(?P<type>(?:[\w]+\.)*(?:ImplementationResultError|{NOT_RUN_ERROR}))\b"
    r"(?P<where> on the .*? call)?: (?:returned )?")


def build_report(events, spec):
    """The report dict of one stream (several pytest processes' events, in order)."""
    headers = [event for event in events if event["event"] == "header"]
    footers = [event for event in events if event["event"] == "footer"]
    head = headers[0] if headers else {}
    foot = footers[-1] if footers else None
    check_stream_format(head)
    records = _records(events)
    summary = {status: 0 for status in STATUSES}
    for record in records:
        status = record.get("status", Status.SKIPPED)
        summary[status] = summary.get(status, 0) + 1
    summary["total"] = len(records)
    run = dict(head.get("run") or {})
    started = run.get("started") or 0.0
    ended = foot.get("finished", started) if foot else _last_time(events, started)
    exitstatus = foot.get("exitstatus", 3) if foot else 3
    partial = list(foot.get("partial") or ()) if foot else []
    if not foot:
        partial.append("the run was cut short (the stream has no footer)")
    crashes = [event["crash"] for event in events if event["event"] == "crash"]
    complete = bool(foot) and exitstatus in (0, 1) and not partial and bool(records)
    claims = _claims_section(records, spec)
    coverage = _coverage(claims)
    verdict, reason = _verdict(summary, exitstatus, run.get("strict"), complete, partial,
                               records, coverage)
    min_coverage = run.get("min_coverage")
    gate = gate_reason(coverage, min_coverage, claims)
    if gate and verdict == Verdict.PASS:
        verdict, reason = Verdict.INCOMPLETE, gate
    return {
        "report_schema": REPORT_SCHEMA_VERSION,
        "klconform_version": head.get("klconform_version"),
        "spec_version": spec.version if spec else head.get("spec_version"),
        "implementation": head.get("implementation") or {
            "name": None, "description": None, "version": None, "capabilities": None},
        "environment": head.get("environment") or {"python": "", "platform": "",
                                                   "packages": {}},
        "run": {
            "started": _iso(started),
            "finished": _iso(ended),
            "duration_s": round(max(ended - started, 0.0), 3),
            "pytest_exit_status": exitstatus,
            "complete": complete,
            "partial": partial,
            "conformance_tests": dict(foot.get("conformance_tests") or {}) if foot else {},
            "profile": run.get("profile", "default"),
            "strict": bool(run.get("strict")),
            "device": run.get("device", "cpu"),
            "invocation": list(run.get("invocation") or ()),
            "min_coverage": min_coverage,
            "settings": dict(run.get("settings") or {}),
        },
        "verdict": verdict,
        "verdict_reason": reason,
        "coverage": coverage,
        # What `klconform run` / `pytest --impl` exit on besides failures: too few claims
        # checked (none, without --min-coverage).
        "gate": {"min_coverage": min_coverage, "passed": gate is None, "reason": gate},
        "crashes": crashes,
        "summary": summary,
        "claims": claims,
        "deviations": list(head.get("deviations") or ()),
        "failures": [_failure(r) for r in records if r.get("status") in FAILING | {Status.WARNED}],
        "implementation_defined": _implementation_defined(records),
    }


def _records(events):
    """Result records, the last one per test (a re-run test: its last result wins)."""
    by_test = {}
    for event in events:
        if event["event"] == "record":
            entry = {key: value for key, value in event.items() if key != "event"}
            by_test[entry.get("nodeid") or id(entry)] = entry
    return sorted(by_test.values(), key=lambda r: (r.get("case_id") or "", r.get("dtype") or "",
                                                   r.get("nodeid", "")))


def check_stream_format(head):
    """A stream of another layout would be read wrongly (older ones name their tests only
    by node id): refused with what to do instead."""
    found = head.get("stream_format")
    if found is not None and found != STREAM_FORMAT:
        raise StreamFormatError(f"run stream format {found}: this klconform ({__version__}) reads "
                          f"format {STREAM_FORMAT}; rebuild the report with the klconform "
                          f"version that wrote the stream ({head.get('klconform_version')})")


def claim_results(record):
    """claim -> record-level status, for one record."""
    results = record.get("claim_results")
    if results:
        return results
    return {claim: record.get("status", Status.SKIPPED) for claim in record.get("claims") or ()}


def judged(record, claim, status):
    """Whether this record judged a returned value for `claim`: a call that raised is a
    failure of the claim but not a check of it, and neither is a known deviation that
    excused an error (harness/conclude.py lists those claims as errored_claims)."""
    if status not in JUDGED or claim in (record.get("errored_claims") or ()):
        return False
    # Streams written before errored_claims: an errored record judged nothing it failed.
    return not (record.get("status") == Status.ERRORED and status == Status.FAILED)


def _verdict(summary, exitstatus, strict, complete, partial, records, coverage):
    """(verdict, reason): fail if anything must-level failed, even in a partial run."""
    count = sum(summary[status] for status in FAILING)
    if count:
        return Verdict.FAIL, f"{count} test(s) failed or errored"
    if strict and summary[Status.STALE]:
        return Verdict.FAIL, f"{summary[Status.STALE]} stale known deviation(s) under --strict"
    if not records:
        return Verdict.INCOMPLETE, "no conformance test ran"
    if not coverage["checked"]:
        return (Verdict.INCOMPLETE,
                "no claim could be checked (every applicable claim is unsupported)")
    if not complete:
        why = "; ".join(partial) if partial else f"pytest exited with status {exitstatus}"
        return Verdict.INCOMPLETE, why
    return Verdict.PASS, "every must-level claim that was checked holds"


def _claims_section(records, spec):
    by_claim = {}
    for record in records:
        for claim, status in claim_results(record).items():
            by_claim.setdefault(claim, []).append((record, status))
    section = []
    for claim in (spec.claims.values() if spec else ()):
        entries = by_claim.get(claim.id, [])
        statuses = {CLAIM_STATUS.get(status, ClaimStatus.NOT_RUN) for _, status in entries}
        status = next((s for s in CLAIM_PRECEDENCE if s in statuses), ClaimStatus.NOT_RUN)
        counts = {}
        for _, each in entries:
            counts[each] = counts.get(each, 0) + 1
        reasons = sorted({_reason(record, claim.id, each) for record, each in entries}
                         - {None})
        section.append({
            "id": claim.id, "level": claim.level, "family": claim.family,
            "statement": claim.statement, "status": status,
            "checked": any(judged(record, claim.id, each) for record, each in entries),
            "counts": dict(sorted(counts.items())),
            "reasons": reasons,
            "cases": [{"case": record.get("case_id"), "dtype": record.get("dtype"),
                       "status": each, "nodeid": record.get("nodeid")}
                      for record, each in entries],
        })
    return section


def _reason(record, claim, status):
    """Why a record did not judge `claim`: the engine's per-claim reason, else (a call the
    plan refused outright: a device, a dtype) the record's own message."""
    reason = (record.get("claim_reasons") or {}).get(claim)
    if reason is None and status == Status.UNSUPPORTED and record.get("message"):
        reason = " ".join(str(record["message"]).split())
    return reason


def _coverage(claims):
    """Claims checked / claims applicable: a claim declared away (unsupported) counts as
    applicable and unchecked, so declaring things away cannot look like passing; so does a
    claim whose every call errored, since no value was judged for it."""
    graded = [c for c in claims if c["level"] in JUDGED_LEVELS]
    checked = [c["id"] for c in graded if c["checked"]]
    unsupported = [c["id"] for c in graded
                   if not c["checked"] and c["status"] == ClaimStatus.UNSUPPORTED]
    not_run = [c["id"] for c in graded if not c["checked"] and c["status"] == ClaimStatus.NOT_RUN]
    errored = [c["id"] for c in graded if not c["checked"]
               and c["status"] not in (ClaimStatus.UNSUPPORTED, ClaimStatus.NOT_RUN)]
    applicable = len(checked) + len(unsupported) + len(errored)
    return {"checked": len(checked), "applicable": applicable,
            "ratio": round(len(checked) / applicable, 4) if applicable else 0.0,
            "unsupported": unsupported, "not_run": not_run, "errored": errored}


def who_raised(text):
    """`text` with klconform's own refusals attributed to klconform, not the implementation:
    'the implementation raised ImplementationResultError: returned ndarray, ...' becomes
    'klconform raised ImplementationResultError: the implementation returned ndarray, ...'."""
    return KLCONFORM_RAISED.sub(
        lambda m: f"klconform raised {m['type']}{m['where'] or ''}: "
                  + ("the implementation returned " if m.group(0).endswith("returned ") else ""),
        str(text))


def _failure(record):
    checks = [who_raised(check) for check in record.get("checks") or ()]
    return {
        "case": record.get("case_id"), "dtype": record.get("dtype"),
        "claims": list(record.get("claims") or ()), "level": record.get("level"),
        "status": record.get("status"), "nodeid": record.get("nodeid"),
        # The test as pytest takes it back from any directory (relative to the suites).
        "test": record.get("test") or record.get("nodeid"),
        "summary": " ".join(str(checks[0] if checks else record.get("message", "")).split()),
        "checks": checks,
        "expected": record.get("expected"), "actual": record.get("actual"),
        "budget": record.get("budget"), "diagnosis": record.get("diagnosis"),
        "snippet": record.get("snippet"),
    }


def _implementation_defined(records):
    points = [{"case": r["case_id"], "dtype": r["dtype"],
               "point": r.get("message", "").split(":")[0], "observed": r.get("observed")}
              for r in records if r.get("status") == Status.RECORDED]
    seen = set()
    for record in records:
        for note in record.get("notes") or ():
            if "computed by klconform" in note:
                continue  # composition is shown as coverage, not as behaviour
            key = note.split(" (")[0]
            if key not in seen:
                seen.add(key)
                points.append({"case": record.get("case_id"), "dtype": record.get("dtype"),
                               "point": key, "observed": {"note": note}})
    return points


def _last_time(events, default):
    times = [event.get("time") for event in events if event.get("time")]
    return max(times) if times else default


def _iso(timestamp):
    return datetime.fromtimestamp(timestamp or 0.0, tz=timezone.utc).isoformat(
        timespec="seconds")


class Written(NamedTuple):
    json: Path
    md: Path
    verdict: str
    summary: dict
    report: dict


def write_reports(events, report_dir, spec=None):
    """Build and write report.json, report.md, the full report and junit.xml; Written(json
    path, md path, verdict, summary, report)."""
    from klconform.report.junit import junit_xml
    from klconform.report.markdown import FULL_REPORT, render_full_markdown, render_markdown
    from klconform.spec.claims import load_spec

    report = build_report(events, spec or load_spec())
    directory = Path(report_dir)
    json_path, md_path = directory / "report.json", directory / "report.md"
    write_atomically(json_path, json.dumps(report, indent=2, sort_keys=False) + "\n")
    write_atomically(md_path, render_markdown(report))
    write_atomically(directory / FULL_REPORT, render_full_markdown(report))
    write_atomically(directory / "junit.xml", junit_xml(report))
    return Written(json_path, md_path, report["verdict"], report["summary"], report)
