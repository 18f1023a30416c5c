"""report.md (for a pull request or a CI step summary) and report-full.md (every failure).

report.md opens with the verdict, why, the coverage and one headline per root cause
(klconform.report.root_causes), and stays under REPORT_MD_LIMIT characters whatever fails:
GitHub takes 65,536 characters in a PR comment or a step summary. Long text is clipped,
root causes past a budget become one table row each, and a hard cap cuts whole blocks and
says what it cut. report-full.md lists every failure in full; report.json keeps everything.

Case text, deviations and implementations' error messages are untrusted: everything
interpolated goes through `cell`, `code` or a fenced block that cannot be closed from inside.
"""

import html
import re
from dataclasses import dataclass, field

from klconform.report.root_causes import root_causes
from klconform.statuses import STATUSES, ClaimStatus, Status, Verdict

STATUS_MARK = {ClaimStatus.PASS: "pass", ClaimStatus.FAIL: "**FAIL**", ClaimStatus.WARN: "warn",
               ClaimStatus.UNSUPPORTED: "unsupported", ClaimStatus.NOT_RUN: "not run",
               ClaimStatus.RECORDED: "recorded", ClaimStatus.KNOWN_DEVIATION: "known deviation"}
VERDICT_MARK = {Verdict.PASS: "PASS", Verdict.FAIL: "**FAIL**",
                Verdict.INCOMPLETE: "**INCOMPLETE**"}

MARKDOWN_SPECIAL = "\\`*_[]|#"
# GitHub rejects a comment or step summary over 65,536 characters; leave room for a wrapper.
REPORT_MD_LIMIT = 60_000
# What the cut notice may take, reserved so that adding it never crosses the limit.
CUT_NOTICE_RESERVE = 1_000
TEXT_LIMIT = 300             # one interpolated field (a check line, an expected value)
SNIPPET_LINES = 30
SNIPPET_CHARS = 2_500
ROOT_CAUSE_DETAIL_BUDGET = 24_000   # root causes with an example; the rest become rows
ROOT_CAUSE_ROWS_BUDGET = 12_000
IMPLEMENTATION_DEFINED_ROWS = 40
DEVIATIONS_LISTED = 40
FULL_REPORT = "report-full.md"
PLAIN_LINK = re.compile(r"https?://[^\s<>\"'`\\]+")
PLAIN_CODE = re.compile(r"[\w.:/+=-]+")


def cell(text):
    """One table cell / list item: HTML-escaped, Markdown specials backslash-escaped."""
    text = html.escape(" ".join(("" if text is None else str(text)).split()), quote=False)
    return "".join("\\" + char if char in MARKDOWN_SPECIAL else char for char in text)


def code(text):
    """An identifier (claim, case) as inline code when it is plain, else as escaped text:
    backslash escapes do not work inside a code span."""
    text = "" if text is None else str(text)
    return f"`{text}`" if PLAIN_CODE.fullmatch(text) else cell(text)


def link(url):
    """A deviation's link: an autolink when it is a plain http(s) URL, else escaped text."""
    url = "" if url is None else str(url).strip()
    return f"<{url}>" if PLAIN_LINK.fullmatch(url) else cell(url)


def fenced(text, info="python"):
    text = "" if text is None else str(text)
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{info}\n{text.rstrip()}\n{fence}\n"


def clip(text, limit=TEXT_LIMIT):
    text = " ".join(("" if text is None else str(text)).split())
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def clip_snippet(snippet):
    lines = str(snippet or "").rstrip().splitlines()
    kept, size = [], 0
    for line in lines:
        if len(kept) == SNIPPET_LINES or size + len(line) > SNIPPET_CHARS:
            break
        kept.append(line)
        size += len(line) + 1
    if len(kept) < len(lines):
        kept.append(f"# ... {len(lines) - len(kept)} more lines: see {FULL_REPORT}")
    return "\n".join(kept)


@dataclass
class Page:
    """Markdown built from whole blocks, so that cutting between any two keeps it valid: a
    block is a paragraph, a list item, a heading, a table row (its table's header travels
    with the first row) or a fenced snippet."""
    blocks: list = field(default_factory=list)     # (section, text)

    def add(self, section, text):
        self.blocks.append((section, text))

    def render(self, limit=None):
        kept, size = [], 0
        for index, (_, text) in enumerate(self.blocks):
            if limit is not None and size + len(text) + 1 > limit - CUT_NOTICE_RESERVE:
                return "\n".join(kept).rstrip() + "\n\n" + cut_notice(self.blocks[index:], limit)
            kept.append(text)
            size += len(text) + 1
        return "\n".join(kept).rstrip() + "\n"


def cut_notice(omitted, limit):
    counts = {}
    for section, text in omitted:
        if text.strip():
            counts[section] = counts.get(section, 0) + 1
    parts = ", ".join(f"{cell(section)} ({n} block{'s' * (n != 1)})"
                      for section, n in counts.items())
    return (f"**report.md was cut at {limit:,} characters.** Left out: {clip(parts, 500)}. "
            f"Every failure is in `{FULL_REPORT}` beside this file; everything is in "
            "`report.json`.\n")


def render_markdown(report):
    """report.md: the verdict and root causes first, under REPORT_MD_LIMIT characters."""
    return _page(report, full=False).render(REPORT_MD_LIMIT)


def render_full_markdown(report):
    """report-full.md: report.md's content unclipped, then every failure in full."""
    return _page(report, full=True).render()


def _page(report, full):
    page = Page()
    _head(page, report)
    _root_causes(page, report, full)
    _deviations(page, report, full)
    _claims(page, report, full)
    if full:
        _failures(page, report)
    _implementation_defined(page, report, full)
    _run(page, report, full)
    return page


def _head(page, report):
    impl, summary = report["implementation"], report["summary"]
    section = "summary"
    page.add(section, f"# klconform: {cell(clip(impl['name'], 200))} "
                      f"{cell(clip(impl.get('version') or '', 100))} "
                      f"— {cell(report['verdict'].upper())}\n")
    verdict = VERDICT_MARK.get(report["verdict"], cell(report["verdict"]))
    reason = report.get("verdict_reason")
    page.add(section, f"{verdict}" + (f": {cell(clip(reason, 1000))}." if reason else ".") + "\n")
    page.add(section, _coverage_line(report) + "\n")
    gate = report.get("gate") or {}
    if gate.get("passed") is False:
        page.add(section, "**The run fails the coverage gate**: "
                          f"{cell(clip(gate.get('reason'), 600))}.\n")
    partial = (report.get("run") or {}).get("partial") or ()
    if partial:
        page.add(section, "The run is incomplete: conformance tests were left out or not "
                          "finished, so a pass here is not a pass of the whole suite:")
        for reason in partial:
            page.add(section, f"- {cell(clip(reason, 500))}")
        page.add(section, "")
    crashes = report.get("crashes") or ()
    if crashes:
        page.add(section, f"{len(crashes)} hard crash(es) of the implementation were survived "
                          "by `klconform run`:")
        for crash in crashes[:10]:
            page.add(section, f"- {cell(crash.get('nodeid'))}: exit status "
                              f"{cell(crash.get('returncode'))} {cell(crash.get('signal') or '')}")
        if len(crashes) > 10:
            page.add(section, f"- ... and {len(crashes) - 10} more (report.json)")
        page.add(section, "")
    # A stale deviation passed; the deviations section names it.
    keys = [status for status in STATUSES if status != Status.STALE]
    page.add(section, "| " + " | ".join(keys) + " |\n|" + "---:|" * len(keys) + "\n| "
             + " | ".join(str(summary.get(key, 0)) for key in keys) + " |\n")


def _coverage_line(report):
    coverage = report.get("coverage") or {}
    line = (f"**Coverage: {coverage.get('checked', 0)} of {coverage.get('applicable', 0)} "
            f"applicable claims checked** (a returned value judged)")
    if coverage.get("errored"):
        line += (f"; every call errored, no value judged: "
                 f"{cell(clip(', '.join(coverage['errored']), 1000))}")
    if coverage.get("unsupported"):
        line += f"; unsupported: {cell(clip(', '.join(coverage['unsupported']), 1000))}"
    return line + "."


def _root_causes(page, report, full):
    groups = root_causes(report)
    if not groups:
        return
    tests = sum(len(group.failures) for group in groups)
    section = "root causes"
    page.add(section, f"## {len(groups)} root cause{'s' * (len(groups) != 1)} of {tests} "
                      f"failing or warning test{'s' * (tests != 1)}\n")
    used, shown = 0, 0
    for number, group in enumerate(groups, 1):
        block = _root_cause_detail(number, group, full)
        if not full and used + len(block) > ROOT_CAUSE_DETAIL_BUDGET and shown:
            break
        page.add(section, block)
        used += len(block)
        shown += 1
    rest = groups[shown:]
    if not rest:
        return
    page.add(section, "| # | tests | claims | first failure |\n|---:|---:|---|---|")
    used = 0
    for number, group in enumerate(rest, shown + 1):
        row = (f"| {number} | {len(group.failures)} | {cell(clip(', '.join(group.claims), 120))} "
               f"| {cell(group.example.get('case'))} \\[{cell(group.example.get('dtype'))}\\]: "
               f"{cell(clip(group.title, 160))} |")
        if used + len(row) > ROOT_CAUSE_ROWS_BUDGET:
            left = groups[number - 1:]
            page.add(section, f"\n... and {len(left)} more root causes "
                              f"({sum(len(g.failures) for g in left)} tests): see "
                              f"`{FULL_REPORT}`.\n")
            return
        page.add(section, row)
        used += len(row)
    page.add(section, "")


def _root_cause_detail(number, group, full):
    example = group.example
    limit = None if full else TEXT_LIMIT
    clip_to = (lambda text, n=TEXT_LIMIT: " ".join(str(text or "").split())) if full else clip
    count = len(group.failures)
    kind = {"diagnosis": "", "error": "", "check": "first failed check: "}[group.kind]
    lines = [f"### {number}. {kind}{cell(clip_to(group.title))}", ""]
    tests = f"{count} test{'s' * (count != 1)}"
    if group.failing != count:
        tests += f" ({group.failing} failing, {count - group.failing} warning)"
    lines.append(f"- **{tests}**, level {cell(', '.join(group.levels))}; claims: "
                 + ", ".join(code(claim) for claim in group.claims))
    if len(group.wordings) > 1:
        lines.append(f"- the same with other numbers: {len(group.wordings)} distinct wordings, "
                     "e.g. at other shapes or dtypes")
    elif count > 1 and group.kind == "error":
        lines.append(f"- the same error, {count} times")
    values = "; ".join(f"{name} {cell(clip_to(example.get(name)))}"
                       for name in ("expected", "actual") if example.get(name) not in (None, ""))
    lines.append(f"- example: {code(example.get('case'))} \\[{cell(example.get('dtype'))}\\] "
                 f"({cell(example.get('status'))})" + (f": {values}" if values else ""))
    checks = example.get("checks") or ()
    for check in (checks if full else checks[:3]):
        lines.append(f"- {cell(clip_to(check))}")
    if not full and len(checks) > 3:
        lines.append(f"- ... {len(checks) - 3} more checks failed ({FULL_REPORT})")
    if example.get("diagnosis") and group.kind != "diagnosis":
        lines.append(f"- {cell(clip_to(example['diagnosis']))}")
    text = "\n".join(lines) + "\n"
    if example.get("snippet"):
        snippet = example["snippet"] if limit is None else clip_snippet(example["snippet"])
        text += "\nReproduce:\n\n" + fenced(snippet)
    return text


def _clipper(full):
    """report-full.md keeps whole texts (on one line); report.md clips them."""
    return (lambda text, n=0: " ".join(str(text or "").split())) if full else clip


def _opening(page, report, key, section, heading, full, listed):
    """(entries shown, all entries) of a listed section, its heading added; None if empty."""
    entries = report.get(key) or ()
    if not entries:
        return None
    page.add(section, heading)
    return (entries if full else entries[:listed]), entries


def _deviations(page, report, full):
    section = "deviations"
    opened = _opening(page, report, "deviations", section, "## Known deviations in force\n",
                      full, DEVIATIONS_LISTED)
    if opened is None:
        return
    shown, deviations = opened
    clip_to = _clipper(full)
    for deviation in shown:
        source = deviation.get("source")
        dtypes = deviation.get("dtypes")
        page.add(section, f"- {code(deviation.get('id'))}"
                 + (f" \\[{cell(', '.join(map(str, dtypes)))}\\]" if dtypes else "")
                 + (f" (from the {cell(source)})" if source else "")
                 + f": {cell(clip_to(deviation.get('reason'), 600))}"
                 + (f" — {link(deviation['link'])}" if deviation.get("link") else ""))
    if len(shown) < len(deviations):
        page.add(section, f"- ... and {len(deviations) - len(shown)} more ({FULL_REPORT})")
    page.add(section, "")


def _claims(page, report, full):
    section = "claims"
    page.add(section, "## Claims\n")
    rows = [f"| {code(claim['id'])} | {cell(claim['level'])} | "
            f"{STATUS_MARK.get(claim['status'], cell(claim['status']))} | "
            + cell(", ".join(f"{n} {s}" for s, n in claim["counts"].items()) or "none") + " |"
            for claim in report["claims"]]
    header = "| claim | level | status | cases |\n|---|---|---|---|"
    if rows:
        page.add(section, header + "\n" + rows[0])
        for row in rows[1:]:
            page.add(section, row)
    page.add(section, "")
    clip_to = _clipper(full)
    explained = [claim for claim in report["claims"] if claim.get("reasons")
                 and claim["status"] in (ClaimStatus.UNSUPPORTED, ClaimStatus.KNOWN_DEVIATION)]
    if explained:
        page.add(section, "Why claims are unsupported or known deviations:\n")
        for claim in explained:
            reasons = claim["reasons"] if full else claim["reasons"][:3]
            more = len(claim["reasons"]) - len(reasons)
            page.add(section, f"- {code(claim['id'])} ({STATUS_MARK[claim['status']]}): "
                     + "; ".join(cell(clip_to(reason, 400)) for reason in reasons)
                     + (f"; and {more} more" if more else ""))
        page.add(section, "")


def _failures(page, report):
    failures = report.get("failures") or ()
    if not failures:
        return
    section = "failures"
    page.add(section, "## Failures\n")
    for failure in failures:
        lines = [
            f"### {cell(failure['case'])} [{cell(failure['dtype'])}] — "
            f"{cell(failure['status'])}",
            "",
            f"- claims: {cell(', '.join(failure['claims']))} ({cell(failure['level'])})",
            f"- {cell(failure['summary'])}",
            f"- expected {cell(failure['expected'])}; actual {cell(failure['actual'])}",
        ]
        if failure.get("diagnosis"):
            lines.append(f"- {cell(failure['diagnosis'])}")
        text = "\n".join(lines) + "\n"
        if failure.get("snippet"):
            text += "\n" + fenced(failure["snippet"])
        page.add(section, text)


def _implementation_defined(page, report, full):
    section = "implementation-defined behaviour"
    opened = _opening(page, report, "implementation_defined", section,
                      "## Implementation-defined behaviour\n", full, IMPLEMENTATION_DEFINED_ROWS)
    if opened is None:
        return
    shown, entries = opened
    clip_to = _clipper(full)
    for index, entry in enumerate(shown):
        row = (f"| {cell(clip_to(entry['point'], 200))} | {cell(entry['dtype'])} | "
               f"{cell(clip_to(_observed(entry['observed'])))} |")
        page.add(section, ("| point | dtype | observed |\n|---|---|---|\n" if index == 0 else "")
                 + row)
    if len(shown) < len(entries):
        page.add(section, f"\n... and {len(entries) - len(shown)} more ({FULL_REPORT})")
    page.add(section, "")


def _run(page, report, full):
    run = report["run"]
    page.add("run", "## Run\n")
    page.add("run", f"Spec {cell(report['spec_version'])}, klconform "
                    f"{cell(report['klconform_version'])}, profile {cell(run['profile'])}, "
                    f"device {cell(run['device'])}, {cell(run['duration_s'])} s.")
    if not full and report.get("failures"):
        page.add("run", f"\nEvery failure in full: `{FULL_REPORT}` beside this file; "
                        "everything: `report.json`.")


def _observed(observed):
    from klconform.short_text import describe_observed

    if not observed:
        return ""
    # report/build.py records an engine note (behaviour seen on the way) as {"note": text}.
    if set(observed) == {"note"}:
        return observed["note"]
    return describe_observed(observed)
