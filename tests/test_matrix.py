"""The matrix: built from report.json files alone, and the committed rows reproduce."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from klconform.report.matrix import MatrixError, build_matrix, read_report
from klconform.report.matrix_files import write_matrix

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "reports" / "matrix" / "matrix.json"


def fake_report(name, statuses, verdict="pass"):
    return {"implementation": {"name": name, "library": name, "version": "1.0"},
            "spec_version": "1.0.0", "verdict": verdict,
            "coverage": {"checked": 2, "applicable": 3, "ratio": 0.6667},
            "claims": [{"id": claim, "level": "must", "family": "roles", "statement": "s",
                        "status": status, "reasons": ["why"] if status != "pass" else []}
                       for claim, status in statuses.items()],
            "deviations": [{"id": "roles", "reason": "it swaps", "link": "https://x/1"}],
            "failures": []}


def test_matrix_rows_are_what_the_reports_say(tmp_path):
    paths = []
    for name, statuses in (("a", {"roles": "pass", "zero-target": "unsupported"}),
                           ("b", {"roles": "known-deviation", "zero-target": "fail"})):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(fake_report(name, statuses)))
        paths.append(path)
    matrix = write_matrix(paths, tmp_path / "out")
    assert matrix["implementations"]["b"]["claims"] == {"roles": "known-deviation",
                                                        "zero-target": "fail"}
    assert matrix["implementations"]["a"]["coverage"]["checked"] == 2
    assert "it swaps (https://x/1)" in matrix["implementations"]["b"]["notes"]["roles"]
    markdown = (tmp_path / "out" / "matrix.md").read_text()
    assert "| `zero-target` (must) | n/a | **FAIL** |" in markdown
    assert json.loads((tmp_path / "out" / "matrix.json").read_text()) == matrix


def test_bad_inputs_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(MatrixError, match="broken.json: not a readable report.json"):
        read_report(broken)
    with pytest.raises(MatrixError, match="two reports for the implementation 'a'"):
        build_matrix([fake_report("a", {}), fake_report("a", {})])


# Three whole runs (a minute of CI's ten): `tox -m matrix` regenerates every row anyway.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["numpy", "scipy", "torchmetrics"])
def test_a_fresh_run_reproduces_the_committed_row(name, tmp_path):
    pytest.importorskip({"numpy": "numpy", "scipy": "scipy.special",
                         "torchmetrics": "torchmetrics"}[name])
    committed = json.loads(COMMITTED.read_text())["implementations"][name]
    subprocess.run([sys.executable, "-m", "klconform.cli.main", "run", "--impl", name,
                    "--report-dir", str(tmp_path / name), "--", "-q"],
                   cwd=tmp_path, capture_output=True, text=True, timeout=600)
    report = json.loads((tmp_path / name / "report.json").read_text())
    fresh = {claim["id"]: claim["status"] for claim in report["claims"]}
    assert fresh == committed["claims"]
    assert report["verdict"] == committed["verdict"]
