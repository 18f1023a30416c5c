"""Each conformance test's identity (kind, case, dtype, claims) is decided where the test is
made and travels with its events; the report never works it out of a node id."""

import json
import subprocess
import sys

import pytest

from klconform.cli.main import main
from klconform.constants import STREAM_FORMAT
from klconform.harness.child_runner import _append_crash
from klconform.harness.identity import SUITES, identities
from klconform.harness.run_stream import ended, in_flight, read_stream
from klconform.report.build import build_report
from klconform.spec.cases import load_cases
from klconform.spec.claims import load_spec


def test_every_collected_conformance_test_has_an_identity_and_no_identity_is_lost(tmp_path):
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "--impl=numpy", "--kl-profile=thorough"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    files = {suite.function: suite.file for suite in SUITES}
    # Outside the rootdir pytest names a suite test `::test_case[ID]`.
    tests = {f"{files[line[2:].split('[')[0]]}::{line[2:]}"
             for line in collected.stdout.splitlines() if line.startswith("::test_")}
    known = identities(load_cases())
    assert tests and tests == set(known)
    kinds = {identity.kind for identity in known.values()}
    assert kinds == {"case", "gradient", "layout", "property"}


def _layout_start(tmp_path):
    known = identities(load_cases())
    layout = next(identity for identity in known.values() if identity.kind == "layout")
    header = {"event": "header", "stream_format": STREAM_FORMAT,
              "run": {"started": 0.0, "profile": "default", "strict": False, "device": "cpu",
                      "settings": {}}}
    start = {"event": "start", "nodeid": f"suites/{layout.test}", **layout.fields()}
    stream = tmp_path / "run.jsonl"
    stream.write_text("".join(json.dumps(event) + "\n" for event in (header, start)))
    return layout, stream


def test_a_layout_test_that_crashed_the_process_fails_layout_independence_only(tmp_path):
    layout, stream = _layout_start(tmp_path)
    started = in_flight(read_stream(stream))
    assert started["test"] == layout.test
    _append_crash(tmp_path, {"nodeid": started["nodeid"], "returncode": -11,
                             "signal": "SIGSEGV"}, started)
    report = build_report(read_stream(stream), load_spec())
    failed = {claim["id"] for claim in report["claims"] if claim["status"] == "fail"}
    assert failed == {"layout-independent"}
    [failure] = report["failures"]
    assert failure["case"] == layout.case_id and failure["dtype"] == layout.dtype
    assert "crashed the test process (SIGSEGV)" in failure["summary"]


def test_a_stream_has_ended_only_when_its_last_line_is_a_footer(tmp_path, monkeypatch):
    """What `klconform run` reads from the stream's end to see that pytest did not crash."""
    from klconform.harness import run_stream

    _, stream = _layout_start(tmp_path)
    assert not ended(tmp_path) and not ended(tmp_path / "missing")
    footer = json.dumps({"event": "footer", "exitstatus": 0, "finished": 1.0}) + "\n"
    monkeypatch.setattr(run_stream, "TAIL_BYTES", len(footer) + 10)   # starts mid-line
    stream.write_text(stream.read_text() + footer)
    assert ended(tmp_path) and ended(stream)
    stream.write_text(stream.read_text() + footer[:20])   # a line cut short by a crash
    assert not ended(tmp_path)


def test_a_stream_of_another_format_is_refused_in_one_line(tmp_path, capsys):
    stream = tmp_path / "run.jsonl"
    stream.write_text(json.dumps({"event": "header", "stream_format": 1,
                                  "klconform_version": "0.0.9"}) + "\n")
    assert main(["report", str(stream), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "run stream format 1" in error and f"reads format {STREAM_FORMAT}" in error
    assert "0.0.9" in error


@pytest.mark.parametrize("kind", ["case", "gradient", "property"])
def test_an_identity_names_the_claims_of_its_own_kind(kind):
    identity = next(each for each in identities(load_cases()).values() if each.kind == kind)
    fields = identity.fields()
    assert fields["test"].endswith(f"[{identity.param}]")
    if kind == "gradient":
        assert fields["claims"] == ["gradient-input", "gradient-target"]
        assert fields["case_id"].startswith("grad:")
    elif kind == "property":
        assert fields["case_id"].startswith("property:")
