"""KL functions in four common conventions, and wrong ones that only a convention-mapped
run can catch. Each has a record beside it (tests/conventions/*.yaml)."""

import numpy as np


def torch_like(input, target, reduction="mean", log_target=False):
    import torch.nn.functional as F

    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


class TorchLikeLoss:
    """torch_like as a loss class: the reduction and log_target at construction, the
    arrays at the call (nn.KLDivLoss's constructor signature)."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False):
        self.reduction, self.log_target = reduction, log_target

    def __call__(self, input, target):
        return torch_like(input, target, self.reduction, self.log_target)


class KeywordsPassedOnLoss(TorchLikeLoss):
    """Liger's LigerKLDIVLoss shape: a keyword of its own, the rest passed on to the base's
    constructor through **kwargs (its own signature names no reduction)."""

    def __init__(self, eps=1e-10, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = eps


def probability_rows(p, q):
    """KL(P||Q) per row of probabilities, truth first (scipy / torchmetrics style)."""
    p, q = np.asarray(p), np.asarray(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = p * (np.log(p) - np.log(q))
    terms = np.where(p == 0, np.zeros_like(terms), terms)
    # 0 * log 0 is 0, but a NaN anywhere must stay NaN.
    terms = np.where(np.isnan(p) | np.isnan(q), np.nan, terms)
    return terms.sum(axis=-1)


def distillation(student_logits, teacher_logits):
    """The usual distillation loss: KL(softmax(teacher) || softmax(student)), 'batchmean'."""
    import torch.nn.functional as F

    student = F.log_softmax(student_logits, dim=-1)
    teacher = F.log_softmax(teacher_logits, dim=-1)
    batch = student_logits.shape[0] if student_logits.dim() else 1
    return F.kl_div(student, teacher, reduction="sum", log_target=True) / batch


def log_space(log_q, log_p):
    """Both arguments in log space, elementwise terms exp(log p) (log p - log q)."""
    log_q, log_p = np.asarray(log_q), np.asarray(log_p)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.exp(log_p) * (log_p - log_q)


# --- wrong, in ways only a run that knows the convention can see --------------------------

def rows_clipped(p, q):
    """probability_rows with both arguments clipped to [1e-7, 1] (keras-style)."""
    return probability_rows(np.clip(np.asarray(p), 1e-7, 1.0), np.clip(np.asarray(q), 1e-7, 1.0))


def rows_renormalised(p, q):
    """probability_rows after dividing each row by its sum."""
    p, q = np.asarray(p), np.asarray(q)
    return probability_rows(p / p.sum(axis=-1, keepdims=True), q / q.sum(axis=-1, keepdims=True))


def mean_over_rows_called_elements(input, target, reduction="mean", log_target=False):
    """torch_like, except that 'mean' averages the per-row sums (its record says elements)."""
    import torch.nn.functional as F

    if reduction == "mean":
        rows = F.kl_div(input, target, reduction="none", log_target=log_target).sum(dim=-1)
        return rows.mean()
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


def model_first(q, p):
    """The model's probabilities first, then the truth's: KL(P||Q) per row, in torch."""
    import torch

    return torch.sum(torch.special.xlogy(p, p) - p * torch.log(q), dim=-1)


# --- wrong in ways `klconform diagnose` must report as findings, not record as conventions -----

def batchmean_computed_as_mean(input, target, reduction="mean", log_target=False):
    """torch_like, except that 'batchmean' divides by the number of elements."""
    import torch.nn.functional as F

    return F.kl_div(input, target, reduction="mean" if reduction == "batchmean" else reduction,
                    log_target=log_target)


def rows_with_epsilon(p, q):
    """probability_rows with 1e-6 added inside both logarithms."""
    p, q = np.asarray(p), np.asarray(q)
    return np.sum(p * (np.log(p + 1e-6) - np.log(q + 1e-6)), axis=-1)


def nan_swallowed(input, target, reduction="mean", log_target=False):
    """torch_like with NaN terms replaced by 0."""
    import torch
    import torch.nn.functional as F

    terms = torch.nan_to_num(F.kl_div(input, target, reduction="none", log_target=log_target),
                             nan=0.0)
    if reduction == "none":
        return terms
    total = terms.sum()
    return {"sum": total, "mean": total / max(terms.numel(), 1),
            "batchmean": total / (terms.shape[0] if terms.dim() else 1)}[reduction]


# --- what the probes cannot decide: `diagnose` must say so and ask for --assume --------------

def normalised_log_prediction_only(log_q, p):
    """Rejects a prediction whose rows are not normalised log-probabilities: on normalised
    rows, log-probabilities and logits give the same value, so nothing tells them apart."""
    log_q, p = np.asarray(log_q), np.asarray(p)
    if not np.allclose(np.exp(log_q).sum(axis=-1), 1.0) or not np.allclose(p.sum(axis=-1), 1.0):
        raise ValueError("rows must be normalised")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p == 0, 0.0, p * (np.log(p) - log_q))
    return terms.sum(axis=-1)
