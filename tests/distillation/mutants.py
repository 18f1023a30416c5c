"""Distillation losses with exactly one realistic bug each, and the correct ones they came from.

A mutant is judged with the record of the correct loss it was derived from (`record`, a
record name from records/), so klconform holds it to that loss's convention; it must fail a
must-level case on every claim in `breaks`. Each mutant copies its base loss from
losses.py and changes one thing, so the failure can only come from that one thing.

CORRECT maps every record name in records/ to the correct function it describes.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tests.distillation import losses

RECORDS = Path(__file__).parent / "records"


@dataclass(frozen=True)
class Mutant:
    name: str
    function: Callable
    record: str            # the name of the base loss's record in records/
    breaks: tuple          # claim ids the suite must report failing
    note: str

    @property
    def impl(self):
        return f"{__name__}:{self.name}"

    @property
    def record_path(self):
        return record_path(self.record)


def record_path(name):
    """The records/ file whose `name:` is `name`."""
    import yaml

    for path in sorted(RECORDS.glob("*.yaml")):
        if yaml.safe_load(path.read_text())["name"] == name:
            return path
    raise KeyError(name)


CORRECT: dict[str, Callable] = {
    "token-kd-labels": losses.token_kd_labels,
    "token-kd-temperature": losses.token_kd_temperature,
    "pixel-kd-nchw": losses.pixel_kd_nchw,
    "hinton-kd": losses.hinton_kd,
    "soft-target-kl": losses.soft_target_kl,
    "reverse-kl-logits": losses.reverse_kl_logits,
    "upcast-kd-sum": losses.upcast_kd_sum,
    "seq-kd-3d": losses.seq_kd_3d,
    "attention-mask-kd": losses.attention_mask_kd,
    "gkd-jsd-forward": losses.gkd_jsd,
    "gkd-jsd-reverse": losses.gkd_jsd,
    "kd-rows": losses.kd_rows,
    "per-token-kl": losses.per_token_kl,
    "kd-teacher-probs": losses.kd_teacher_probs,
    "liger-jsd-forward": losses.liger_jsd,
}

WRONG: dict[str, Mutant] = {}


def wrong(record, *claims, note):
    def register(function):
        WRONG[function.__name__] = Mutant(function.__name__, function, record, claims, note)
        return function

    return register


def _per_token(student_logits, teacher_logits, dim=-1):
    teacher_log_probs = F.log_softmax(teacher_logits, dim=dim)
    return (teacher_log_probs.exp()
            * (teacher_log_probs - F.log_softmax(student_logits, dim=dim))).sum(dim=dim)


# Masks --------------------------------------------------------------------------------------


@wrong("token-kd-labels", "mask-excludes-divisor",
       note="masked total divided by every token, padding included (labels.numel())")
def token_kd_labels_pad_in_divisor(student_logits, teacher_logits, labels, ignore_index=-100):
    per_token = _per_token(student_logits, teacher_logits)
    mask = (labels != ignore_index).to(per_token.dtype)
    total = torch.sum(per_token.reshape(-1) * mask.reshape(-1), dim=0)
    return total / max(labels.numel(), 1)


@wrong("token-kd-labels", "mask-excludes-value",
       note="every token's KL summed, ignored ones included; divided by the kept count")
def token_kd_labels_terms_unmasked(student_logits, teacher_logits, labels, ignore_index=-100):
    per_token = _per_token(student_logits, teacher_logits)
    mask = (labels != ignore_index).to(per_token.dtype)
    return per_token.sum() / mask.sum().clamp(min=1)


@wrong("token-kd-labels", "mask-excludes-gradient",
       note="ignored tokens zeroed in place under torch.no_grad(): the value is right, but "
            "autograd never saw the mask, so ignored tokens still get gradient")
def token_kd_labels_mask_under_no_grad(student_logits, teacher_logits, labels,
                                       ignore_index=-100):
    per_token = _per_token(student_logits, teacher_logits)
    keep = labels != ignore_index
    with torch.no_grad():
        per_token[~keep] = 0.0
    return per_token.sum() / keep.sum().clamp(min=1)


@wrong("attention-mask-kd", "mask-excludes-divisor",
       note="(per_token * mask).mean(): the mean runs over padding too")
def attention_mask_kd_padding_in_mean(student_logits, teacher_logits, attention_mask):
    per_token = _per_token(student_logits, teacher_logits)
    return (per_token * attention_mask.to(per_token.dtype)).mean()


@wrong("reverse-kl-logits", "mask-excludes-gradient",
       note="the float mask applied through x.data *= mask: values masked, graph not")
def reverse_kl_logits_mask_through_data(logits, teacher_logits, mask=None):
    student_logprobs = F.log_softmax(logits, dim=-1)
    teacher_logprobs = F.log_softmax(teacher_logits, dim=-1)
    x = torch.sum(student_logprobs.exp() * (student_logprobs - teacher_logprobs), dim=-1)
    x = x.reshape(-1)
    if mask is None:
        return x.mean()
    mask = mask.reshape(-1).to(x.dtype)
    x.data *= mask
    return x.sum() / mask.sum().clamp(min=1)


@wrong("per-token-kl", "mask-excludes-value",
       note="padding_mask accepted but never applied: padded tokens keep their KL")
def per_token_kl_mask_ignored(student_logits, teacher_logits, padding_mask):
    return _per_token(student_logits, teacher_logits)


@wrong("liger-jsd-forward", "mask-excludes-divisor",
       note="ignored rows zeroed, but the total is still divided by BT, not the kept rows")
def liger_jsd_divides_by_bt(log_q, log_p, shift_labels=None, beta=0.5, ignore_index=-100):
    BT, V = log_q.shape
    value = losses.liger_jsd(log_q, log_p, shift_labels, beta, ignore_index)
    if shift_labels is None:
        return value
    return value * (shift_labels != ignore_index).sum().clamp(min=1) / BT


# Temperature --------------------------------------------------------------------------------


@wrong("hinton-kd", "temperature-scaling",
       note="the teacher's softmax left at T = 1: only the student is softened")
def hinton_kd_teacher_unsoftened(student_logits, teacher_logits, temperature=4.0):
    T = temperature
    return F.kl_div(F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits, dim=1),
                    reduction="batchmean") * T * T


@wrong("pixel-kd-nchw", "temperature-scaling",
       note="the T**2 factor its record declares is missing")
def pixel_kd_nchw_missing_t2(student_logits, teacher_logits, temperature=1.0):
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    soft_teacher = F.softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(log_student, soft_teacher, reduction="sum") / student_logits.shape[0]


@wrong("token-kd-temperature", "temperature-scaling",
       note="the T**2 factor its record declares is missing, on a mean over kept tokens")
def token_kd_temperature_missing_t2(student_logits, teacher_logits, labels, temperature=2.0,
                                    ignore_index=-100):
    return losses.token_kd_temperature(student_logits, teacher_logits, labels, temperature,
                                       ignore_index) / temperature ** 2


@wrong("soft-target-kl", "temperature-scaling",
       note="only the student's logits divided by T")
def soft_target_kl_student_only(student_logits, teacher_logits, temperature=2.0):
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits, dim=-1)
    return F.kl_div(student_log_probs, teacher_log_probs, reduction="none",
                    log_target=True).sum(-1).mean()


# Gradients with a right value -------------------------------------------------------------


class _FusedHintonKD(torch.autograd.Function):
    """A hand-written KD kernel: forward right, backward divided by N * C like 'mean'."""

    @staticmethod
    def forward(ctx, student_logits, teacher_logits, temperature):
        T = temperature
        log_q = F.log_softmax(student_logits / T, dim=1)
        log_p = F.log_softmax(teacher_logits / T, dim=1)
        ctx.save_for_backward(log_q, log_p)
        ctx.temperature = T
        return (log_p.exp() * (log_p - log_q)).sum() / student_logits.shape[0] * T * T

    @staticmethod
    def backward(ctx, grad_output):
        log_q, log_p = ctx.saved_tensors
        T = ctx.temperature
        grad = grad_output * T * (log_q.exp() - log_p.exp()) / log_q.numel()
        return grad, None, None


@wrong("hinton-kd", "gradient-input",
       note="fused autograd Function whose backward divides by N * C instead of N")
def hinton_kd_fused_backward_numel(student_logits, teacher_logits, temperature=4.0):
    return _FusedHintonKD.apply(student_logits, teacher_logits, temperature)


class _FusedSoftTarget(torch.autograd.Function):
    """Forward right; backward forgets the 1 / T from the chain rule through s / T."""

    @staticmethod
    def forward(ctx, student_logits, teacher_logits, temperature):
        log_q = F.log_softmax(student_logits / temperature, dim=-1)
        log_p = F.log_softmax(teacher_logits / temperature, dim=-1)
        ctx.save_for_backward(log_q, log_p)
        rows = log_q.numel() // log_q.shape[-1]
        ctx.rows = rows
        return (log_p.exp() * (log_p - log_q)).sum() / rows

    @staticmethod
    def backward(ctx, grad_output):
        log_q, log_p = ctx.saved_tensors
        return grad_output * (log_q.exp() - log_p.exp()) / ctx.rows, None, None


@wrong("soft-target-kl", "gradient-input",
       note="fused autograd Function whose backward omits the 1 / T of d(s / T) / ds")
def soft_target_kl_backward_without_1_over_t(student_logits, teacher_logits, temperature=2.0):
    return _FusedSoftTarget.apply(student_logits, teacher_logits, temperature)


# Class axis ---------------------------------------------------------------------------------


@wrong("pixel-kd-nchw", "class-axis",
       note="LLM code reused on (N, C, H, W): softmax over the last axis (W) instead of C")
def pixel_kd_nchw_last_axis(student_logits, teacher_logits, temperature=1.0):
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    soft_teacher = F.softmax(teacher_logits.detach() / temperature, dim=-1)
    loss = F.kl_div(log_student, soft_teacher, reduction="sum") / student_logits.shape[0]
    return loss * temperature**2


@wrong("kd-rows", "class-axis",
       note="the dim keyword is accepted but the softmax always runs over the last axis")
def kd_rows_dim_ignored(student_logits, teacher_logits, dim=1, temperature=1.0):
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    soft_teacher = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_student, soft_teacher, reduction="none").sum(dim=dim) * temperature**2


# Divisors -----------------------------------------------------------------------------------


@wrong("seq-kd-3d", "token-mean-divisor",
       note="total divided by the batch size instead of batch * seq tokens")
def seq_kd_3d_batch_divisor(student_logits, teacher_logits):
    if student_logits.dim() != 3 or teacher_logits.dim() != 3:
        raise ValueError("expected (batch, seq, vocab) logits")
    return _per_token(student_logits, teacher_logits).sum() / student_logits.shape[0]


@wrong("gkd-jsd-forward", "token-mean-divisor",
       note="batchmean over the kept tokens replaced by a division by labels.size(0)")
def gkd_jsd_per_sequence(student_logits, teacher_logits, labels=None, beta=0.5,
                         temperature=1.0, reduction="batchmean"):
    total = losses.gkd_jsd(student_logits, teacher_logits, labels, beta, temperature, "sum")
    if reduction != "batchmean" or labels is None:
        return losses.gkd_jsd(student_logits, teacher_logits, labels, beta, temperature,
                              reduction)
    return total / (labels.shape[0] if labels.dim() else 1)


# Roles --------------------------------------------------------------------------------------


@wrong("attention-mask-kd", "roles",
       note="student and teacher swapped inside: computes KL(student || teacher)")
def attention_mask_kd_swapped(student_logits, teacher_logits, attention_mask):
    per_token = _per_token(teacher_logits, student_logits)
    per_token = per_token.masked_fill(~attention_mask, 0.0)
    return per_token.sum() / attention_mask.sum().clamp(min=1)


@wrong("reverse-kl-logits", "roles",
       note="called reverse KL but weights by the teacher: computes KL(teacher || student)")
def reverse_kl_logits_is_forward(logits, teacher_logits, mask=None):
    x = _per_token(logits, teacher_logits).reshape(-1)
    if mask is None:
        return x.mean()
    mask = mask.reshape(-1).to(x.dtype)
    return torch.sum(x * mask, dim=0) / torch.sum(mask, dim=0).clamp(min=1)


@wrong("gkd-jsd-forward", "roles",
       note="beta's extremes read the wrong way round: beta = 0 computes KL(student || "
            "teacher), the reverse KL, and beta = 1 the forward one")
def gkd_jsd_beta_flipped(student_logits, teacher_logits, labels=None, beta=0.5,
                         temperature=1.0, reduction="batchmean"):
    flipped = 1.0 - beta if beta in (0, 1) else beta
    return losses.gkd_jsd(student_logits, teacher_logits, labels, flipped, temperature,
                          reduction)
