"""`klconform diagnose` on each built-in implementation's bare function infers a record
whose convention equals the built-in one. Each library's test is skipped where the library
is not installed; the library environments (tox) run them."""

from pathlib import Path

import pytest

from klconform.adapters.registry import builtin_records
from klconform.authoring.diagnose import diagnose
from klconform.authoring.record_compare import convention_differences
from klconform.spec.conventions import load_record
from tests.libraries.keras_backend import import_keras

HERE = Path(__file__).resolve().parents[1] / "conventions"

# torch's own functional and klconform's numpy reference follow the canonical convention,
# which tests/conventions/torch_like.yaml states as a record (their built-ins are adapter
# classes, not records).
TORCH_CONVENTION = load_record(HERE / "torch_like.yaml",
                               injected_function="tests.conventions.functions:torch_like").data


def inferred(function_path):
    result = diagnose(function_path)
    assert result.record is not None, result.ambiguities
    return result.record.data


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


@pytest.mark.parametrize("library, function, compiles", [
    ("jax", "jax.scipy.special:rel_entr", True),
    ("optax", "optax.losses:kl_divergence", True),
    ("scipy", "scipy.special:rel_entr", False),
])
def test_a_diagnosed_record_on_jax_arrays_compiles_per_shape(library, function, compiles):
    # Without it, a run of the written record drew a new shape, so an XLA compilation, for
    # almost every example (the built-in jax record's run: 544 s against 117 s).
    pytest.importorskip(library)
    assert bool(inferred(function).get("compiles_per_shape")) is compiles


@pytest.mark.parametrize("library, function, says", [
    ("jax", "jax.scipy.special:rel_entr", True),
    ("scipy", "scipy.special:rel_entr", False),
])
def test_a_written_jax_record_tells_how_to_run_it_compiled(library, function, says):
    # Left out, a run of the record compiled every operation apart (measured 42 s against 10 s).
    from klconform.authoring.diagnose import record_text

    pytest.importorskip(library)
    result = diagnose(function)
    text = record_text(result.record)
    assert ("#   jit: true" in text) is says
    assert "\njit:" not in text   # stated by the user, never written for them


def test_diagnose_infers_torch_functional_as_the_canonical_convention():
    pytest.importorskip("torch")
    assert convention_differences(inferred("torch.nn.functional:kl_div"),
                                  TORCH_CONVENTION) == []


def test_diagnose_infers_the_numpy_reference_as_torch_convention_on_numpy_arrays():
    expected = {**TORCH_CONVENTION, "arrays": "numpy", "autograd": "none"}
    assert convention_differences(
        inferred("klconform.adapters.numpy_reference:kl_div"), expected) == []


def test_diagnose_infers_the_torch_distributions_record_logits_and_all():
    """Categorical(logits=...) takes logits (adding a constant per row changes nothing),
    for the prediction and for the log-space target alike; the renormalised probability
    target is a finding, not part of the convention."""
    pytest.importorskip("torch")
    result = diagnose("klconform.adapters.torch_distributions:categorical_kl")
    assert convention_differences(result.record,
                                  builtin_records()["torch-distributions"]) == []
    assert result.record.data["spaces"] == {"prediction": "logits", "target": "probabilities"}
    assert result.record.data["log_target"]["target"] == "logits"
    assert any("do not sum to 1" in finding for finding in result.findings)


def test_diagnose_infers_torch_kl_div_loss_class_as_the_canonical_convention():
    pytest.importorskip("torch")
    record = inferred("torch.nn:KLDivLoss")
    assert record["loss_class"] == "torch.nn:KLDivLoss" and "function" not in record
    assert convention_differences(record, TORCH_CONVENTION) == []


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_diagnose_infers_the_keras_record_and_finds_the_clip(backend):
    import_keras(backend)
    result = diagnose("keras.losses:KLDivergence")
    assert result.record is not None, result.ambiguities
    built_in = builtin_records()[f"keras-{backend}"]
    assert convention_differences(result.record, built_in) == []
    assert result.record.data["loss_class"] == built_in.loss_class
    assert result.record.data["setup"] == built_in.setup
    assert result.record.data["result_dtype"] == built_in.result_dtype == "float32"
    # The clip to [1e-7, 1] is a bug to report, never part of the convention.
    assert any("a tiny prediction" in finding for finding in result.findings)


def test_diagnose_infers_the_liger_record_on_cuda():
    """GPU only: LigerKLDIVLoss(eps, *args, **kwargs) passes its keywords on to
    nn.KLDivLoss, whose constructor signature gives the reduction and log_target."""
    pytest.importorskip("liger_kernel", reason="liger-kernel is not installed")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("liger's Triton kernel needs CUDA, absent on this machine")
    built_in = builtin_records()["liger"]
    result = diagnose(built_in.loss_class, device="cuda")
    assert result.record is not None, result.ambiguities
    assert convention_differences(result.record, built_in) == []
    assert result.record.data["loss_class"] == built_in.loss_class
    assert set(result.record.data["dtypes"]) == {"cuda"}


def test_the_comparison_sees_a_difference():
    changed = {**TORCH_CONVENTION, "arguments": ["target", "prediction"]}
    assert convention_differences(changed, TORCH_CONVENTION) == [
        "arguments: ['target', 'prediction'] != ['prediction', 'target']"]
