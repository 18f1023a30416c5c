"""`klconform check-spec`: passes on the real tree; on bad copies, fails with one line each."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from klconform import resources
from klconform.authoring.lint import check_spec
from klconform.cli.main import main


@pytest.fixture
def cases_copy(tmp_path):
    copy = tmp_path / "cases"
    shutil.copytree(resources.cases_dir(), copy)
    return copy


def replace_in(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def check_spec_lines(capsys, cases_dir):
    """Exit status and stderr lines of `klconform check-spec --only-cases DIR`."""
    status = main(["check-spec", "--only-cases", str(cases_dir)])
    captured = capsys.readouterr()
    return status, captured.err.splitlines()


def the_problem(lines):
    """The one problem line; the last line is the FAILED summary."""
    assert lines[-1] == "check-spec: FAILED with 1 problem(s)", lines
    assert len(lines) == 2, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_passes_on_the_real_tree(capsys):
    assert main(["check-spec"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.startswith("check-spec: ok: ")
    assert "published numbers reproduced" in captured.out


def test_the_installed_command_passes_outside_the_repository(tmp_path):
    # The console script sits beside the interpreter of the environment klconform is in.
    script = Path(sys.executable).with_name("klconform")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "klconform.cli.main"]
    completed = subprocess.run([*command, "check-spec"], cwd=tmp_path, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "check-spec: ok: " in completed.stdout


def test_an_unreproduced_published_number(capsys, cases_copy):
    replace_in(cases_copy / "worked_examples.yaml", "value: 0.0853,", "value: 0.0863,")
    status, lines = check_spec_lines(capsys, cases_copy)
    assert status == 1
    line = the_problem(lines)
    assert "worked_examples.yaml:5: case 'worked-uniform-vs-9-12-4': " in line
    assert "field 'expect.published.value'" in line
    assert "published 0.0863 is not reproduced: the oracle gives 0.0852" in line


def test_an_unreproduced_published_array(capsys, cases_copy):
    replace_in(cases_copy / "worked_examples.yaml", "[[-0.0635, 0.0116, 0.1097, -0.0190]]",
               "[[-0.0635, 0.0116, 0.1197, -0.0190]]")
    status, lines = check_spec_lines(capsys, cases_copy)
    assert status == 1
    line = the_problem(lines)
    assert "case 'worked-none-vector': field 'expect.published.array'" in line
    assert "published 0.1197 is not reproduced" in line


def test_a_claim_with_no_case(capsys, cases_copy):
    errors_file = cases_copy / "errors.yaml"
    data = yaml.safe_load(errors_file.read_text(encoding="utf-8"))
    data["cases"] = [case for case in data["cases"]
                     if "invalid-reduction-rejected" not in case["claims"]]
    assert data["cases"], "errors.yaml must keep other cases for this test to mean anything"
    errors_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    status, lines = check_spec_lines(capsys, cases_copy)
    assert status == 1
    line = the_problem(lines)
    assert "claims.yaml: claim 'invalid-reduction-rejected' has no case" in line


def test_every_uncovered_claim_is_listed(cases_copy):
    for name in ("errors.yaml", "warnings.yaml"):
        (cases_copy / name).unlink()
    problems, _ = check_spec(cases_dir=cases_copy)
    uncovered = {str(problem) for problem in problems}
    for claim in ("invalid-reduction-rejected", "nan-propagates", "mean-warns"):
        assert any(f"claim {claim!r} has no case" in text for text in uncovered), uncovered


def test_an_unknown_claim(capsys, cases_copy):
    replace_in(cases_copy / "worked_examples.yaml",
               "claims: [worked-examples, roles, reduction-batchmean]",
               "claims: [worked-examples, rolez, reduction-batchmean]")
    status, lines = check_spec_lines(capsys, cases_copy)
    assert status == 1
    line = the_problem(lines)
    # The line number stays with the file name (it was once cut in two).
    assert "worked_examples.yaml:6: case 'worked-uniform-vs-9-12-4': field 'claims[1]': " \
           "unknown claim 'rolez'" in line


def test_a_schema_violation(capsys, cases_copy):
    replace_in(cases_copy / "worked_examples.yaml",
               "expect:\n      published: {value: 0.0853,",
               "expect:\n      publishd: {value: 0.0853,")
    status, lines = check_spec_lines(capsys, cases_copy)
    assert status == 1
    line = the_problem(lines)
    assert "worked_examples.yaml:14: case 'worked-uniform-vs-9-12-4': field 'expect': " in line
    assert "'publishd' was unexpected" in line


def test_a_yaml_error_without_case_context(capsys, cases_copy):
    (cases_copy / "broken.yaml").write_text("cases: [\n", encoding="utf-8")
    status, lines = check_spec_lines(capsys, cases_copy)
    assert status == 1
    assert "broken.yaml:2: YAML error" in the_problem(lines)


def test_a_claim_following_an_unknown_claim(tmp_path):
    from klconform.spec.claims import SpecError, load_spec

    spec_copy = tmp_path / "spec"
    shutil.copytree(resources.spec_dir(), spec_copy)
    replace_in(spec_copy / "claims.yaml", "follows: [reduction-mean, reduction-batchmean]",
               "follows: [reduction-mean, reduction-avg]")
    with pytest.raises(SpecError) as caught:
        load_spec(spec_copy)
    message = str(caught.value)
    assert "claims.yaml" in message and "'mean-is-not-kl'" in message
    assert "follows unknown claim 'reduction-avg'" in message and "follows" in message
