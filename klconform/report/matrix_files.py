"""The matrix's files: matrix.json, matrix.md and index.html in one folder.

Apart from klconform.report.matrix (the table, built from reports) and
klconform.report.site (the page), both of which this module uses and neither of which
knows the other's files.
"""

import json
from pathlib import Path

from klconform.files import write_atomically
from klconform.report.matrix import build_matrix, read_report, render_matrix_markdown
from klconform.report.site import render_site


def write_matrix(report_paths, out_dir):
    matrix = build_matrix([read_report(path) for path in report_paths])
    write_atomically(Path(out_dir) / "matrix.json", json.dumps(matrix, indent=2) + "\n")
    render_pages(matrix, out_dir)
    return matrix


def render_pages(matrix, out_dir):
    """matrix.md and index.html from a matrix (built here, or a saved matrix.json)."""
    out = Path(out_dir)
    write_atomically(out / "matrix.md", render_matrix_markdown(matrix))
    write_atomically(out / "index.html", render_site(matrix))
