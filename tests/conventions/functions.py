"""KL functions in four common conventions, and wrong ones that only a convention-mapped
run can catch. Each has a record beside it (tests/conventions/*.yaml)."""

import numpy as np


def torch_like(input, target, reduction="mean", log_target=False):
    import torch.nn.functional as F

    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


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
