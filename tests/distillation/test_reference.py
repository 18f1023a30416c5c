"""The distillation losses against an independent float64 numpy formula, read through their
records, and every mutant against its base loss. Needs only torch, numpy and yaml, not
klconform's engine.

The formula, for P the distribution the expectation is taken under (the record's target)
and Q the other (its prediction), each softmax(x / T) of logits along the class axis:

    value = scale * sum_kept sum_c P_c (log P_c - log Q_c) / divisor,  scale = T**2 or 1

and the gradient with respect to the student's logits (positional argument 0), per row,
with w the row's weight (1 / divisor, or the upstream gradient of a per-row output, 0 for a
masked row): w * scale / T * (Q - P) when the student is Q, and
w * scale / T * P * (r - sum_c P_c r_c), r = log P - log Q, when the student is P.
d/ds of T**2 KL(softmax(t/T) || softmax(s/T)) is T * (q - p).
"""

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.distillation import losses
from tests.distillation.mutants import CORRECT, WRONG

RECORDS_DIR = Path(__file__).parent / "records"
RECORDS = {}
for _path in sorted(RECORDS_DIR.glob("*.yaml")):
    _record = yaml.safe_load(_path.read_text())
    RECORDS[_record["name"]] = _record

SHAPES = {1: (7,), 2: (4, 7), 3: (2, 3, 7), 4: (2, 5, 3, 4)}
CLAIMS = {"mask-excludes-divisor", "temperature-scaling", "mask-excludes-gradient",
          "gradient-input", "class-axis", "mask-excludes-value", "token-mean-divisor", "roles"}
TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16,
                "float32": torch.float32, "float64": torch.float64}


# The numpy oracle ---------------------------------------------------------------------------


def _log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _log_distribution(x, space, T, axis):
    if space == "logits":
        return _log_softmax(x / T, axis)
    if space == "log-probabilities":
        return x
    with np.errstate(divide="ignore"):
        return np.log(x)


def oracle(record, case):
    """(value, gradient of the student) in float64, from the formula alone."""
    axis, T, kept = case["axis"], case["T"], case["kept"]
    roles = dict(zip(record["arguments"], case["positional"], strict=True))
    log_p = _log_distribution(roles["target"], record["spaces"]["target"], T, axis)
    log_q = _log_distribution(roles["prediction"], record["spaces"]["prediction"], T, axis)
    p, q = np.exp(log_p), np.exp(log_q)
    with np.errstate(invalid="ignore"):
        r = np.where(p > 0, log_p - log_q, 0.0)
    scale = T**2 if record.get("temperature", {}).get("scaled") else 1.0
    rows = scale * (p * r).sum(axis=axis) * kept
    output = record["output"]
    total = rows.sum()
    if output == "rows":
        value, weight = rows, case["upstream"] * kept
    else:
        divisor = {"sum": 1.0,
                   "mean-rows": max(kept.sum(), 1.0),
                   "mean-batch": case["positional"][0].shape[0],
                   "mean-elements": case["positional"][0].size}[output]
        value, weight = total / divisor, kept / divisor
    w = np.expand_dims(weight, axis)
    student_role = record["arguments"][0]
    student_space = record["spaces"][student_role]
    if student_role == "prediction" and student_space == "logits":
        grad = w * scale / T * (q - p)
    elif student_role == "prediction" and student_space == "log-probabilities":
        grad = -w * scale * p
    elif student_role == "target" and student_space == "logits":
        grad = w * scale / T * p * (r - (p * r).sum(axis=axis, keepdims=True))
    else:
        raise NotImplementedError(student_role, student_space)
    return value, grad


# Cases built from a record ------------------------------------------------------------------


def allowed_ranks(record):
    ranks = record.get("ranks", {})
    return [r for r in SHAPES if ranks.get("min", 1) <= r <= ranks.get("max", 4)]


def temperatures(record):
    spec = record.get("temperature")
    if spec is None:
        return [1.0]
    if "keyword" in spec:
        return [1.0, 2.5]
    return [float(spec["value"])]


def make_case(record, rank, T, masked, seed=0, all_masked=False):
    rng = np.random.default_rng(seed)
    shape = SHAPES[rank]
    axis = record.get("axis", {}).get("value", -1) % rank
    row_shape = shape[:axis] + shape[axis + 1:]
    positional = []
    for role in record["arguments"]:
        x = rng.normal(scale=2.0, size=shape)
        space = record["spaces"][role]
        if space == "probabilities":
            x = np.exp(_log_softmax(x, axis))
            x[(slice(None),) * axis + (0,)] = 0.0           # a zero teacher probability
            x = x / x.sum(axis=axis, keepdims=True)
        elif space == "log-probabilities":
            x = _log_softmax(x, axis)
        positional.append(x)
    kept = np.ones(row_shape)
    if masked and kept.size > 1:
        kept = (rng.random(row_shape) > 0.4).astype(float)
        kept.flat[0], kept.flat[-1] = 1.0, 0.0
    if all_masked:
        kept = np.zeros(row_shape)
    return {"axis": axis, "T": T, "kept": kept, "positional": positional,
            "upstream": rng.normal(size=row_shape), "rng": rng, "shape": shape}


def keywords(record, case, dtype):
    kwargs = dict(record.get("call", {}))
    temperature = record.get("temperature")
    if temperature and "keyword" in temperature:
        kwargs[temperature["keyword"]] = case["T"]
    if "keyword" in record.get("axis", {}):
        kwargs[record["axis"]["keyword"]] = record["axis"]["value"]
    mask = record.get("mask")
    if mask:
        kept = case["kept"].astype(bool)
        if mask["style"] == "labels":
            classes = case["shape"][case["axis"]]
            labels = case["rng"].integers(0, classes, size=kept.shape)
            value = torch.from_numpy(np.where(kept, labels, mask["ignore_index"]))
        else:
            flags = kept if mask["style"] == "keep" else ~kept
            value = torch.from_numpy(np.asarray(flags))
            if mask.get("dtype") == "float":
                value = value.to(dtype)
        kwargs[mask["keyword"]] = value
    return kwargs


def call(function, record, case, dtype=torch.float64):
    """Runs `function` as the record says; returns (value, student gradient) in float64."""
    tensors = [torch.tensor(x, dtype=dtype, requires_grad=True) for x in case["positional"]]
    out = function(*tensors, **keywords(record, case, dtype))
    if record["output"] == "rows":
        out.backward(torch.from_numpy(case["upstream"]).to(out.dtype))
    else:
        out.backward()
    return out, tensors[0].grad


def function_of(record):
    module, name = record["function"].split(":")
    return getattr(importlib.import_module(module), name)


def tolerance(record):
    # upcast_kd_sum declares no float64: it computes in float32 whatever it is given.
    return 1e-5 if "float64" not in record["dtypes"]["cpu"] else 1e-10


# Correct losses -------------------------------------------------------------------------------


def test_every_record_names_its_registered_function():
    assert set(RECORDS) == set(CORRECT)
    assert len(set(map(id, CORRECT.values()))) >= 10
    for name, record in RECORDS.items():
        assert function_of(record) is CORRECT[name], name


VALUE_CASES = [(name, rank, T, masked)
               for name, record in RECORDS.items()
               for rank in allowed_ranks(record)
               for T in temperatures(record)
               for masked in ((False, True) if "mask" in record else (False,))]


@pytest.mark.parametrize("name,rank,T,masked", VALUE_CASES)
def test_value_and_gradient_match_the_formula(name, rank, T, masked):
    record = RECORDS[name]
    case = make_case(record, rank, T, masked, seed=rank * 10 + masked)
    value, grad = call(function_of(record), record, case)
    expected_value, expected_grad = oracle(record, case)
    tol = tolerance(record)
    assert value.dtype == torch.float64
    assert value.shape == np.shape(expected_value)
    np.testing.assert_allclose(value.detach().numpy(), expected_value, rtol=tol, atol=tol)
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=tol, atol=tol)
    if masked and case["kept"].size > 1:
        dropped = np.expand_dims(case["kept"] == 0, case["axis"])
        assert np.all(np.where(dropped, grad.numpy(), 0.0) == 0.0)


DTYPE_CASES = [(name, dtype) for name, record in RECORDS.items()
               for dtype in record["dtypes"]["cpu"]]


@pytest.mark.parametrize("name,dtype", DTYPE_CASES)
def test_every_declared_dtype_runs_and_keeps_its_dtype(name, dtype):
    record = RECORDS[name]
    rank = max(allowed_ranks(record))
    T = temperatures(record)[-1]
    case = make_case(record, rank, T, masked="mask" in record, seed=3)
    torch_dtype = TORCH_DTYPES[dtype]
    value, grad = call(function_of(record), record, case, torch_dtype)
    assert value.dtype == torch_dtype and grad.dtype == torch_dtype
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    expected, _ = oracle(record, case)
    tol = {"float16": 2e-2, "bfloat16": 8e-2, "float32": 1e-5, "float64": 1e-10}[dtype]
    np.testing.assert_allclose(value.detach().double().numpy(), expected,
                               rtol=tol, atol=tol * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize("name", [n for n, r in RECORDS.items() if "mask" in r])
def test_fully_masked_input_gives_zero_and_no_gradient(name):
    record = RECORDS[name]
    case = make_case(record, max(allowed_ranks(record)), 1.0, masked=False, all_masked=True)
    value, grad = call(function_of(record), record, case)
    assert torch.all(value == 0) and torch.all(grad == 0)


@pytest.mark.parametrize("rank", [1, 2, 4])
def test_seq_kd_3d_refuses_other_ranks(rank):
    x = torch.randn(SHAPES[rank])
    with pytest.raises(ValueError):
        losses.seq_kd_3d(x, x)


def test_kd_rows_follows_its_dim_keyword():
    record = dict(RECORDS["kd-rows"], axis={"keyword": "dim", "value": 2})
    case = make_case(record, 3, 2.5, masked=False)
    value, grad = call(losses.kd_rows, record, case)
    expected_value, expected_grad = oracle(record, case)
    np.testing.assert_allclose(value.detach().numpy(), expected_value, rtol=1e-10)
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-10, atol=1e-12)


def _generalized_jsd(log_p, log_q, beta, axis=-1):
    p, q = np.exp(log_p), np.exp(log_q)
    log_m = np.log(beta * p + (1 - beta) * q)
    return (beta * p * (log_p - log_m) + (1 - beta) * q * (log_q - log_m)).sum(axis=axis)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_jsd_losses_between_the_extremes(beta):
    rng = np.random.default_rng(5)
    s, t = rng.normal(scale=2.0, size=(2, 3, 7)), rng.normal(scale=2.0, size=(2, 3, 7))
    labels = np.array([[1, -100, 2], [-100, 0, 4]])
    kept = labels != -100
    T = 2.0
    jsd = _generalized_jsd(_log_softmax(t / T, -1), _log_softmax(s / T, -1), beta)
    got = losses.gkd_jsd(torch.tensor(s), torch.tensor(t), labels=torch.tensor(labels),
                         beta=beta, temperature=T)
    np.testing.assert_allclose(got.item(), jsd[kept].sum() / kept.sum(), rtol=1e-10)
    log_q, log_p = _log_softmax(s[0], -1), _log_softmax(t[0], -1)
    got = losses.liger_jsd(torch.tensor(log_q), torch.tensor(log_p),
                           shift_labels=torch.tensor(labels[0]), beta=beta)
    expected = _generalized_jsd(log_p, log_q, beta)[kept[0]].sum() / kept[0].sum()
    np.testing.assert_allclose(got.item(), expected, rtol=1e-10)


# Mutants ----------------------------------------------------------------------------------------

VALUE_PRESERVING = {"mask-excludes-gradient", "gradient-input"}


def test_mutants_cover_every_claim_and_name_existing_records():
    assert len(WRONG) >= 8
    assert set().union(*(m.breaks for m in WRONG.values())) >= CLAIMS
    for mutant in WRONG.values():
        assert mutant.record in RECORDS, mutant.name
        assert set(mutant.breaks) <= CLAIMS, mutant.name
        assert mutant.record_path.exists()


@pytest.mark.parametrize("name", sorted(WRONG))
def test_mutant_differs_from_its_base_loss(name):
    mutant = WRONG[name]
    record = RECORDS[mutant.record]
    case = make_case(record, max(allowed_ranks(record)), temperatures(record)[-1],
                     masked="mask" in record, seed=11)
    base_value, base_grad = call(function_of(record), record, case)
    value, grad = call(mutant.function, record, case)
    value_differs = not torch.allclose(value, base_value, rtol=1e-6, atol=1e-9)
    grad_differs = not torch.allclose(grad, base_grad, rtol=1e-6, atol=1e-9)
    if set(mutant.breaks) <= VALUE_PRESERVING:
        # the bug hides in the backward pass: the value is right, the gradient is not
        assert not value_differs and grad_differs
    else:
        assert value_differs


@pytest.mark.parametrize("name", sorted(WRONG))
def test_mutant_fails_the_formula_under_its_base_record(name):
    mutant = WRONG[name]
    record = RECORDS[mutant.record]
    failures = 0
    for rank in allowed_ranks(record):
        for T in temperatures(record):
            case = make_case(record, rank, T, masked="mask" in record, seed=rank)
            value, grad = call(mutant.function, record, case)
            expected_value, expected_grad = oracle(record, case)
            failures += not (np.allclose(value.detach().numpy(), expected_value, rtol=1e-8)
                             and np.allclose(grad.numpy(), expected_grad, rtol=1e-8,
                                             atol=1e-10))
    assert failures


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_the_teacher_gets_a_gradient_unless_the_record_says_not(name):
    record = RECORDS[name]
    case = make_case(record, max(allowed_ranks(record)), temperatures(record)[-1],
                     masked="mask" in record)
    tensors = [torch.tensor(x, requires_grad=True) for x in case["positional"]]
    out = function_of(record)(*tensors, **keywords(record, case, torch.float64))
    out.sum().backward()
    teacher_role = record["arguments"][1]
    if teacher_role in record.get("no_gradient", ()):
        assert tensors[1].grad is None
    else:
        grad = tensors[1].grad
        assert grad is not None
        # d/dp of p log p is log p + 1: not finite at the zero probability make_case puts in
        positive = torch.ones_like(grad, dtype=torch.bool)
        if record["spaces"][teacher_role] == "probabilities":
            positive = torch.from_numpy(case["positional"][1]) > 0
        assert torch.isfinite(grad[positive]).all() and grad[positive].abs().sum() > 0
