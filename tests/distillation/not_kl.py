"""Distillation losses that are not a KL, written as training code writes them: diagnose names
what each computes and writes no KL record."""

import torch
import torch.nn.functional as F


def soft_label_cross_entropy(student_logits, teacher_logits, temperature=1.0):
    """Soft-label cross-entropy: -sum_c p_teacher log p_student per row, rows averaged
    (KL plus the teacher's entropy, which has no gradient for the student)."""
    teacher = F.softmax(teacher_logits / temperature, dim=-1)
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    return torch.mean(torch.sum(-teacher * log_student, dim=-1))


def symmetric_jsd(student_logits, teacher_logits):
    """Jensen-Shannon divergence of the two softmaxes, summed over every element."""
    p, q = F.softmax(student_logits, dim=-1), F.softmax(teacher_logits, dim=-1)
    log_m = torch.log((p + q) / 2)
    return 0.5 * torch.sum(p * (torch.log(p) - log_m)) + 0.5 * torch.sum(q * (torch.log(q) - log_m))


def kd_with_alpha(student_logits, teacher_logits, alpha):
    """A KD loss whose weight has no default: klconform cannot choose it for the user."""
    return alpha * F.kl_div(F.log_softmax(student_logits, -1), F.softmax(teacher_logits, -1),
                            reduction="batchmean")
