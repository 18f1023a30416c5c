"""`klconform diagnose` on each built-in implementation's bare function infers a record
whose convention equals the built-in one. Each library's test is skipped where the library
is not installed; the library environments (tox) run them."""

from pathlib import Path

import pytest

from klconform.adapters.registry import builtin_records
from klconform.authoring.diagnose import diagnose
from klconform.authoring.record_compare import convention_differences
from klconform.spec.conventions import load_record

HERE = Path(__file__).resolve().parents[1] / "conventions"

# torch's own functional and klconform's numpy reference follow the canonical convention,
# which tests/conventions/torch_like.yaml states as a record (their built-ins are adapter
# classes, not records).
TORCH_CONVENTION = load_record(HERE / "torch_like.yaml",
                               injected_function="tests.conventions.functions:torch_like").data


def inferred(function_path):
    result = diagnose(function_path)
    assert result.record is not None, result.ambiguities
    return result.record


@pytest.mark.parametrize("library, name, function", [
    ("scipy", "scipy", "scipy.special:rel_entr"),
    ("torchmetrics", "torchmetrics", "torchmetrics.functional:kl_divergence"),
    ("jax", "jax", "jax.scipy.special:rel_entr"),
    ("optax", "optax", "optax.losses:kl_divergence"),
    ("paddle", "paddle", "paddle.nn.functional:kl_div"),
    ("mindspore", "mindspore", "mindspore.ops:kl_div"),
    ("mlx", "mlx", "mlx.nn.losses:kl_div_loss"),
])
def test_diagnose_infers_the_built_in_record(library, name, function):
    pytest.importorskip(library)
    assert convention_differences(inferred(function), builtin_records()[name]) == []


def test_diagnose_infers_torch_functional_as_the_canonical_convention():
    pytest.importorskip("torch")
    assert convention_differences(inferred("torch.nn.functional:kl_div"),
                                  TORCH_CONVENTION) == []


def test_diagnose_infers_the_numpy_reference_as_torch_convention_on_numpy_arrays():
    expected = {**TORCH_CONVENTION, "arrays": "numpy", "autograd": "none"}
    assert convention_differences(
        inferred("klconform.adapters.numpy_reference:kl_div"), expected) == []


def test_torch_distributions_prediction_is_inferred_as_logits_which_it_is():
    """The built-in record calls the prediction log-probabilities and declares the
    renormalisation a deviation; Categorical(logits=...) does take logits (adding a
    constant per row changes nothing), so diagnose says logits, and the renormalised
    probability target is a finding."""
    pytest.importorskip("torch")
    result = diagnose("klconform.adapters.torch_distributions:categorical_kl")
    differences = convention_differences(result.record, builtin_records()["torch-distributions"])
    assert [d.split(":")[0] for d in differences] == ["spaces", "log_target"]
    assert result.record["spaces"] == {"prediction": "logits", "target": "probabilities"}
    assert any("do not sum to 1" in finding for finding in result.findings)


def test_the_comparison_sees_a_difference():
    changed = {**TORCH_CONVENTION, "arguments": ["target", "prediction"]}
    assert convention_differences(changed, TORCH_CONVENTION) == [
        "arguments: ['target', 'prediction'] != ['prediction', 'target']"]
