"""Tests of the property layer: determinism, failures that reach the report, case writing."""

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from klconform import resources
from klconform.adapters.numpy_adapter import NumpyAdapter
from klconform.authoring import case_from_example as case_writer
from klconform.authoring.lint import check_spec
from klconform.engine import properties
from klconform.harness.hypothesis_profiles import DEFAULT_EXAMPLES, configure
from klconform.spec.cases import load_cases

SUITE = str(resources.suites_dir() / "test_properties.py")

# Prints a digest of every call the default profile makes for one property, so that two
# processes (different hash seeds) can be compared.
DIGEST_SCRIPT = textwrap.dedent("""
    import hashlib
    from klconform.adapters.numpy_adapter import NumpyAdapter
    from klconform.harness.hypothesis_profiles import configure
    from klconform.engine.properties import BY_ID, run_property

    class Recording(NumpyAdapter):
        digest = hashlib.sha256()

        def compute(self, call):
            for part in (call.input.tobytes(), call.target.tobytes(), str(call.input.shape),
                         repr((call.reduction, call.log_target))):
                self.digest.update(part.encode() if isinstance(part, str) else part)
            return super().compute(call)

    configure("default")
    adapter = Recording()
    for dtype in ("float16", "float64"):
        assert run_property(BY_ID["sum-equals-none-sum"], adapter, dtype).status == "passed"
    print(adapter.digest.hexdigest())
""")

# A plain callable with the torch convention whose 'batchmean' divides by numel.
WRONG_IMPLEMENTATION = textwrap.dedent("""
    import torch

    def kl_div(input, target, reduction="mean", log_target=False):
        if reduction == "batchmean":
            return torch.nn.functional.kl_div(input, target, reduction="mean",
                                              log_target=log_target)
        return torch.nn.functional.kl_div(input, target, reduction=reduction,
                                          log_target=log_target)
""")


def test_default_profile_draws_identical_examples_in_every_process():
    digests = {subprocess.run([sys.executable, "-c", DIGEST_SCRIPT], capture_output=True,
                              text=True, check=True).stdout.strip() for _ in range(2)}
    assert len(digests) == 1


def test_unsupported_dtype_is_reported_unsupported_not_failed():
    configure("default")
    outcome = properties.run_property(properties.BY_ID["result-dtype"], NumpyAdapter(),
                                      "bfloat16")
    assert outcome.status == "unsupported"
    assert "bfloat16" in outcome.message


def test_thorough_run_without_seed_picks_one_and_a_given_seed_stays():
    from klconform.harness.session import choose_seed

    assert isinstance(choose_seed("thorough", None), int)
    assert choose_seed("thorough", 7) == 7
    assert choose_seed("default", None) is None


# Under `pytest -n` the whole module runs on one worker (conftest.KEPT_ON_ONE_WORKER): its
# module-scoped run is made once, not once per worker.
@pytest.fixture(scope="module")
def wrong_run(tmp_path_factory):
    """The property suite against a wrong 'batchmean', once: (result, report dir, env)."""
    pytest.importorskip("torch")
    work = tmp_path_factory.mktemp("wrong")
    (work / "wrongkl.py").write_text(WRONG_IMPLEMENTATION)
    env = {**_environment(), "PYTHONPATH": str(work)}
    report_dir = work / "report"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", SUITE, "-p", "no:cacheprovider", "-q",
         "--impl", "wrongkl:kl_div", "--report-dir", str(report_dir),
         "-k", "batchmean and float32"],
        capture_output=True, text=True, cwd=work, env=env)
    return result, report_dir, env


def _environment():
    import os

    return dict(os.environ)


def test_wrong_implementation_fails_with_snippet_and_report_entry(wrong_run):
    result, report_dir, _ = wrong_run
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout
    assert "klconform case property:batchmean-equals-sum-over-size0 [float32] FAILED" in output
    assert "shrunk example: Example(dtype='float32'" in output
    assert "from wrongkl import kl_div" in output
    assert "print(kl_div(input, target, reduction='batchmean'))" in output
    assert "klconform case-from-example" in output
    report = json.loads((report_dir / "report.json").read_text())
    failures = [f for f in report["failures"]
                if f["case"] == "property:batchmean-equals-sum-over-size0"]
    assert failures and failures[0]["snippet"] and failures[0]["level"] == "must"
    assert report["run"]["settings"]["max_examples"] == DEFAULT_EXAMPLES


def test_a_failure_listed_in_kl_xfails_is_xfailed_with_its_first_failing_example(wrong_run):
    from klconform.constants import SHRUNK_EXAMPLE, UNSHRUNK_EXAMPLE

    _, report_dir, env = wrong_run
    work = report_dir.parent
    (work / "known.yaml").write_text(
        "deviations:\n  - {id: reduction-batchmean, reason: divides by numel}\n")
    owned_dir = work / "owned"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", SUITE, "-p", "no:cacheprovider", "-q",
         "--impl", "wrongkl:kl_div", "--report-dir", str(owned_dir),
         "--kl-xfails", str(work / "known.yaml"),
         "-k", "batchmean-equals-sum-over-size0 and float32"],
        capture_output=True, text=True, cwd=work, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 xfailed" in result.stdout
    entries = [json.loads(line) for line in (owned_dir / "run.jsonl").read_text().splitlines()]
    [entry] = [entry for entry in entries
               if entry.get("event") == "record"]
    assert entry["status"] == "xfailed"
    assert UNSHRUNK_EXAMPLE in entry["diagnosis"] and SHRUNK_EXAMPLE not in entry["diagnosis"]


def test_failing_example_becomes_a_case_that_check_spec_accepts_and_that_fails(wrong_run,
                                                                                tmp_path):
    _, report_dir, env = wrong_run
    example_file = report_dir / "examples" / "batchmean-equals-sum-over-size0-float32.json"
    cases_dir = tmp_path / "cases"
    shutil.copytree(resources.cases_dir(), cases_dir)
    found = cases_dir / "found.yaml"
    subprocess.run([sys.executable, "-m", "klconform.cli.main", "case-from-example",
                    str(example_file), "-o", str(found)], check=True, env=env)

    loaded = [case for case in load_cases(cases_dir) if case.file == found]
    assert loaded and all(case.claims == ("reduction-batchmean",) for case in loaded)
    problems, _ = check_spec(cases_dir=cases_dir)
    assert problems == []

    rerun = subprocess.run(
        [sys.executable, "-m", "pytest", str(resources.suites_dir() / "test_cases.py"),
         "-p", "no:cacheprovider", "-q", "--impl", "wrongkl:kl_div", "--kl-only-cases",
         str(cases_dir), "--report-dir", str(tmp_path / "report"), "-k", "found-"],
        capture_output=True, text=True, cwd=tmp_path, env=env)
    assert rerun.returncode == 1 and " failed" in rerun.stdout, rerun.stdout


def test_case_writer_is_deterministic_and_rejects_other_json():
    body = {"note": "the 'sum' call", "input": [[-0.5, -1.0]], "target": [[0.6, 0.4]],
            "call": {"reduction": "sum"}, "expect": {"oracle": True}}
    example = {"klconform_example": 1, "property": "sum-equals-none-sum",
               "claims": ["reduction-sum"], "dtype": "float64", "cases": [body]}
    first = case_writer.case_file_text(example)
    assert first == case_writer.case_file_text(json.loads(json.dumps(example)))
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]
    assert f"id: found-sum-equals-none-sum-float64-{digest}" in first
    with pytest.raises(case_writer.ExampleError):
        case_writer.read_example('{"cases": []}')


def test_strategy_values_are_exact_in_the_dtype():
    from hypothesis import given, settings

    from klconform.dtypes import round_to
    from klconform.engine.drawn import Options
    from klconform.engine.strategies import examples

    @settings(max_examples=30, derandomize=True, database=None, deadline=None)
    @given(examples("bfloat16", ("sum",), (None, True), Options()))
    def exact(example):
        for values in (example.input, example.target):
            assert np.array_equal(values, round_to(values, "bfloat16"))
            assert np.all(np.isfinite(values))

    exact()


def test_a_library_that_compiles_per_shape_is_drawn_fixed_shapes_with_every_edge():
    from dataclasses import replace

    from hypothesis import given, settings

    from klconform.adapters import load_adapter
    from klconform.engine.strategies import FIXED_SHAPES, LARGE_LAST_DIM

    # Each rank keeps size 1, rows of one element and vocabulary-like rows.
    for rank, shapes in FIXED_SHAPES.items():
        if not rank:
            continue
        assert (1,) * rank in shapes
        assert any(shape[-1] >= LARGE_LAST_DIM[0] for shape in shapes)
        if rank > 1:
            assert any(shape[-1] == 1 and np.prod(shape) > 1 for shape in shapes)
    # Capabilities.fixed_shapes reaches the strategy of every kind of property.
    builtin_numpy = load_adapter("numpy")
    adapter = NumpyAdapter()
    adapter.capabilities = replace(adapter.capabilities, fixed_shapes=True)
    allowed = {shape for shapes in FIXED_SHAPES.values() for shape in shapes}
    drawn = set()
    for prop in (properties.BY_ID["sum-equals-none-sum"], properties.BY_ID["asymmetric"],
                 properties.BY_ID["one-hot-cross-entropy"]):
        @settings(max_examples=60, derandomize=True, database=None, deadline=None)
        @given(prop.strategy(adapter, "float32", "cpu"))
        def shapes_of(example):
            drawn.add(example.input.shape)

        shapes_of()
    assert drawn <= allowed, drawn - allowed
    assert len(drawn) > 4, drawn
    assert not builtin_numpy.capabilities.fixed_shapes


def test_compiles_per_shape_in_a_record_sets_fixed_shapes(tmp_path):
    from klconform.adapters import load_adapter

    record = tmp_path / "compiling.yaml"
    record.write_text("name: compiling\ndescription: numpy's own, declared as compiling\n"
                      "function: numpy:add\narrays: numpy\narguments: [prediction, target]\n"
                      "spaces: {prediction: log-probabilities, target: probabilities}\n"
                      "output: elementwise\ndtypes: {cpu: [float32, float64]}\nautograd: none\n"
                      "compiles_per_shape: true\n")
    adapter = load_adapter("numpy:add", convention=str(record))
    assert adapter.capabilities.fixed_shapes
    assert adapter.capabilities.as_dict()["fixed_shapes"] is True


def test_examples_directory_is_under_the_report_dir(wrong_run):
    _, report_dir, _ = wrong_run
    assert Path(report_dir / "examples").is_dir()


def test_a_one_hot_example_is_checked_on_its_logits_and_written_with_them_as_lists():
    """The cross-entropy check takes a property example's logits as the array they are and a
    case file's as tensor data, to the same verdict; the case written for the example holds
    them as lists."""
    from klconform.engine.expectations import check_cross_entropy, oracle_for
    from klconform.engine.outcome import CheckFailures

    prop = properties.BY_ID["one-hot-cross-entropy"]
    adapter = NumpyAdapter()
    example = next(iter(properties.replayed_examples(
        prop, prop.drawing(adapter, "float64", "cpu"), "float64", DEFAULT_EXAMPLES)))
    probe = properties.ExampleRun(adapter, example, "cpu")
    call = probe.call()
    expected = oracle_for(call)
    logits = example.extra["logits"]
    for value in (float(expected.value), float(expected.value) + 1.0):
        verdicts = []
        for given in (logits, logits.tolist()):
            failures = CheckFailures()
            check_cross_entropy({"cross_entropy": {"logits": given}}, call, value, expected,
                                failures)
            verdicts.append(list(failures.lines))
        assert verdicts[0] == verdicts[1]
    assert verdicts[0]            # the wrong value fails either way
    probe.case(call, {"cross_entropy": {"logits": logits}}, "one-hot")
    written = probe.cases[0]
    assert written["expect"]["cross_entropy"]["logits"] == logits.tolist()
    assert written["input"] == call.input.tolist()
    json.dumps(written)
