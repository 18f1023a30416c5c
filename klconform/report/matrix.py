"""The cross-implementation matrix, built from report.json files alone.

`klconform matrix REPORT.json... --out DIR` writes matrix.json, matrix.md and index.html
(klconform.report.site, one static page). It never imports an implementation: each row is
what one report says, so a matrix can be rebuilt anywhere from the reports CI kept.

matrix.json, read by other tools:
    {"spec_version": str, "claims": [{"id", "level", "family", "statement"}],
     "implementations": {NAME: {"library": str, "version": str, "verdict": str,
                                "coverage": {"checked": n, "applicable": n, "ratio": x},
                                "claims": {CLAIM_ID: STATUS},
                                "notes": {CLAIM_ID: [reason or link, ...]}}}}
STATUS is report.json's claim-status vocabulary (pass, fail, warn, known-deviation,
unsupported, not-run, recorded).
"""

import json
from pathlib import Path

from klconform.errors import KLConformError

MARK = {"pass": "pass", "fail": "**FAIL**", "warn": "warn", "known-deviation": "deviation",
        "unsupported": "n/a", "not-run": "not run", "recorded": "recorded"}


class MatrixError(KLConformError):
    """A file given to `klconform matrix` is not a usable report.json."""


def read_report(path):
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise MatrixError(f"{path}: not a readable report.json ({error})") from None
    for key in ("implementation", "claims", "verdict"):
        if not isinstance(report, dict) or key not in report:
            raise MatrixError(f"{path}: not a klconform report.json (no {key!r})")
    return report


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
        implementations[name] = {
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
    if len(spec_versions) > 1:
        raise MatrixError(f"reports of different spec versions: {sorted(map(str, spec_versions))}")
    return {"spec_version": next(iter(spec_versions), None), "claims": list(claims.values()),
            "implementations": dict(sorted(implementations.items()))}


def _notes(report):
    """claim -> the reasons a claim is unsupported or a known deviation, with links."""
    notes = {}
    for claim in report["claims"]:
        if claim["status"] in ("known-deviation", "unsupported") and claim.get("reasons"):
            notes[claim["id"]] = list(claim["reasons"])
    for deviation in report.get("deviations") or ():
        text = deviation["reason"] + (f" ({deviation['link']})" if deviation.get("link") else "")
        entry = notes.setdefault(deviation["id"], [])
        if text not in entry:
            entry.append(text)
    return notes


def _first_failures(report):
    """claim -> the first failure's one-line summary, for a cell to link to."""
    first = {}
    for failure in report.get("failures") or ():
        for claim in failure.get("claims") or ():
            first.setdefault(claim, f"{failure.get('case')} [{failure.get('dtype')}]: "
                                    f"{failure.get('summary')}")
    return first


def render_matrix_markdown(matrix):
    from klconform.report.markdown import cell

    names = list(matrix["implementations"])
    rows = matrix["implementations"]
    lines = [
        "# klconform conformance matrix",
        "",
        f"Spec {cell(matrix['spec_version'])}. One column per implementation, one row per "
        "claim; `n/a`: the claim needs something the implementation does not have "
        "(counted against coverage), `deviation`: a known deviation, with its reason below.",
        "",
        "| | " + " | ".join(f"`{cell(name)}`" for name in names) + " |",
        "|---|" + "---|" * len(names),
        "| version | " + " | ".join(cell(rows[n]["version"]) for n in names) + " |",
        "| verdict | " + " | ".join(rows[n]["verdict"].upper() for n in names) + " |",
        "| coverage | " + " | ".join(
            f"{rows[n]['coverage']['checked']}/{rows[n]['coverage']['applicable']}"
            for n in names) + " |",
    ]
    for claim in matrix["claims"]:
        statuses = [MARK.get(rows[n]["claims"].get(claim["id"], "not-run"), "?") for n in names]
        lines.append(f"| `{claim['id']}` ({claim['level']}) | " + " | ".join(statuses) + " |")
    noted = [(n, claim, text) for n in names for claim, texts in rows[n]["notes"].items()
             for text in texts]
    if noted:
        lines += ["", "## Deviations and unsupported claims", ""]
        for name, claim, text in noted:
            lines.append(f"- `{cell(name)}` `{cell(claim)}`: {cell(text)}")
    failing = [(n, claim, text) for n in names for claim, text in rows[n]["failures"].items()]
    if failing:
        lines += ["", "## Failures (first per claim)", ""]
        for name, claim, text in failing:
            lines.append(f"- `{cell(name)}` `{cell(claim)}`: {cell(text)}")
    return "\n".join(lines) + "\n"


def write_matrix(report_paths, out_dir):
    from klconform.report.build import write_atomically
    from klconform.report.site import render_site

    matrix = build_matrix([read_report(path) for path in report_paths])
    out = Path(out_dir)
    write_atomically(out / "matrix.json", json.dumps(matrix, indent=2) + "\n")
    write_atomically(out / "matrix.md", render_matrix_markdown(matrix))
    write_atomically(out / "index.html", render_site(matrix))
    return matrix
