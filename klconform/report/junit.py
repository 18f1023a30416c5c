"""junit.xml from report.json: one test per claim, for CI systems that read JUnit.

A claim is a test: it fails when one of its cases failed (the message is the first
failure's diagnosis, the body lists every failing case), it is skipped when it was not run
or the implementation does not support it, and it passes otherwise. Failures no claim
owns (a crash before the case was known) become tests of their own.

Input is the report.json dict only. The text comes from the implementation under test
(exception messages, reprs), so everything is made valid XML 1.0 before it is written.
"""

import re
import xml.etree.ElementTree as ET

from klconform.statuses import FAILING, ClaimStatus, Level, Status

# Characters XML 1.0 forbids even as references; ElementTree would write them unescaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
MESSAGE_LIMIT = 500
SKIPPED_BECAUSE = {
    ClaimStatus.NOT_RUN: "not run in this run",
    ClaimStatus.UNSUPPORTED: "unsupported by the implementation",
    ClaimStatus.KNOWN_DEVIATION: "known deviation (declared in the --xfails manifest)",
}


def xml_text(value):
    return _NOT_XML.sub(lambda match: f"\\x{ord(match.group()):02x}", str(value))


def _message(text):
    line = " ".join(xml_text(text).split())
    return line if len(line) <= MESSAGE_LIMIT else line[:MESSAGE_LIMIT - 3] + "..."


def _describe(failure):
    where = f"{failure.get('case')}[{failure.get('dtype')}]"
    lines = [f"{where}: {failure.get('status')}: {failure.get('summary') or ''}".rstrip()]
    if failure.get("diagnosis"):
        lines.append(f"  {failure['diagnosis']}")
    lines += [f"  {check}" for check in failure.get("checks") or () if check]
    if failure.get("nodeid"):
        lines.append(f"  test: {failure['nodeid']}")
    return "\n".join(lines)


def _headline(failures):
    first = failures[0]
    reason = first.get("diagnosis") or first.get("summary") or first.get("status")
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return f"{first.get('case')}[{first.get('dtype')}]: {reason}{more}"


def _testcase(suite, classname, name, failures, skipped=None, note=None):
    case = ET.SubElement(suite, "testcase", classname=xml_text(classname), name=xml_text(name),
                         time="0")
    if failures:
        kind = "failure" if any(f.get("status") == Status.FAILED for f in failures) else "error"
        element = ET.SubElement(case, kind, message=_message(_headline(failures)),
                                type=xml_text(failures[0].get("level") or Level.MUST))
        element.text = xml_text("\n\n".join(_describe(f) for f in failures))
    elif skipped:
        ET.SubElement(case, "skipped", message=_message(skipped))
    if note:
        ET.SubElement(case, "system-out").text = xml_text(note)
    return kind if failures else ("skipped" if skipped else "passed")


def junit_xml(report: dict) -> str:
    impl = (report.get("implementation") or {}).get("name") or "implementation"
    classname = f"klconform.{impl}"
    failures = [f for f in report.get("failures") or () if f.get("status") in FAILING]
    warnings = [f for f in report.get("failures") or () if f.get("status") == Status.WARNED]
    suite = ET.Element("testsuite", name=xml_text(f"klconform {impl}"))
    properties = ET.SubElement(suite, "properties")
    run = report.get("run") or {}
    for name, value in (("verdict", report.get("verdict")),
                        ("implementation_version",
                         (report.get("implementation") or {}).get("version")),
                        ("spec_version", report.get("spec_version")),
                        ("complete", run.get("complete")),
                        *(("partial", reason) for reason in run.get("partial") or ())):
        ET.SubElement(properties, "property", name=name, value=_message(value))
    outcomes = []
    owned = set()
    for claim in report.get("claims") or ():
        mine = [f for f in failures if claim["id"] in (f.get("claims") or ())]
        owned.update(id(f) for f in mine)
        status = claim.get("status")
        note = claim.get("statement", "")
        if status == ClaimStatus.WARN:
            warned = [f for f in warnings if claim["id"] in (f.get("claims") or ())]
            note += "\n\nwarning (should-level):\n" + "\n".join(_describe(f) for f in warned)
        elif status == ClaimStatus.RECORDED:
            note += "\n\nimplementation-defined: the behaviour was recorded, not judged"
        # A claim whose failures were all declared known deviations is not failed here.
        skipped = SKIPPED_BECAUSE.get(status) if not mine else None
        outcomes.append(_testcase(suite, classname, claim["id"], mine, skipped, note))
    for failure in failures:
        if id(failure) not in owned:
            outcomes.append(_testcase(suite, f"{classname}.unattributed",
                                      failure.get("case") or failure.get("nodeid") or "?",
                                      [failure]))
    for crash in report.get("crashes") or ():
        if crash.get("nodeid") and not any(f.get("nodeid") == crash["nodeid"] for f in failures):
            outcomes.append(_testcase(suite, f"{classname}.crashes", crash["nodeid"], [{
                "case": crash["nodeid"], "dtype": "-", "status": Status.ERRORED,
                "summary": f"the implementation crashed the test process "
                           f"(exit status {crash.get('returncode')}, "
                           f"{crash.get('signal') or 'no signal'})"}]))
    counts = {kind: outcomes.count(kind) for kind in ("failure", "error", "skipped")}
    suite.set("tests", str(len(outcomes)))
    suite.set("failures", str(counts["failure"]))
    suite.set("errors", str(counts["error"]))
    suite.set("skipped", str(counts["skipped"]))
    suite.set("time", str(run.get("duration_s", 0)))
    if run.get("started"):
        suite.set("timestamp", xml_text(run["started"]))
    root = ET.Element("testsuites", name="klconform", tests=suite.get("tests"),
                      failures=suite.get("failures"), errors=suite.get("errors"),
                      skipped=suite.get("skipped"))
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
