"""index.html, the matrix as a static page: rows, statuses, escaping and sorting, checked in
the page a browser renders (headless Chromium) and in its source.

Without a Chromium the browser tests skip, with the reason; where KLCONFORM_BROWSER_TESTS is
"required" (.ci/run sets it, after installing Debian's chromium) they fail instead, so that CI
cannot pass with the page untested."""

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from klconform.report.matrix_files import write_matrix

HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
CHROMIUM = next(filter(None, map(shutil.which, (
    "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"))), None)
BROWSER_REQUIRED = os.environ.get("KLCONFORM_BROWSER_TESTS") == "required"
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not BROWSER_REQUIRED,
    reason="no chromium binary on PATH (apt-get install chromium) to render index.html "
           "headless; the page's source is still checked")


def report(name, version, statuses, coverage, verdict, failure=None, deviations=()):
    claims = [("roles", "roles"), ("roles-asymmetric", "roles"),
              ("reduction-sum", "reductions"), ("result-dtype", "dtypes")]
    return {
        "implementation": {"name": name, "library": name, "version": version},
        "spec_version": "1.0.0", "verdict": verdict,
        "coverage": {"checked": coverage[0], "applicable": coverage[1],
                     "ratio": round(coverage[0] / coverage[1], 4)},
        "claims": [{"id": claim, "level": "must", "family": family, "statement": "s",
                    "status": statuses.get(claim, "pass"),
                    "reasons": ["no autograd <i>"] if statuses.get(claim) == "unsupported"
                    else []}
                   for claim, family in claims],
        "deviations": list(deviations),
        "failures": [failure] if failure else [],
    }


@pytest.fixture
def site(tmp_path):
    reports = [
        report("alpha", "1.0", {}, (4, 4), "pass"),
        report("beta<b>", "2.0 & up", {"reduction-sum": "fail", "result-dtype": "unsupported"},
               (3, 4), "fail",
               failure={"case": "sum-case", "dtype": "float32", "claims": ["reduction-sum"],
                        "summary": f"raised ValueError: {HOSTILE}"}),
        report("gamma", "0.3", {"roles": "known-deviation"}, (2, 4), "pass",
               deviations=[{"id": "roles", "reason": "swaps the roles",
                            "link": "https://example.org/issue/1"}]),
    ]
    paths = []
    for index, each in enumerate(reports):
        path = tmp_path / f"r{index}.json"
        path.write_text(json.dumps(each))
        paths.append(path)
    write_matrix(paths, tmp_path / "matrix")
    return tmp_path / "matrix" / "index.html"


class Table(HTMLParser):
    """Rows of #matrix's body in document order: implementation -> {data-key: attributes}."""

    def __init__(self):
        super().__init__()
        self.rows, self.row, self.title, self.in_title, self.scripts = [], None, "", False, 0
        self.fetched = []       # what a browser would load: src=, <link>, <img>, ...

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "src" in attrs or tag in ("link", "img", "iframe", "object", "embed"):
            self.fetched.append((tag, attrs))
        if tag == "tr" and "data-impl" in attrs:
            self.row = (attrs["data-impl"], {})
            self.rows.append(self.row)
        elif tag == "td" and self.row is not None:
            self.row[1][attrs.get("data-key")] = attrs
        elif tag == "title":
            self.in_title = True
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False

    def handle_data(self, data):
        if self.in_title:
            self.title += data


def parse(text):
    table = Table()
    table.feed(text)
    return table


def rendered(page, tmp_path, fragment=""):
    """The DOM Chromium has after loading the page (and running its script)."""
    assert CHROMIUM, "KLCONFORM_BROWSER_TESTS=required, and no chromium binary is on PATH"
    # --no-sandbox: CI runs as root. No background connections: the machine may have no
    # network, and Chromium's retries only slow the page down.
    result = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom",
         page.as_uri() + fragment],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<tbody>" in result.stdout, result.stderr[-2000:]
    return result.stdout


def test_the_page_is_self_contained_and_escaped(site):
    text = site.read_text()
    table = parse(text)
    assert [name for name, _ in table.rows] == ["alpha", "beta<b>", "gamma"]
    assert table.scripts == 1                        # the page's own, inline
    assert "<script>document.title" not in text and "<img src=x" not in text
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in text
    assert table.fetched == []
    style = text.split("<style>", 1)[1].split("</style>", 1)[0]
    assert "@import" not in style and "url(" not in style
    assert '<a href="https://example.org/issue/1" rel="noopener">' in text


@needs_chromium
def test_chromium_renders_rows_statuses_and_inert_failure_text(site, tmp_path):
    dom = rendered(site, tmp_path)
    table = parse(dom)
    assert table.title == "klconform conformance matrix"   # no injected script ran
    rows = dict(table.rows)
    assert list(rows) == ["alpha", "beta<b>", "gamma"]
    assert rows["beta<b>"]["claim:reduction-sum"]["data-status"] == "fail"
    assert rows["beta<b>"]["claim:reduction-sum"]["class"] == "s-fail"
    assert rows["beta<b>"]["claim:result-dtype"]["data-status"] == "unsupported"
    assert rows["gamma"]["claim:roles"]["data-status"] == "known-deviation"
    assert rows["alpha"]["claim:roles"]["data-status"] == "pass"
    assert "<img" not in dom.split("<tbody>", 1)[1].split("</ol>", 1)[0]
    assert "&lt;script&gt;document.title=" in dom
    assert dom.count("<script") == 1


@needs_chromium
@pytest.mark.parametrize("fragment, order", [
    ("#sort=-coverage", ["alpha", "beta<b>", "gamma"]),
    ("#sort=coverage", ["gamma", "beta<b>", "alpha"]),
    ("#sort=claim%3Aroles", ["gamma", "alpha", "beta<b>"]),      # known deviation first
    ("#sort=claim%3Areduction-sum", ["beta<b>", "alpha", "gamma"]),  # the failure first
    ("#sort=-impl", ["gamma", "beta<b>", "alpha"]),
])
def test_chromium_sorts_by_the_fragment_a_header_click_sets(site, tmp_path, fragment, order):
    dom = rendered(site, tmp_path, fragment)
    assert [name for name, _ in parse(dom).rows] == order
    key = fragment.split("=", 1)[1].lstrip("-").replace("%3A", ":")
    direction = "descending" if "=-" in fragment else "ascending"
    assert f'data-key="{key}" aria-sort="{direction}"' in dom or \
        f'aria-sort="{direction}"' in dom.split(f'data-key="{key}"', 1)[1].split(">", 1)[0]
