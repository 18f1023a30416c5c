"""index.html: the matrix as one static page, readable offline.

Implementations are rows and claims are columns, grouped by family. A cell is coloured by
status and links to its failure text or deviation reason below the table (also its hover
title). Clicking a column header sorts the rows; the order lives in the URL fragment
(`#sort=coverage`, `#sort=-claim:roles`), so a sorted view can be linked to and a headless
browser can load one.

Nothing is fetched from anywhere: the CSS and the few lines of JavaScript are inline. Every
string from a report (names, versions, failure texts, reasons, links) is untrusted and goes
through html.escape; the script reads only data-* attributes, never inserts markup.
"""

from html import escape

from klconform.report.matrix import (
    MARK,
    cell_texts,
    explained_by_status,
    judged_claims,
    root_causes,
    verdict_label,
)
from klconform.statuses import ClaimStatus, Verdict

# Sort order of a claim column: worst first, so an ascending sort shows problems on top.
STATUS_ORDER = (ClaimStatus.FAIL, ClaimStatus.WARN, ClaimStatus.KNOWN_DEVIATION,
                ClaimStatus.UNSUPPORTED, ClaimStatus.NOT_RUN, ClaimStatus.RECORDED,
                ClaimStatus.PASS)
# The matrix's cell words, capitalised where a page shows them without markdown's bold.
STATUS_LABEL = {**MARK, ClaimStatus.FAIL: "FAIL"}
VERDICT_ORDER = (Verdict.FAIL, Verdict.INCOMPLETE, Verdict.PASS)

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1b1f24; }
h1 { font-size: 1.4em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #d0d7de; padding: 3px 4px; text-align: center; }
td { font-size: 12px; }
th.family { background: #f6f8fa; text-align: left; font-weight: normal; }
th.claim { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap;
           font-weight: normal; font-family: ui-monospace, monospace; font-size: 12px; }
th[data-key] { cursor: pointer; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.impl { text-align: left; font-family: ui-monospace, monospace; white-space: nowrap; }
/* the implementation stays in view while the claims scroll sideways */
td.impl, thead tr:first-child th:first-child { position: sticky; left: 0; background: #fff; }
td a { color: inherit; }
.s-pass { background: #d1f5d3; } .s-fail { background: #ffc9c9; font-weight: bold; }
.s-warn { background: #ffe8a3; } .s-known-deviation { background: #e4d4ff; }
.s-unsupported { background: #eaeef2; color: #57606a; }
.s-not-run { background: #fff; color: #8c959f; } .s-recorded { background: #cfe6ff; }
.v-pass { color: #1a7f37; } .v-fail { color: #b3261e; font-weight: bold; }
.v-incomplete { color: #9a6700; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 4px;
               border: 1px solid #d0d7de; }
.notes li:target { background: #fff3b0; }
.notes code { font-size: 12px; }
"""

# Sorting: the fragment holds the order; a header click only rewrites the fragment.
SCRIPT = """
function sortKeyOf(row, key) {
  for (const cell of row.cells) { if (cell.dataset.key === key) return cell.dataset.sort; }
  return "";
}
function compareValues(a, b) {
  const x = parseFloat(a), y = parseFloat(b);
  if (!isNaN(x) && !isNaN(y) && String(x) === a && String(y) === b) return x - y;
  return a.localeCompare(b);
}
function sortMatrix(key, descending) {
  const body = document.querySelector("#matrix tbody");
  const rows = Array.from(body.rows);
  rows.sort((a, b) => (descending ? -1 : 1) * compareValues(sortKeyOf(a, key), sortKeyOf(b, key))
                      || a.dataset.impl.localeCompare(b.dataset.impl));
  for (const row of rows) body.appendChild(row);
  for (const th of document.querySelectorAll("th[data-key]")) {
    th.setAttribute("aria-sort", th.dataset.key !== key ? "none"
                                 : descending ? "descending" : "ascending");
  }
}
function applyFragment() {
  const match = /^#sort=(-?)(.+)$/.exec(location.hash);
  if (match) sortMatrix(decodeURIComponent(match[2]), match[1] === "-");
}
document.addEventListener("DOMContentLoaded", () => {
  for (const th of document.querySelectorAll("th[data-key]")) {
    th.addEventListener("click", () => {
      const current = /^#sort=(-?)(.+)$/.exec(location.hash);
      const same = current && decodeURIComponent(current[2]) === th.dataset.key;
      const descending = same && current[1] !== "-";
      location.hash = "sort=" + (descending ? "-" : "") + encodeURIComponent(th.dataset.key);
    });
  }
  applyFragment();
});
window.addEventListener("hashchange", applyFragment);
"""


def _text(value):
    return escape("" if value is None else str(value), quote=True)


def _claim_key(claim_id):
    return f"claim:{claim_id}"


def _columns(matrix):
    """Claims grouped by family, families in the order they first appear."""
    families = {}
    for claim in matrix["claims"]:
        families.setdefault(claim.get("family") or "other", []).append(claim)
    return families


def render_site(matrix):
    families = _columns(matrix)
    rows = matrix["implementations"]
    claim_ids = [claim["id"] for claim in matrix["claims"]]
    judged, points = judged_claims(matrix)
    # Each implementation's root causes, listed once below the table; a cell links to the
    # first of its own. (anchor, implementation, text, [(status, [claim or case]), ...])
    notes, anchors = [], {}
    for name, row in rows.items():
        for text, keys in root_causes(row, claim_ids):
            anchor = f"n{len(notes) + 1}"
            anchors[name, text] = anchor
            notes.append((anchor, name, text, explained_by_status(row, keys)))
    head_families = "".join(
        f'<th class="family" colspan="{len(claims)}">{_text(family)}</th>'
        for family, claims in families.items())
    head_claims = "".join(
        f'<th class="claim" data-key="{_text(_claim_key(c["id"]))}" title="'
        f'{_text(c.get("level"))}: {_text(c.get("statement"))}">{_text(c["id"])}</th>'
        for claims in families.values() for c in claims)
    body = []
    for name, row in rows.items():
        coverage = row.get("coverage") or {}
        ratio = coverage.get("ratio")
        cells = [
            f'<td class="impl" data-key="impl" data-sort="{_text(name)}" '
            f'title="{_text(row.get("description") or row.get("library"))}">{_text(name)}</td>',
            f'<td data-key="version" data-sort="{_text(row.get("version"))}">'
            f'{_text(row.get("version"))}</td>',
            f'<td class="v-{_text(row.get("verdict"))}" data-key="verdict" '
            f'data-sort="{_rank(VERDICT_ORDER, row.get("verdict"))}">'
            f'{_text(verdict_label(row))}</td>',
            f'<td data-key="coverage" data-sort="{_text(ratio if ratio is not None else -1)}">'
            + (f'{_text(coverage.get("checked"))}/{_text(coverage.get("applicable"))}'
               if coverage.get("applicable") is not None else "?") + "</td>",
        ]
        for claims in families.values():
            for claim in claims:
                status = row["claims"].get(claim["id"], ClaimStatus.NOT_RUN)
                texts = cell_texts(row, claim["id"])
                label = _text(STATUS_LABEL.get(status, status))
                if texts:
                    label = (f'<a href="#{anchors[name, texts[0]]}" '
                             f'title="{_text(" | ".join(texts))}">{label}</a>')
                cells.append(f'<td class="s-{_text(status)}" data-key="'
                             f'{_text(_claim_key(claim["id"]))}" data-status="{_text(status)}" '
                             f'data-sort="{_rank(STATUS_ORDER, status)}">{label}</td>')
        body.append(f'<tr data-impl="{_text(name)}">' + "".join(cells) + "</tr>")
    legend = "".join(f'<span class="s-{status}">{_text(STATUS_LABEL[status])}: '
                     f"{_text(status)}</span>" for status in STATUS_ORDER)
    note_items = "".join(
        f'<li id="{anchor}"><code>{_text(name)}</code>: {_note(text)} — '
        + "; ".join(_explained(status, keys) for status, keys in explained) + "</li>"
        for anchor, name, text, explained in notes)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>klconform conformance matrix</title>
<style>{STYLE}</style>
</head>
<body>
<h1>klconform conformance matrix</h1>
<p>Spec {_text(matrix.get("spec_version"))}: {len(rows)} implementations;
{judged} must- and should-level claims, which coverage counts (checked: a returned value was
judged), and {points} implementation-defined points, recorded and never judged; {len(families)}
families. Click a column header to sort (again for the reverse order); click a cell to read
its failure or reason. <b>n/a</b>: the claim needs something the implementation does not have
(counted against coverage). <b>PASS with N deviations</b>: N claims hold only through a
declared deviation.</p>
<p class="legend">{legend}</p>
<table id="matrix">
<thead>
<tr><th rowspan="2" data-key="impl">implementation</th>
<th rowspan="2" data-key="version">version</th>
<th rowspan="2" data-key="verdict">verdict</th><th rowspan="2" data-key="coverage">coverage</th>
{head_families}</tr>
<tr>{head_claims}</tr>
</thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
<h2>Root causes: failures, deviations and unsupported claims, once per implementation</h2>
<ol class="notes">{note_items}</ol>
<script>{SCRIPT}</script>
</body>
</html>
"""


def _explained(status, keys):
    label = "case" if status is None else STATUS_LABEL.get(status, status)
    return f"{_text(label)}: " + ", ".join(f"<code>{_text(key)}</code>" for key in keys)


def _rank(order, value):
    return order.index(value) if value in order else len(order)


def _note(text):
    """A note's text, escaped; a trailing '(https://...)' link from a deviation becomes a
    link, only when it is a plain http(s) URL."""
    text = "" if text is None else str(text)
    if text.endswith(")") and " (http" in text:
        reason, _, url = text[:-1].rpartition(" (")
        if url.startswith(("https://", "http://")) and not any(c in url for c in " \"'<>`"):
            return f'{_text(reason)} (<a href="{_text(url)}" rel="noopener">{_text(url)}</a>)'
    return _text(text)
