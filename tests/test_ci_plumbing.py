"""junit.xml and `klconform diff`: pure functions of report.json dicts."""

import copy
import json
import xml.etree.ElementTree as ET

import pytest

from klconform.cli.main import main
from klconform.report.diff import compare, render_markdown
from klconform.report.junit import junit_xml


def claim(claim_id, status, level="must", cases=()):
    return {"id": claim_id, "level": level, "statement": f"{claim_id} holds", "status": status,
            "counts": {}, "cases": [{"case": case, "dtype": "float32", "status": case_status,
                                     "nodeid": f"test_case[{case}-float32]"}
                                    for case, case_status in cases]}


def report(claims, failures=(), verdict="pass"):
    return {"report_schema": "2", "verdict": verdict, "claims": list(claims),
            "failures": list(failures), "crashes": [],
            "implementation": {"name": "mylib", "version": "1.0"},
            "run": {"complete": True, "partial": [], "duration_s": 1.5}}


PASSING = report([claim("reduction-batchmean", "pass", cases=[("batchmean-2d", "passed")]),
                  claim("mean-warns", "warn", "should", cases=[("mean-warns", "warned")]),
                  claim("legacy", "unsupported", "implementation-defined")])
FAILURE = {"case": "batchmean-2d", "dtype": "float32", "claims": ["reduction-batchmean"],
           "level": "must", "status": "failed", "nodeid": "test_case[batchmean-2d-float32]",
           "summary": "oracle: expected 0.5, got 0.125",
           "diagnosis": "looks like: 'batchmean' computed as 'mean' (divided by 4)",
           "checks": ["oracle: expected 0.5, got 0.125"]}
FAILING = report([claim("reduction-batchmean", "fail", cases=[("batchmean-2d", "failed")]),
                  claim("mean-warns", "warn", "should", cases=[("mean-warns", "warned")]),
                  claim("legacy", "unsupported", "implementation-defined")],
                 [FAILURE], verdict="fail")


def test_diff_names_a_must_regression_and_exits_1():
    diff = compare(PASSING, FAILING)
    assert [(c.kind, c.name) for c in diff.regressions] == [
        ("claim", "reduction-batchmean"), ("case", "batchmean-2d[float32]")]
    assert diff.exit_status == 1
    assert "divided by 4" in diff.regressions[1].detail
    fixed = compare(FAILING, PASSING)
    assert [c.name for c in fixed.fixes] == ["reduction-batchmean", "batchmean-2d[float32]"]
    assert fixed.exit_status == 0
    assert compare(PASSING, PASSING).exit_status == 0


def test_a_should_level_regression_is_listed_but_does_not_fail():
    new = copy.deepcopy(PASSING)
    new["claims"][1] = claim("mean-warns", "fail", "should", cases=[("mean-warns", "failed")])
    diff = compare(PASSING, new)
    assert [c.level for c in diff.regressions] == ["should", "should"]
    assert diff.exit_status == 0


def test_newly_unsupported_and_no_longer_run():
    new = copy.deepcopy(PASSING)
    new["claims"][0] = claim("reduction-batchmean", "unsupported",
                             cases=[("batchmean-2d", "unsupported")])
    new["claims"][1] = claim("mean-warns", "not-run", "should")
    diff = compare(PASSING, new)
    assert {c.name for c in diff.new_unsupported} == {"reduction-batchmean",
                                                      "batchmean-2d[float32]"}
    assert {c.name for c in diff.no_longer_run} == {"mean-warns", "mean-warns[float32]"}
    assert diff.exit_status == 0


def test_markdown_diff_escapes_untrusted_text():
    hostile = copy.deepcopy(FAILING)
    hostile["failures"][0]["diagnosis"] = "| <script>x</script> `"
    text = render_markdown(compare(PASSING, hostile), PASSING, hostile)
    assert "<script>" not in text and "\\| &lt;script&gt;" in text


def test_diff_command_exit_statuses(tmp_path, capsys):
    old, new, bad = tmp_path / "old.json", tmp_path / "new.json", tmp_path / "bad.json"
    old.write_text(json.dumps(PASSING))
    new.write_text(json.dumps(FAILING))
    bad.write_text(json.dumps({"hello": 1}))
    assert main(["diff", str(old), str(new)]) == 1
    assert "claim reduction-batchmean (must): pass -> fail" in capsys.readouterr().out
    assert main(["diff", str(old), str(old)]) == 0
    assert main(["diff", str(old), str(bad)]) == 2
    assert "not a klconform report.json" in capsys.readouterr().err
    assert main(["diff", str(old), str(tmp_path / "missing.json")]) == 2


def test_junit_claims_are_tests_and_the_diagnosis_is_the_message():
    suite = ET.fromstring(junit_xml(FAILING)).find("testsuite")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"reduction-batchmean", "mean-warns", "legacy"}
    failure = cases["reduction-batchmean"].find("failure")
    assert failure.get("message") == ("batchmean-2d[float32]: looks like: 'batchmean' "
                                      "computed as 'mean' (divided by 4)")
    assert "oracle: expected 0.5, got 0.125" in failure.text
    assert cases["legacy"].find("skipped") is not None
    assert cases["mean-warns"].find("failure") is None  # should-level: a warning, not a fail
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")


@pytest.mark.parametrize("text", ["a\x00b\x1b[31m", "]]></failure><x>", "\ud800 & <>\"'"])
def test_junit_survives_hostile_text(text):
    hostile = copy.deepcopy(FAILING)
    hostile["failures"][0]["diagnosis"] = text
    hostile["failures"][0]["checks"] = [text]
    hostile["implementation"]["name"] = text
    document = junit_xml(hostile)
    document.encode("utf-8")  # no lone surrogate left
    failure = ET.fromstring(document).find("testsuite/testcase/failure")
    assert failure is not None and "batchmean-2d[float32]" in failure.get("message")
