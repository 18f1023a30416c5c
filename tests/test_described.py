"""The user's own code is imported by the call worker only: the run's process describes it from
what the worker said (klconform.adapters.described), and says of it exactly what it said when
it imported the code itself."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from klconform.adapters import load_adapter
from klconform.adapters.base import Call
from klconform.adapters.described import adapter_from_description, description_of
from klconform.engine import wire

CONVENTIONS = Path(__file__).parent / "conventions"
DISTILLATION = Path(__file__).parent / "distillation" / "records"

CALLS = [
    Call(np.log(np.full((2, 3), 1 / 3)), np.full((2, 3), 1 / 3), dtype=dtype,
         reduction=reduction, log_target=log_target)
    for dtype in ("float32", "bfloat16") for reduction in (None, "sum", "batchmean", "none")
    for log_target in (None, True)
] + [Call(np.zeros((2, 3, 4)), np.full((2, 3, 4), 0.25), dtype="float64", reduction="mean",
          temperature=2.0),
     Call(np.zeros(3), np.full(3, 1 / 3), dtype="float16", reduction="sum", layout="transposed")]


def said_by(adapter):
    """What the run asks of an adapter it does not call."""
    answers = {"name": adapter.name, "capabilities": adapter.capabilities.as_dict(),
               "version": adapter.version(), "description": adapter.describe(),
               "record": getattr(adapter, "record", None)}
    for index, call in enumerate(CALLS):
        plan = adapter.plan(call)
        answers[f"plan {index}"] = plan
        if plan.unsupported is None:
            answers[f"snippet {index}"] = adapter.snippet(call)
    return answers


@pytest.mark.parametrize(("impl", "convention"), [
    ("tests.mutants:terms_clamped", None),
    ("tests.conventions.functions:torch_like", None),
    # No reduction and no log_target in its signature: capabilities read off it.
    ("tests.conventions.functions:probability_rows", None),
    ("tests.conventions.functions:TorchLikeLoss", None),
    ("tests.conventions.functions:torch_like", CONVENTIONS / "torch_like.yaml"),
    ("tests.conventions.functions:TorchLikeLoss", CONVENTIONS / "torch_like.yaml"),
    ("tests.conventions.functions:distillation", CONVENTIONS / "distillation.yaml"),
    ("hinton-kd", DISTILLATION / "hinton_kd.yaml"),
    ("token-kd-labels", DISTILLATION / "token_kd_labels.yaml"),
])
def test_the_rebuilt_adapter_says_what_the_loaded_one_says(impl, convention):
    loaded = load_adapter(impl, convention=convention and str(convention))
    description = description_of(loaded)
    assert description is not None
    # As it travels from the worker.
    rebuilt = adapter_from_description(wire.decode(wire.encode(description, os.getpid())))
    assert said_by(rebuilt) == said_by(loaded)
    supported = next(call for call in CALLS if loaded.plan(call).unsupported is None)
    with pytest.raises(RuntimeError, match="only to describe"):
        rebuilt.run(supported)


def test_a_description_is_of_its_own_function():
    # The comparison above can fail: two functions' descriptions differ where they do.
    torch_like = load_adapter("tests.conventions.functions:torch_like")
    rows = load_adapter("tests.conventions.functions:probability_rows")
    assert said_by(adapter_from_description(description_of(rows))) != said_by(torch_like)


def test_the_version_of_an_editable_install_is_found_by_the_described_modules_file(
        monkeypatch):
    # tests.mutants belongs to klconform's own editable install, which maps no top-level
    # name to it: only the module's file says whose it is, and the run has not imported it.
    from klconform.adapters.base import distribution_version

    loaded = load_adapter("tests.mutants:terms_clamped")
    description, version = description_of(loaded), loaded.version()
    assert version != "unknown"
    monkeypatch.delitem(sys.modules, "tests.mutants")
    assert distribution_version("tests.mutants") is None
    assert adapter_from_description(description).version() == version


def test_an_adapter_of_the_users_own_class_is_not_described():
    # Its plans and snippets are its own code: the run loads it as well.
    assert description_of(load_adapter("tests.test_stored_examples:_WrongOnSomeSums")) is None
    # A record probing a GPU stack to plan, likewise.
    assert load_adapter("liger").record.requires_gpu
    assert description_of(load_adapter("liger")) is None


LOSSES = """
    import os
    import sys

    import torch.nn.functional as F

    with open(os.environ["IMPORTED_BY"], "a") as imported_by:
        imported_by.write(" ".join(sys.argv[:1]) + "\\n")


    def kl_div(input, target, reduction="mean"):
        return F.kl_div(input, target, reduction=reduction)


    def kd_loss(student_logits, teacher_logits):
        return F.kl_div(F.log_softmax(student_logits, -1), F.softmax(teacher_logits, -1),
                        reduction="batchmean")
"""

RECORD = """
    name: kd
    description: distillation loss from logits
    function: userlosses:kd_loss
    arrays: torch
    arguments: [prediction, target]
    spaces: {prediction: logits, target: logits}
    output: mean-batch
    ranks: {min: 1}
    dtypes: {cpu: [float32, float64]}
    autograd: torch
"""


@pytest.mark.parametrize("convention", [False, True], ids=["function", "record"])
def test_a_run_imports_the_users_module_in_the_call_worker_only(tmp_path, convention):
    (tmp_path / "userlosses.py").write_text(textwrap.dedent(LOSSES))
    (tmp_path / "kd.yaml").write_text(textwrap.dedent(RECORD))
    imported_by = tmp_path / "imported-by.txt"
    impl = ["--impl=kd", "--kl-convention=kd.yaml"] if convention else \
        ["--impl=userlosses:kl_div"]
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *impl, "-k",
         "worked-uniform or default-reduction", "--report-dir=out"], cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "IMPORTED_BY": str(imported_by), "PYTHONPATH": str(tmp_path)})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    importers = imported_by.read_text().splitlines()
    assert len(importers) == 1 and importers[0].endswith("call_worker.py"), importers
    implementation = json.loads((tmp_path / "out" / "report.json").read_text())["implementation"]
    if convention:
        assert implementation["description"].startswith("distillation loss from logits [")
        assert implementation["capabilities"]["distillation"] == ["logits"]
    else:
        assert implementation["description"] == "userlosses.kl_div"
        # Read off the signature, which has no log_target.
        assert implementation["capabilities"]["log_target"] is False
    assert implementation["version"].startswith("unknown")


def test_a_misspelt_function_is_named_when_nothing_is_selected_either(tmp_path):
    # Only the call worker imports the module, and the run waits for it to say why not.
    (tmp_path / "userlosses.py").write_text("def kl_div(input, target):\n    pass\n")
    (tmp_path / "test_own.py").write_text("def test_own():\n    pass\n")
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--impl=userlosses:kl_dv",
         "-k", "test_own", "test_own.py"], cwd=tmp_path, capture_output=True, text=True,
        timeout=300, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert completed.returncode == 4, completed.stdout[-3000:] + completed.stderr[-2000:]
    assert completed.stderr.strip().splitlines()[-1] == (
        "ERROR: --impl userlosses:kl_dv: module 'userlosses' has no attribute 'kl_dv'; "
        "did you mean 'userlosses:kl_div'?")
    assert "Traceback" not in completed.stdout + completed.stderr


def test_the_worker_describes_only_the_users_code_and_only_what_travels(monkeypatch):
    from klconform.adapters import described
    from klconform.engine import call_worker

    def told(key):
        adapter = load_adapter(*key)
        return wire.decode(call_worker._load_reply(key, adapter, os.getpid()))["value"]

    # A built-in is described by the run itself, from its record.
    assert told(("torch", None)) is None
    assert told(("tests.mutants:terms_clamped", None))["form"] == described.CALLABLE
    # A description that cannot be pickled: the run is told nothing, and loads it itself.
    monkeypatch.setattr(described, "description_of", lambda adapter: {"form": lambda: None})
    assert told(("tests.mutants:terms_clamped", None)) is None
