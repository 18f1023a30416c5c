"""report.json and report.md from the records of one run.

Layout of report.json: spec/report.schema.json (documented in spec/README.md).
Both files are written atomically: a run interrupted at any point leaves either the
previous complete file or the new complete file, never half of one.
"""

import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from klconform import __version__
from klconform.engine.failure_text import one_line

REPORT_SCHEMA_VERSION = "1"
FAILING = ("failed", "errored")
STATUSES = ("passed", "failed", "errored", "warned", "unsupported", "recorded", "skipped",
            "xfailed", "stale")
PACKAGES = ("numpy", "torch", "pytest", "hypothesis", "jsonschema", "PyYAML", "pytest-xdist")


def build_report(state, exitstatus, spec, invocation=(), crashes=()):
    records = sorted(state.records, key=lambda r: (r.get("case_id") or "", r.get("dtype") or "",
                                                    r.get("nodeid", "")))
    summary = {status: 0 for status in STATUSES}
    for record in records:
        summary[record.get("status", "skipped")] = summary.get(record.get("status"), 0) + 1
    summary["total"] = len(records)
    adapter = state.adapter
    verdict = _verdict(summary, exitstatus, state)
    return {
        "report_schema": REPORT_SCHEMA_VERSION,
        "klconform_version": __version__,
        "spec_version": spec.version if spec else None,
        "implementation": {
            "name": state.impl,
            "description": adapter.describe() if adapter else None,
            "version": _safe(adapter.version) if adapter else None,
            "capabilities": adapter.capabilities.as_dict() if adapter else None,
        },
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "packages": {name: _package_version(name) for name in PACKAGES},
        },
        "run": {
            "started": _iso(state.started),
            "finished": _iso(time.time()),
            "duration_s": round(time.time() - state.started, 3),
            "pytest_exit_status": exitstatus,
            # A run that stopped early or left conformance tests out (-k, -x, --deselect, ...)
            # is not complete, whatever it found; `partial` says what was not run.
            "complete": exitstatus in (0, 1) and not getattr(state, "partial", None),
            "partial": list(getattr(state, "partial", None) or ()),
            "conformance_tests": dict(getattr(state, "conformance_tests", None) or {}),
            "profile": state.profile,
            "strict": state.strict,
            "device": state.device,
            "invocation": list(invocation),
            "settings": dict(getattr(state, "settings", {}) or {}),
        },
        "verdict": verdict,
        "crashes": list(crashes),
        "summary": summary,
        "claims": _claims_section(records, spec),
        "failures": [_failure(r) for r in records if r.get("status") in FAILING + ("warned",)],
        "implementation_defined": [
            {"case": r["case_id"], "dtype": r["dtype"], "point": r.get("message", "").split(":")[0],
             "observed": r.get("observed")}
            for r in records if r.get("status") == "recorded"
        ],
    }


def _verdict(summary, exitstatus, state):
    if summary["failed"] or summary["errored"]:
        return "fail"  # a crash or a wrong value fails the run even if it stopped early
    if exitstatus not in (0, 1) or not summary["total"]:
        return "incomplete"
    if state.strict and summary["stale"]:
        return "fail"
    return "pass"


def _claims_section(records, spec):
    by_claim = {}
    for record in records:
        for claim in record.get("claims") or ():
            by_claim.setdefault(claim, []).append(record)
    section = []
    claims = spec.claims.values() if spec else ()
    for claim in claims:
        entries = by_claim.get(claim.id, [])
        statuses = {entry["status"] for entry in entries}
        if statuses & set(FAILING):
            status = "fail"
        elif "warned" in statuses:
            status = "warn"
        elif "xfailed" in statuses:
            status = "known-deviation"
        elif "passed" in statuses or "stale" in statuses:
            status = "pass"
        elif "recorded" in statuses:
            status = "recorded"
        elif "unsupported" in statuses:
            status = "unsupported"
        else:
            status = "not-run"
        section.append({
            "id": claim.id, "level": claim.level, "statement": claim.statement,
            "status": status,
            "counts": {s: sum(1 for e in entries if e["status"] == s) for s in sorted(statuses)},
            "cases": [{"case": e.get("case_id"), "dtype": e.get("dtype"), "status": e["status"],
                       "nodeid": e.get("nodeid")} for e in entries],
        })
    return section


def _failure(record):
    return {
        "case": record.get("case_id"), "dtype": record.get("dtype"),
        "claims": list(record.get("claims") or ()), "level": record.get("level"),
        "status": record.get("status"), "nodeid": record.get("nodeid"),
        "summary": one_line(record), "checks": list(record.get("checks") or ()),
        "expected": record.get("expected"), "actual": record.get("actual"),
        "budget": record.get("budget"), "diagnosis": record.get("diagnosis"),
        "snippet": record.get("snippet"),
    }


def _iso(timestamp):
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


def _safe(function):
    try:
        return str(function())
    except Exception as error:
        return f"unknown ({type(error).__name__})"


def _package_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def write_atomically(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates 0600; a report is for CI artifacts and other users to read.
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def attribute_records(records, cases):
    """Give claims to records that lost them (a crashed test has only its node id)."""
    by_param = {}
    for case in cases:
        for dtype in case.dtypes:
            by_param[f"{case.id}-{dtype}"] = (case, dtype)
    for record in records:
        if record.get("claims") or "[" not in record.get("nodeid", ""):
            continue
        param = record["nodeid"].rsplit("[", 1)[1].rstrip("]")
        if param in by_param:
            case, dtype = by_param[param]
            gradient = "test_gradient" in record["nodeid"]
            record.update(case_id=("grad:" if gradient else "") + case.id, dtype=dtype,
                          level="must" if gradient else case.level,
                          claims=["gradient-input", "gradient-target"] if gradient
                          else list(case.claims))
    return records


def write_reports(state, exitstatus, crashes=(), invocation=None):
    from klconform.report.junit import junit_xml
    from klconform.report.markdown import render_markdown
    from klconform.spec.cases import load_cases
    from klconform.spec.claims import load_spec

    try:
        spec = load_spec()
        cases = getattr(state, "cases", None) or load_cases(
            state.cases_dir, spec=spec, extra_dirs=[getattr(state, "extra_cases_dir", None)])
        attribute_records(state.records, cases)
    except Exception:
        spec = None
    if not state.settings:
        # xdist controller: the workers configured hypothesis, the options say how.
        from klconform.harness.hypothesis_profiles import describe

        state.settings = describe(state.profile, getattr(state, "seed", None),
                                  getattr(state, "max_examples", None))
    if state.adapter is None:
        # xdist controller, or a report written after a crash: load only for its metadata.
        try:
            from klconform.adapters import load_adapter

            state.adapter = load_adapter(state.impl)
        except Exception:
            state.adapter = None
    report = build_report(state, exitstatus, spec,
                          invocation=sys.argv if invocation is None else invocation,
                          crashes=crashes)
    directory = Path(state.report_dir)
    json_path, md_path = directory / "report.json", directory / "report.md"
    write_atomically(json_path, json.dumps(report, indent=2, sort_keys=False) + "\n")
    write_atomically(md_path, render_markdown(report))
    write_atomically(directory / "junit.xml", junit_xml(report))
    return json_path, md_path, report["verdict"], report["summary"]
