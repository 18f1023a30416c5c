"""The liger record: GPU-only, so on a machine without CUDA or without liger-kernel every
call must come out unsupported with its reason (never passed, never failed); where both are
present, the record is checked against the kernel itself."""

import numpy as np
import pytest

from klconform.adapters import load_adapter
from klconform.adapters.base import Call
from klconform.adapters.convention import ConventionAdapter
from klconform.adapters.registry import builtin_records
from klconform.spec.conventions import load_record

INPUT = np.log(np.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]]))
TARGET = np.array([[0.1, 0.6, 0.3], [0.25, 0.25, 0.5]])
TERMS = TARGET * (np.log(TARGET) - INPUT)
EXPECTED = {"none": TERMS, "sum": TERMS.sum(), "mean": TERMS.sum() / TERMS.size,
            "batchmean": TERMS.sum() / TERMS.shape[0]}


def liger_usable():
    try:
        import liger_kernel.transformers.kl_div  # noqa: F401
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(liger_usable(), reason="liger-kernel and CUDA are both present")
@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("reduction", [None, "none", "sum", "mean", "batchmean"])
def test_every_call_is_unsupported_without_the_gpu_stack(device, reduction):
    adapter = load_adapter("liger")
    reason = adapter.plan(Call(INPUT, TARGET, dtype="float32", reduction=reduction,
                               device=device)).unsupported
    assert reason
    assert "liger" in reason or "device" in reason


def test_a_missing_gpu_device_is_a_reason_not_a_crash(tmp_path):
    """A requires_gpu record whose library imports, on a machine without its device."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path = tmp_path / "gpu-only.yaml"
    path.write_text(
        "name: gpu-only\ndescription: torch's KLDivLoss declared CUDA-only\n"
        "loss_class: torch.nn:KLDivLoss\narrays: torch\narguments: [prediction, target]\n"
        "spaces: {prediction: log-probabilities, target: probabilities}\n"
        "reduction: {keyword: reduction, names: {sum: sum}}\n"
        "dtypes: {cuda: [float32]}\nautograd: torch\nrequires_gpu: true\n")
    adapter = ConventionAdapter(load_record(path))
    reason = adapter.plan(Call(INPUT, TARGET, dtype="float32", reduction="sum",
                               device="cuda")).unsupported
    assert reason and "absent on this machine" in reason


def test_an_uninstalled_cpu_library_still_fails_loudly(tmp_path):
    """Only GPU-only records turn a failed import into 'unsupported'."""
    from klconform.errors import ImplementationLoadError

    path = tmp_path / "missing.yaml"
    path.write_text(
        "name: missing\ndescription: a library that is not installed\n"
        "function: klconform_no_such_module:kl\narrays: numpy\narguments: [prediction, target]\n"
        "spaces: {prediction: log-probabilities, target: probabilities}\noutput: sum\n"
        "dtypes: {cpu: [float32]}\nautograd: none\n")
    with pytest.raises(ImplementationLoadError, match="klconform_no_such_module"):
        ConventionAdapter(load_record(path))


def test_record_declares_gpu_only_and_its_source_facts():
    record = builtin_records()["liger"]
    assert record.requires_gpu and set(record.dtypes_by_device) == {"cuda"}
    assert record.ranks == {"min": 2, "max": 2}
    assert {entry["id"] for entry in record.deviations} >= {"gradient-target"}


requires_liger = pytest.mark.skipif(not liger_usable(), reason="needs liger-kernel and CUDA")


@requires_liger
@pytest.mark.parametrize("reduction", sorted(EXPECTED))
@pytest.mark.parametrize("log_target", [False, True])
def test_canonical_values_on_cuda(reduction, log_target):
    target = np.log(TARGET) if log_target else TARGET
    observed = load_adapter("liger").run(Call(INPUT, target, dtype="float32", reduction=reduction,
                                              log_target=log_target, device="cuda"))
    np.testing.assert_allclose(observed.value, EXPECTED[reduction], rtol=1e-6)
    assert observed.dtype == "float32"


@requires_liger
def test_gradients_on_cuda_and_no_target_gradient():
    grad_input, grad_target = load_adapter("liger").run_gradients(
        Call(INPUT, TARGET, dtype="float32", reduction="batchmean", device="cuda"))
    np.testing.assert_allclose(grad_input, -TARGET / TARGET.shape[0], rtol=1e-6)
    assert grad_target is None  # the declared gradient-target deviation


@requires_liger
def test_result_dtype_deviation_still_observed():
    observed = load_adapter("liger").run(Call(INPUT, TARGET, dtype="bfloat16", reduction="sum",
                                              device="cuda"))
    assert observed.dtype == "float32"
