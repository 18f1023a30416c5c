"""What the matrix pages say is true: verdicts say PASS, PASS with N deviations, FAIL or
INCOMPLETE; each implementation's root causes are listed once; the claim count shown is the
count coverage is out of; the committed pages are what the committed matrix.json renders."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from klconform.report.matrix import (
    build_matrix,
    read_matrix,
    render_matrix_markdown,
    verdict_label,
)
from klconform.report.matrix_files import write_matrix
from klconform.report.site import render_site

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "reports" / "matrix"
SWAPS = "it swaps the roles"
LINK = "https://example.org/issue/1"


def report(name, statuses, verdict="pass", deviations=(), reasons=None, failures=()):
    levels = {"impl-shape-mismatch": "implementation-defined"}
    return {
        "implementation": {"name": name, "library": name, "version": "1.0"},
        "spec_version": "1.0.0", "verdict": verdict,
        "coverage": {"checked": 1, "applicable": 3, "ratio": 0.3333},
        "claims": [{"id": claim, "level": levels.get(claim, "must"), "family": "roles",
                    "statement": "s", "status": status,
                    "reasons": list((reasons or {}).get(claim, ()))}
                   for claim, status in statuses.items()],
        "deviations": list(deviations), "failures": list(failures),
    }


def deviating(name="dev"):
    """A pass leaning on two deviations; the claims' reasons repeat the deviation's own, as
    harness/conclude.py writes them."""
    return report(
        name, {"roles": "known-deviation", "roles-asymmetric": "known-deviation",
               "reduction-sum": "pass", "impl-shape-mismatch": "recorded"},
        deviations=[{"id": "roles", "reason": SWAPS, "link": LINK},
                    {"id": "roles-asymmetric", "reason": SWAPS, "link": LINK}],
        reasons={"roles": [f"known deviation 'roles': {SWAPS} ({LINK})"],
                 "roles-asymmetric": [f"known deviation 'roles-asymmetric': {SWAPS} ({LINK})"]})


@pytest.mark.parametrize(("verdict", "statuses", "label"), [
    ("pass", {"roles": "pass"}, "PASS"),
    ("pass", {"roles": "known-deviation"}, "PASS with 1 deviation"),
    ("pass", {"roles": "known-deviation", "zero-target": "known-deviation"},
     "PASS with 2 deviations"),
    ("fail", {"roles": "fail", "zero-target": "known-deviation"}, "FAIL"),
    ("incomplete", {"roles": "unsupported"}, "INCOMPLETE"),
])
def test_verdict_labels(verdict, statuses, label):
    assert verdict_label({"verdict": verdict, "claims": statuses}) == label


def test_the_pages_show_the_labels():
    matrix = build_matrix([deviating(), report("ok", {"roles": "pass"}),
                           report("bad", {"roles": "fail"}, verdict="fail")])
    assert matrix["implementations"]["dev"]["verdict_label"] == "PASS with 2 deviations"
    markdown = render_matrix_markdown(matrix)
    assert "| verdict | FAIL | PASS with 2 deviations | PASS |" in markdown
    page = render_site(matrix)
    assert 'data-key="verdict" data-sort="2">PASS with 2 deviations</td>' in page
    assert ">FAIL</td>" in page


def test_a_reason_is_listed_once_per_implementation_with_every_claim_it_explains():
    matrix = build_matrix([deviating("dev"), deviating("other")])
    markdown = render_matrix_markdown(matrix)
    listed = [line for line in markdown.splitlines() if SWAPS in line]
    assert len(listed) == 2                                   # once for each implementation
    assert all(line.endswith("— deviation: `roles`, `roles-asymmetric`") for line in listed)
    page = render_site(matrix)
    notes = page.split('<ol class="notes">', 1)[1].split("</ol>", 1)[0]
    assert notes.count(SWAPS) == 2 and notes.count("<li ") == 2
    # Both cells of an implementation link to its one note.
    row = page.split('<tr data-impl="dev">', 1)[1].split("</tr>", 1)[0]
    assert len(set(re.findall(r'href="#(n\d+)"', row))) == 1


def test_a_case_deviation_is_named_as_a_case():
    matrix = build_matrix([report(
        "dev", {"worked-examples": "known-deviation"},
        deviations=[{"id": "worked-one-hot-mean", "reason": "clipped", "link": None}],
        reasons={"worked-examples": ["known deviation 'worked-one-hot-mean': clipped"]})])
    markdown = render_matrix_markdown(matrix)
    assert "- clipped — deviation: `worked-examples`; case: `worked-one-hot-mean`" in markdown


def test_the_claim_count_is_the_one_coverage_is_out_of():
    matrix = build_matrix([deviating()])
    page = render_site(matrix)
    assert "3 must- and should-level claims, which coverage counts" in page
    assert "1 implementation-defined points" in page
    assert "4 claims" not in page
    assert "coverage counts the 3 must- and should-level claims" in render_matrix_markdown(matrix)


def test_the_committed_pages_are_what_the_committed_matrix_renders():
    matrix = read_matrix(COMMITTED / "matrix.json")
    assert (COMMITTED / "matrix.md").read_text() == render_matrix_markdown(matrix)
    assert (COMMITTED / "index.html").read_text() == render_site(matrix)


def test_the_committed_markdown_lists_no_root_cause_twice():
    markdown = (COMMITTED / "matrix.md").read_text()
    for section in markdown.split("\n### ")[1:]:
        items = [line for line in section.splitlines() if line.startswith("- ")]
        texts = [line.rsplit(" — ", 1)[0] for line in items]
        assert len(texts) == len(set(texts)), section.splitlines()[0]


def test_committed_notes_never_repeat_a_reason_behind_the_deviation_prefix():
    matrix = json.loads((COMMITTED / "matrix.json").read_text())
    markdown = (COMMITTED / "matrix.md").read_text()
    assert "known deviation '" not in markdown.split("## Root causes", 1)[1]
    assert matrix["implementations"]   # the file the pages are rendered from


def klconform_matrix(*args, cwd):
    return subprocess.run([sys.executable, "-m", "klconform.cli.main", "matrix", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_from_matrix_rerenders_the_pages_and_leaves_the_json(tmp_path):
    paths = []
    for name, each in (("a", deviating("a")), ("b", report("b", {"roles": "pass"}))):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(each))
        paths.append(path)
    write_matrix(paths, tmp_path / "built")
    saved = (tmp_path / "built" / "matrix.json").read_text()
    completed = klconform_matrix("--from-matrix", str(tmp_path / "built" / "matrix.json"),
                                 "--out", str(tmp_path / "again"), cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    for page in ("matrix.md", "index.html"):
        assert (tmp_path / "again" / page).read_text() == \
            (tmp_path / "built" / page).read_text()
    assert not (tmp_path / "again" / "matrix.json").exists()
    assert (tmp_path / "built" / "matrix.json").read_text() == saved


@pytest.mark.parametrize(("args", "words"), [
    ((), "give report.json files or --from-matrix MATRIX_JSON"),
    (("--from-matrix", "missing.json"), "missing.json: not a readable matrix.json"),
    (("--from-matrix", "report.json"), "report.json: not a klconform matrix.json"),
])
def test_from_matrix_bad_inputs_are_one_line_errors(tmp_path, args, words):
    (tmp_path / "report.json").write_text(json.dumps(deviating()))
    completed = klconform_matrix(*args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert completed.returncode == 2
    assert words in completed.stderr and len(completed.stderr.strip().splitlines()) == 1
