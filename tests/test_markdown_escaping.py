"""report.md renders untrusted text (case fields, implementations' error messages) inertly."""

import re

import pytest

from klconform.report.markdown import cell, fenced, render_full_markdown, render_markdown

HOSTILE = "a | b `code` <script>alert(1)</script> *bold* [link](http://x) # \\ & _x_"
MULTILINE = "first line\nsecond | line\r\nthird\u2028fourth"
FENCE_BREAKER = 'print("x")\n```\n<script>alert(1)</script>\n````\n# heading outside?\n'


def unescaped_pipes(line):
    """Pipes that split a GFM table row: those not preceded by an unescaped backslash."""
    count, escaped = 0, False
    for char in line:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            count += 1
    return count


def closing_fence(lines, start, opening):
    """Index of the line that closes the fence opened at lines[start] (CommonMark: a line of
    at least as many backticks, up to three spaces of indent, nothing else)."""
    length = len(opening) - len(opening.lstrip("`"))
    pattern = re.compile(rf" {{0,3}}`{{{length},}}\s*$")
    for index in range(start + 1, len(lines)):
        if pattern.match(lines[index]):
            return index
    return None


def outside_fences(lines):
    """The lines Markdown interprets: inside a fenced block everything is literal text."""
    kept, index = [], 0
    while index < len(lines):
        if lines[index].startswith("```"):
            end = closing_fence(lines, index, lines[index])
            assert end is not None, "an unclosed fence swallows the rest of the report"
            index = end + 1
            continue
        kept.append(lines[index])
        index += 1
    return kept


# --- cell ---------------------------------------------------------------------------------


def test_cell_escapes_pipes_backticks_and_markdown_specials():
    text = cell(HOSTILE)
    assert unescaped_pipes(text) == 0
    assert "\\`code\\`" in text
    for special in ("\\*bold\\*", "\\[link\\]", "\\#", "\\_x\\_", "\\\\"):
        assert special in text, special


def test_cell_escapes_html():
    text = cell(HOSTILE)
    assert "<script>" not in text and "</script>" not in text
    assert "&lt;script&gt;" in text
    assert "&amp;" in text


@pytest.mark.parametrize("text", [MULTILINE, "x\n\n| injected | row |\n", "a\x0bb\x0cc\x85d"])
def test_cell_is_one_line(text):
    rendered = cell(text)
    assert len(rendered.splitlines()) == 1
    assert unescaped_pipes(rendered) == 0


def test_cell_of_none_and_numbers():
    assert cell(None) == ""
    assert cell(0.5) == "0.5"


# --- fenced -------------------------------------------------------------------------------


@pytest.mark.parametrize("snippet", [
    FENCE_BREAKER,
    "```",
    "x = 1\n`````\ny = 2",
    "```python\nnested\n```",
])
def test_a_snippet_cannot_close_its_fence(snippet):
    lines = fenced(snippet).splitlines()
    assert closing_fence(lines, 0, lines[0]) == len(lines) - 1
    assert "\n".join(lines[1:-1]) == snippet.rstrip()


def test_fenced_keeps_the_snippet_verbatim():
    block = fenced("kl_div(x, t, reduction='batchmean')")
    assert block == "```python\nkl_div(x, t, reduction='batchmean')\n```\n"


# --- render_markdown ----------------------------------------------------------------------


def hostile_report():
    return {
        "implementation": {"name": "evil | lib <b>", "version": "1.0`"},
        "verdict": "fail",
        "spec_version": "1.0",
        "klconform_version": "0.1.0",
        "run": {"profile": "default", "device": "cpu", "duration_s": 1.5,
                "partial": [MULTILINE, "-k '<b>x</b>' deselected 3 | tests"]},
        "summary": {"passed": 1, "failed": 1},
        "claims": [{"id": "roles", "level": "must", "status": "fail",
                    "counts": {"passed": 1, "failed": 1}},
                   {"id": "mean-warns", "level": "should", "status": "unsupported",
                    "counts": {"unsupported": 1}, "reasons": [HOSTILE, MULTILINE]}],
        "failures": [{
            "case": "case | with `ticks`\n## not a heading",
            "dtype": "float32 <i>",
            "status": "failed",
            "claims": ["roles"],
            "level": "must",
            "summary": MULTILINE,
            "expected": "0.5 | 0.6",
            "actual": "RuntimeError: <script>alert(1)</script> `boom` | x",
            "diagnosis": "looks like: [click](javascript:alert(1))",
            "snippet": FENCE_BREAKER,
        }],
        "verdict_reason": "1 test(s) failed | <script>alert(2)</script>",
        "deviations": [
            {"id": "roles | `x`", "reason": HOSTILE, "link": "javascript:alert(1)",
             "source": "manifest <i>"},
            {"id": "result-dtype", "reason": "float16 upcast", "source": "record",
             "link": "https://example.org/a_b?x=1"},
        ],
        "crashes": [{"nodeid": "test | <script>", "returncode": -11, "signal": "SIGSEGV"}],
        "implementation_defined": [{
            "point": "impl-shape-mismatch | x",
            "dtype": "float32",
            "observed": {"raises": "ValueError: bad | shape\n<img src=x onerror=alert(1)>"},
        }],
    }


# report.md (the summary) and report-full.md (every failure): both take the same text.
@pytest.fixture(params=[render_markdown, render_full_markdown], ids=["report", "full"])
def markdown_lines(request):
    return request.param(hostile_report()).splitlines()


def test_no_raw_html_reaches_the_report(markdown_lines):
    text = "\n".join(outside_fences(markdown_lines))
    for tag in ("<script>", "<img", "<b>", "<i>"):
        assert tag not in text, tag


def test_table_rows_keep_their_columns(markdown_lines):
    rows = [line for line in markdown_lines if line.startswith("|")]
    assert rows, markdown_lines
    # Each table's header row sets the column count its later rows must keep.
    header_pipes = {"| passed ": 9, "| claim ": 5, "| point ": 4, "| # ": 5}
    columns = None
    for row in rows:
        columns = next((pipes for start, pipes in header_pipes.items()
                        if row.startswith(start)), columns)
        assert unescaped_pipes(row) == columns, row


def test_failure_text_stays_on_its_own_lines(markdown_lines):
    headings = [line for line in outside_fences(markdown_lines) if line.startswith("#")]
    # The title, root causes and the one root cause, deviations, "Claims",
    # "Implementation-defined behaviour", "Run"; report-full.md adds "Failures" and one.
    full = any(line == "## Failures" for line in headings)
    assert len(headings) == (9 if full else 7), headings
    assert any("\\#\\# not a heading" in line for line in markdown_lines)
    assert not any(line.lstrip().startswith("## not") for line in markdown_lines)
    assert any(line.startswith("- ") and "second \\| line" in line for line in markdown_lines)
    assert not any(line.startswith(("second", "third")) for line in markdown_lines)


def test_the_snippet_fence_closes_only_after_the_snippet(markdown_lines):
    # report.md shows the snippet once (its root cause's example); report-full.md again
    # under the failure. Every fence holds exactly the snippet.
    start, fences = 0, 0
    while True:
        start = next((index for index in range(start, len(markdown_lines))
                      if markdown_lines[index].startswith("```")), None)
        if start is None:
            break
        end = closing_fence(markdown_lines, start, markdown_lines[start])
        assert "\n".join(markdown_lines[start + 1:end]) == FENCE_BREAKER.rstrip()
        start, fences = end + 1, fences + 1
    assert fences == (2 if "## Failures" in markdown_lines else 1)


def test_links_from_untrusted_text_are_not_links(markdown_lines):
    text = "\n".join(markdown_lines)
    assert "[click](" not in text
    assert "\\[click\\](javascript:alert(1))" in text


def test_deviation_links_are_autolinks_only_when_plain_http(markdown_lines):
    text = "\n".join(markdown_lines)
    assert "<https://example.org/a_b?x=1>" in text
    assert "<javascript:" not in text and "javascript:alert(1)" in text


def test_partial_run_reasons_and_claim_reasons_are_listed_escaped(markdown_lines):
    text = "\n".join(markdown_lines)
    assert "- -k '&lt;b&gt;x&lt;/b&gt;' deselected 3 \\| tests" in text
    reasons = next(line for line in markdown_lines if line.startswith("- `mean-warns`"))
    assert "(unsupported)" in reasons and "&lt;script&gt;" in reasons
    assert unescaped_pipes(reasons) == 0
