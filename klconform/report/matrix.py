"""The cross-implementation matrix, built from report.json files alone.

`klconform matrix REPORT.json... --out DIR` writes matrix.json, matrix.md and index.html
(klconform.report.site, one static page). It never imports an implementation: each row is
what one report says, so a matrix can be rebuilt anywhere from the reports CI kept.

matrix.json, read by other tools:
    {"spec_version": str, "claims": [{"id", "level", "family", "statement"}],
     "implementations": {NAME: {"library": str, "version": str, "verdict": str,
                                "verdict_label": str,
                                "coverage": {"checked": n, "applicable": n, "ratio": x},
                                "claims": {CLAIM_ID: STATUS},
                                "notes": {CLAIM_ID or CASE_ID: [reason (link), ...]},
                                "failures": {CLAIM_ID: first failure}}}}
STATUS is report.json's claim-status vocabulary (pass, fail, warn, known-deviation,
unsupported, not-run, recorded). verdict_label is what a person reads: PASS, PASS with N
deviations (claims that hold only through a declared deviation), FAIL or INCOMPLETE.

matrix.md and index.html are rendered from matrix.json alone (`klconform matrix
--from-matrix matrix.json --out DIR` re-renders them), and list each implementation's root
causes once: every distinct failure or reason with the claims (and cases) it explains.
"""

import json
import re
from pathlib import Path

from klconform.errors import KLConformError
from klconform.statuses import JUDGED_LEVELS, ClaimStatus, Verdict

MARK = {ClaimStatus.PASS: "pass", ClaimStatus.FAIL: "**FAIL**", ClaimStatus.WARN: "warn",
        ClaimStatus.KNOWN_DEVIATION: "deviation", ClaimStatus.UNSUPPORTED: "n/a",
        ClaimStatus.NOT_RUN: "not run", ClaimStatus.RECORDED: "recorded"}
# A claim's reason for a known deviation repeats the deviation's own reason behind this
# prefix (spec/deviations.py describe()); without it the two are one root cause.
DEVIATION_PREFIX = re.compile(r"^known deviation (?:'[^']*'|\"[^\"]*\"): ")


class MatrixError(KLConformError):
    """A file given to `klconform matrix` is not a usable report.json."""


def read_report(path):
    return _read_json(path, "report.json", ("implementation", "claims", "verdict"))


def _read_json(path, kind, keys):
    """A klconform JSON file of `kind` with `keys`, or a one-line MatrixError."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise MatrixError(f"{path}: not a readable {kind} ({error})") from None
    for key in keys:
        if not isinstance(document, dict) or key not in document:
            raise MatrixError(f"{path}: not a klconform {kind} (no {key!r})")
    return document


def build_matrix(reports):
    implementations, claims, spec_versions = {}, {}, set()
    for report in reports:
        implementation = report["implementation"]
        name = implementation.get("name") or "?"
        if name in implementations:
            raise MatrixError(f"two reports for the implementation {name!r}")
        spec_versions.add(report.get("spec_version"))
        for claim in report["claims"]:
            claims.setdefault(claim["id"], {key: claim.get(key) for key in (
                "id", "level", "family", "statement")})
        coverage = report.get("coverage") or {}
        row = {
            "library": implementation.get("library") or name,
            "version": implementation.get("version") or "unknown",
            "description": implementation.get("description"),
            "convention": implementation.get("convention"),
            "verdict": report["verdict"],
            "coverage": {key: coverage.get(key) for key in ("checked", "applicable", "ratio")},
            "claims": {claim["id"]: claim["status"] for claim in report["claims"]},
            "notes": _notes(report),
            "failures": _first_failures(report),
        }
        row["verdict_label"] = verdict_label(row)
        implementations[name] = row
    if len(spec_versions) > 1:
        raise MatrixError(f"reports of different spec versions: {sorted(map(str, spec_versions))}")
    return {"spec_version": next(iter(spec_versions), None), "claims": list(claims.values()),
            "implementations": dict(sorted(implementations.items()))}


def plain_note(text):
    """A reason on one line, without the 'known deviation ID:' prefix that makes a claim's
    copy of a deviation's reason look like a second reason."""
    return DEVIATION_PREFIX.sub("", " ".join(str(text or "").split()))


def _notes(report):
    """claim (or case) -> the distinct reasons it is unsupported or a known deviation, with
    links."""
    notes = {}

    def add(key, text):
        entry = notes.setdefault(key, [])
        if plain_note(text) not in entry:
            entry.append(plain_note(text))

    for claim in report["claims"]:
        if claim["status"] in (ClaimStatus.KNOWN_DEVIATION, ClaimStatus.UNSUPPORTED):
            for reason in claim.get("reasons") or ():
                add(claim["id"], reason)
    for deviation in report.get("deviations") or ():
        add(deviation["id"], deviation["reason"]
            + (f" ({deviation['link']})" if deviation.get("link") else ""))
    return notes


def verdict_label(row):
    """PASS, PASS with N deviations, FAIL or INCOMPLETE: a pass that leans on declared
    deviations says how many claims it leans on."""
    verdict = str(row.get("verdict") or "?")
    if verdict != Verdict.PASS:
        return verdict.upper()
    count = sum(status == ClaimStatus.KNOWN_DEVIATION
                for status in (row.get("claims") or {}).values())
    return f"PASS with {count} deviation{'s' * (count != 1)}" if count else "PASS"


def cell_texts(row, key):
    """The distinct texts behind one cell: its first failure, then its reasons."""
    texts = []
    failure = (row.get("failures") or {}).get(key)
    if failure:
        texts.append(" ".join(str(failure).split()))
    for text in (row.get("notes") or {}).get(key) or ():
        if plain_note(text) not in texts:
            texts.append(plain_note(text))
    return texts


def root_causes(row, claim_ids):
    """[(text, [claim or case id, ...])]: each distinct failure or reason of one
    implementation once, with everything it explains, in the matrix's claim order (then
    the case ids that deviations name)."""
    keys = list(claim_ids) + [key for key in (row.get("notes") or {}) if key not in claim_ids]
    causes = {}
    for key in keys:
        for text in cell_texts(row, key):
            explained = causes.setdefault(text, [])
            if key not in explained:
                explained.append(key)
    return list(causes.items())


def judged_claims(matrix):
    """(claims coverage counts, implementation-defined points) in the matrix."""
    judged = sum(claim.get("level") in JUDGED_LEVELS for claim in matrix["claims"])
    return judged, len(matrix["claims"]) - judged


def explained_by_status(row, keys):
    """[(claim status, [key, ...])] in order of first appearance; status None for keys that
    are not claims (the case ids deviations name)."""
    groups = {}
    for key in keys:
        groups.setdefault((row.get("claims") or {}).get(key), []).append(key)
    return list(groups.items())


def _first_failures(report):
    """claim -> the first failure's one-line summary, for a cell to link to."""
    first = {}
    for failure in report.get("failures") or ():
        for claim in failure.get("claims") or ():
            first.setdefault(claim, f"{failure.get('case')} [{failure.get('dtype')}]: "
                                    f"{failure.get('summary')}")
    return first


def render_matrix_markdown(matrix):
    from klconform.report.markdown import cell, code

    names = list(matrix["implementations"])
    rows = matrix["implementations"]
    judged, points = judged_claims(matrix)
    lines = [
        "# klconform conformance matrix",
        "",
        f"Spec {cell(matrix['spec_version'])}. One column per implementation, one row per "
        f"claim: coverage counts the {judged} must- and should-level claims (checked: a "
        "returned value was judged) out of those applicable; the "
        f"{points} implementation-defined points are recorded, never judged. `n/a`: the "
        "claim needs something the implementation does not have (counted against coverage), "
        "`deviation`: a known deviation. The verdict `PASS with N deviations` counts the "
        "claims that hold only through a declared deviation. Each implementation's root "
        "causes are listed once below.",
        "",
        "| | " + " | ".join(f"`{cell(name)}`" for name in names) + " |",
        "|---|" + "---|" * len(names),
        "| version | " + " | ".join(cell(rows[n]["version"]) for n in names) + " |",
        "| verdict | " + " | ".join(cell(verdict_label(rows[n])) for n in names) + " |",
        "| coverage | " + " | ".join(
            f"{rows[n]['coverage']['checked']}/{rows[n]['coverage']['applicable']}"
            for n in names) + " |",
    ]
    for claim in matrix["claims"]:
        statuses = [MARK.get(rows[n]["claims"].get(claim["id"], ClaimStatus.NOT_RUN), "?")
                    for n in names]
        lines.append(f"| `{claim['id']}` ({claim['level']}) | " + " | ".join(statuses) + " |")
    claim_ids = [claim["id"] for claim in matrix["claims"]]
    causes = [(name, root_causes(rows[name], claim_ids)) for name in names]
    if any(found for _, found in causes):
        lines += ["", "## Root causes: failures, deviations and unsupported claims"]
    for name, found in causes:
        if not found:
            continue
        lines += ["", f"### {code(name)}: {cell(verdict_label(rows[name]))}", ""]
        for text, keys in found:
            explained = "; ".join(
                ("case" if status is None else MARK.get(status, cell(status))) + ": "
                + ", ".join(code(key) for key in group)
                for status, group in explained_by_status(rows[name], keys))
            lines.append(f"- {cell(text)} — {explained}")
    return "\n".join(lines) + "\n"


def read_matrix(path):
    return _read_json(path, "matrix.json", ("claims", "implementations"))
