"""report.md: a table for a pull request or a CI step summary.

Case text and implementations' error messages are untrusted: everything interpolated into
Markdown goes through `cell` or a fenced block that cannot be closed from inside.
"""

import html

STATUS_MARK = {"pass": "pass", "fail": "**FAIL**", "warn": "warn", "unsupported": "unsupported",
               "not-run": "not run", "recorded": "recorded", "known-deviation": "known deviation"}


MARKDOWN_SPECIAL = "\\`*_[]|#"


def cell(text):
    """One table cell / list item: HTML-escaped, Markdown specials backslash-escaped."""
    text = html.escape(" ".join(("" if text is None else str(text)).split()), quote=False)
    return "".join("\\" + char if char in MARKDOWN_SPECIAL else char for char in text)


def fenced(text, info="python"):
    text = "" if text is None else str(text)
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{info}\n{text.rstrip()}\n{fence}\n"


def render_markdown(report):
    impl = report["implementation"]
    summary = report["summary"]
    lines = [
        f"# klconform: {cell(impl['name'])} {cell(impl.get('version') or '')} "
        f"— {report['verdict'].upper()}",
        "",
        f"Spec {cell(report['spec_version'])}, klconform {cell(report['klconform_version'])}, "
        f"profile {cell(report['run']['profile'])}, device {cell(report['run']['device'])}, "
        f"{report['run']['duration_s']} s.",
        "",
        _coverage_line(report),
        "",
        "| passed | failed | errored | warned | unsupported | recorded | skipped | xfailed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| " + " | ".join(str(summary.get(key, 0)) for key in (
            "passed", "failed", "errored", "warned", "unsupported", "recorded", "skipped",
            "xfailed")) + " |",
        "",
        "## Claims",
        "",
        "| claim | level | status | cases |",
        "|---|---|---|---|",
    ]
    for claim in report["claims"]:
        counts = ", ".join(f"{n} {s}" for s, n in claim["counts"].items()) or "none"
        lines.append(f"| `{claim['id']}` | {claim['level']} | "
                     f"{STATUS_MARK.get(claim['status'], claim['status'])} | {cell(counts)} |")
    if report["failures"]:
        lines += ["", "## Failures", ""]
        for failure in report["failures"]:
            lines += [
                f"### {cell(failure['case'])} [{cell(failure['dtype'])}] — "
                f"{cell(failure['status'])}",
                "",
                f"- claims: {cell(', '.join(failure['claims']))} ({cell(failure['level'])})",
                f"- {cell(failure['summary'])}",
                f"- expected {cell(failure['expected'])}; actual {cell(failure['actual'])}",
            ]
            if failure.get("diagnosis"):
                lines.append(f"- {cell(failure['diagnosis'])}")
            if failure.get("snippet"):
                lines += ["", fenced(failure["snippet"])]
            lines.append("")
    if report["implementation_defined"]:
        lines += ["", "## Implementation-defined behaviour", "", "| point | dtype | observed |",
                  "|---|---|---|"]
        for entry in report["implementation_defined"]:
            lines.append(f"| {cell(entry['point'])} | {cell(entry['dtype'])} | "
                         f"{cell(_observed(entry['observed']))} |")
    return "\n".join(lines).rstrip() + "\n"


def _observed(observed):
    from klconform.short_text import describe_observed

    return describe_observed(observed) if observed else ""


def _coverage_line(report):
    coverage = report.get("coverage") or {}
    line = (f"**Coverage: {coverage.get('checked', 0)} of {coverage.get('applicable', 0)} "
            f"applicable claims checked**")
    if coverage.get("unsupported"):
        line += f"; unsupported: {cell(', '.join(coverage['unsupported']))}"
    if report.get("verdict_reason"):
        line += f". Verdict: {cell(report['verdict_reason'])}."
    return line
