"""A user's own cases beside the bundled ones, the option table, TorchCallable."""

import json

import pytest

import klconform
from klconform.adapters import as_adapter
from klconform.cli.main import main
from klconform.harness.options import OPTIONS, pytest_arguments
from tests.suite_runner import run_suite

OWN_CASE = """
cases:
  - id: mylib-batchmean-single-row
    claims: [reduction-batchmean]
    description: "A single row: 'batchmean' equals 'sum'."
    provenance:
      - {source: seed-003, part: "batchmean"}
    inputs:
      input: {log_softmax_of: [[0.5, -1.0, 0.2]]}
      target: {softmax_of: [[0.0, 0.7, -0.4]]}
    call: {reduction: batchmean}
    dtypes: [float64]
    expect: {oracle: true}
"""


@pytest.fixture
def own_cases(tmp_path):
    directory = tmp_path / "my-cases"
    directory.mkdir()
    (directory / "mine.yaml").write_text(OWN_CASE)
    return directory


def test_cases_option_adds_to_the_bundled_cases(pytester, own_cases):
    run = run_suite(pytester, "numpy", f"--kl-cases={own_cases}", "-k",
                    "mylib-batchmean-single-row or worked-uniform")
    cases = {c["case"] for claim in run.report["claims"] for c in claim["cases"]}
    assert "mylib-batchmean-single-row" in cases and "worked-uniform-vs-9-12-4" in cases
    only = run_suite(pytester, "numpy", f"--kl-only-cases={own_cases}")
    cases = {c["case"] for claim in only.report["claims"] for c in claim["cases"]}
    assert cases == {"mylib-batchmean-single-row"}


def test_an_own_case_cannot_reuse_a_bundled_id(pytester, own_cases):
    (own_cases / "mine.yaml").write_text(OWN_CASE.replace("mylib-batchmean-single-row",
                                                          "batchmean-2d"))
    run = run_suite(pytester, "numpy", f"--kl-cases={own_cases}")
    assert run.result.ret != 0
    assert "duplicate case id" in run.output


def test_check_spec_checks_own_cases_without_demanding_coverage(own_cases, capsys):
    assert main(["check-spec", "--cases", str(own_cases)]) == 0
    assert "check-spec: ok: 1 of your cases in 1 files" in capsys.readouterr().out
    (own_cases / "mine.yaml").write_text(OWN_CASE.replace("[reduction-batchmean]", "[rolez]"))
    assert main(["check-spec", "--cases", str(own_cases)]) == 1
    assert "unknown claim 'rolez'" in capsys.readouterr().err
    assert main(["check-spec", "--only-cases", str(own_cases.parent / "missing")]) == 1


def test_case_from_example_creates_the_folder(tmp_path, capsys):
    example = {"klconform_example": 1, "property": "sum-equals-none-sum",
               "claims": ["reduction-sum"], "dtype": "float64",
               "cases": [{"note": "the 'sum' call", "input": [[-0.5, -1.0]],
                          "target": [[0.6, 0.4]], "call": {"reduction": "sum"},
                          "expect": {"oracle": True}}]}
    source = tmp_path / "example.json"
    source.write_text(json.dumps(example))
    output = tmp_path / "new" / "dir" / "found.yaml"
    assert main(["case-from-example", str(source), "-o", str(output)]) == 0
    assert main(["check-spec", "--cases", str(output.parent)]) == 0


def test_every_cli_option_reaches_pytest_in_its_pytest_spelling(pytester, tmp_path):
    cli = []
    for option in OPTIONS:
        if option.cli is None:
            continue
        if option.flag:
            cli.append(option.cli)
        elif option.choices:
            cli += [option.cli, option.choices[-1]]
        elif option.type is not str:   # int, float, --min-coverage's count
            cli += [option.cli, "7"]
        else:
            cli += [option.cli, "somewhere"]
    import argparse

    from klconform.harness.options import add_cli_options

    parser = argparse.ArgumentParser()
    add_cli_options(parser)
    arguments = pytest_arguments(parser.parse_args(cli), cwd=str(tmp_path))
    config = pytester.parseconfig(*arguments)
    for option in OPTIONS:
        if option.cli:
            assert getattr(config.option, option.name) not in (None, option.default), option
    assert f"--kl-cases={tmp_path / 'somewhere'}" in arguments  # paths made absolute


def test_torch_callable_is_exported_for_entry_points():
    import torch.nn.functional as F

    adapter = as_adapter(klconform.TorchCallable(F.kl_div, "mylib"), "mylib")
    assert adapter.name == "mylib" and adapter.capabilities.autograd
    assert adapter.version() == __import__("torch").__version__
