"""Correct distillation KL losses, written in the styles real training code uses.

Each one is a plain torch function with the student first (Liger's JSD takes the student's
log-probabilities first too) and has a record beside it in records/ that states its
convention for klconform. None of them is copied from anywhere; the styles they follow are:

- token_kd_labels: OpenRLHF's KDLoss and DistiLLM/MiniLLM's forward_kl (token level,
  `labels != -100` mask flattened with view(-1), masked total over the number of kept
  tokens); written as a full KL where those repositories drop the teacher's entropy.
- pixel_kd_nchw: mmrazor / mmseg pixel-wise KD (softmax over dim=1 of (N, C, H, W),
  tau**2 factor, sum over everything divided by N, i.e. F.kl_div's 'batchmean'; the
  teacher detached as mmrazor's teacher_detach=True does).
- hinton_kd: the classic Hinton KD found in timm-style training scripts, torchdistill's
  KDLoss and countless repositories (F.kl_div(log_softmax(s/T), softmax(t/T),
  'batchmean') * T * T).
- soft_target_kl: temperature applied to both sides without the T**2 factor, as TRL's GKD
  trainer does; rows summed, then averaged (`.sum(-1).mean()`).
- reverse_kl_logits: DistiLLM/MiniLLM's reverse_kl (sum_c q_s (log q_s - log p_t), float
  mask of kept tokens, masked total over mask.sum()).
- upcast_kd_sum: the float32 upcast that bf16 training code does before the softmax
  (OpenRLHF / DistiLLM pass dtype=torch.float32, Liger-Kernel's torch references call
  .float()), here with the result cast back to the input dtype.
- seq_kd_3d: code that unpacks `batch, seq, vocab = logits.shape` and rejects anything else.
- attention_mask_kd: Hugging Face style boolean attention_mask (True = real token).
- gkd_jsd: TRL's GKDTrainer.generalized_jsd_loss (beta = 0 is KL(teacher||student), beta = 1
  is KL(student||teacher), labels == -100 dropped, 'batchmean' over the kept tokens).
- kd_rows: mmrazor's weighted_loss kl_div, a per-sample loss along a `dim` keyword.
- per_token_kl: a per-token (batch, seq) KL with padding zeroed through a fairseq style
  padding mask (True = padding), left for the caller to reduce.
- kd_teacher_probs: offline distillation from stored teacher probabilities (DistillKit
  style), xlogy so a zero teacher probability contributes 0.
- liger_jsd: Liger-Kernel's torch reference for LigerJSD (log-probabilities of student and
  teacher as 2-D (BT, V), shift_labels with ignore_index, divided by the kept rows).
"""

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def _forward_kl_rows(student_logits, teacher_logits, dim=-1, temperature=1.0):
    """KL(softmax(t / T) || softmax(s / T)) summed over `dim`."""
    student_log_probs = F.log_softmax(student_logits / temperature, dim=dim)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=dim)
    teacher_probs = teacher_log_probs.exp()
    return (teacher_probs * (teacher_log_probs - student_log_probs)).sum(dim=dim)


# 1. OpenRLHF / DistiLLM token-level KD with labels ------------------------------------------


def token_kd_labels(student_logits, teacher_logits, labels, ignore_index=IGNORE_INDEX):
    """Token-level KL(teacher || student), averaged over tokens whose label is kept."""
    teacher_probs = F.softmax(teacher_logits, dim=-1)
    student_log_probs = F.log_softmax(student_logits, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits, dim=-1)
    per_token = torch.sum(teacher_probs * (teacher_log_probs - student_log_probs), dim=-1)
    mask = (labels != ignore_index).to(per_token.dtype)
    total = torch.sum(per_token.reshape(-1) * mask.reshape(-1), dim=0)
    return total / mask.sum().clamp(min=1)


# 2. Pixel-wise KD on (N, C, H, W), class axis 1 ---------------------------------------------


def pixel_kd_nchw(student_logits, teacher_logits, temperature=1.0):
    """Segmentation KD: softmax over channels, T**2 * KL summed over pixels, divided by N.
    The teacher is detached, as mmrazor does by default (teacher_detach=True)."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    soft_teacher = F.softmax(teacher_logits.detach() / temperature, dim=1)
    loss = F.kl_div(log_student, soft_teacher, reduction="sum") / student_logits.shape[0]
    return loss * temperature**2


# 3. Hinton KD on (N, C) ----------------------------------------------------------------------


def hinton_kd(student_logits, teacher_logits, temperature=4.0):
    """Classic KD: batchmean KL of temperature-softened distributions, times T * T."""
    T = temperature
    return F.kl_div(
        F.log_softmax(student_logits / T, dim=1),
        F.softmax(teacher_logits / T, dim=1),
        reduction="batchmean",
    ) * T * T


# 4. Temperature without T**2 -----------------------------------------------------------------


def soft_target_kl(student_logits, teacher_logits, temperature=2.0):
    """KL of softened distributions per row, rows averaged; no T**2 compensation."""
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)
    per_row = F.kl_div(student_log_probs, teacher_log_probs, reduction="none",
                       log_target=True).sum(-1)
    return per_row.mean()


# 5. Reverse KL (MiniLLM / DistiLLM) ----------------------------------------------------------


def reverse_kl_logits(logits, teacher_logits, mask=None):
    """KL(student || teacher) per token, masked mean with a float mask (1 = kept)."""
    student_probs = F.softmax(logits, dim=-1)
    student_logprobs = F.log_softmax(logits, dim=-1)
    teacher_logprobs = F.log_softmax(teacher_logits, dim=-1)
    x = torch.sum(student_probs * (student_logprobs - teacher_logprobs), dim=-1).reshape(-1)
    if mask is None:
        return x.mean()
    mask = mask.reshape(-1).to(x.dtype)
    return torch.sum(x * mask, dim=0) / torch.sum(mask, dim=0).clamp(min=1)


# 6. Upcast to float32 inside ------------------------------------------------------------------


def upcast_kd_sum(student_logits, teacher_logits, temperature=1.0):
    """Computes in float32 whatever the input dtype, returns T**2 * total in that dtype."""
    input_dtype = student_logits.dtype
    student = student_logits.float() / temperature
    teacher = teacher_logits.float() / temperature
    teacher_log_probs = torch.log_softmax(teacher, dim=-1)
    kl = torch.exp(teacher_log_probs) * (teacher_log_probs - torch.log_softmax(student, dim=-1))
    return (kl.sum() * temperature**2).to(input_dtype)


# 7. 3-D only ----------------------------------------------------------------------------------


def seq_kd_3d(student_logits, teacher_logits):
    """(batch, seq, vocab) only; KL(teacher || student) averaged over batch * seq tokens."""
    if student_logits.dim() != 3 or teacher_logits.dim() != 3:
        raise ValueError(
            f"expected (batch, seq, vocab) logits, got {tuple(student_logits.shape)} and "
            f"{tuple(teacher_logits.shape)}")
    batch, seq, vocab = student_logits.shape
    per_token = _forward_kl_rows(student_logits.reshape(batch * seq, vocab),
                                 teacher_logits.reshape(batch * seq, vocab))
    return per_token.sum() / (batch * seq)


# 8. Boolean attention_mask (True = real token) -----------------------------------------------


def attention_mask_kd(student_logits, teacher_logits, attention_mask):
    """Token KL(teacher || student) summed over real tokens, over attention_mask.sum()."""
    per_token = _forward_kl_rows(student_logits, teacher_logits)
    per_token = per_token.masked_fill(~attention_mask, 0.0)
    return per_token.sum() / attention_mask.sum().clamp(min=1)


# 9. TRL GKD generalized JSD -------------------------------------------------------------------


def gkd_jsd(student_logits, teacher_logits, labels=None, beta=0.5, temperature=1.0,
            reduction="batchmean"):
    """Generalized JSD; beta = 0 is KL(teacher || student), beta = 1 KL(student || teacher)."""
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)
    if beta == 0:
        jsd = F.kl_div(student_log_probs, teacher_log_probs, reduction="none", log_target=True)
    elif beta == 1:
        jsd = F.kl_div(teacher_log_probs, student_log_probs, reduction="none", log_target=True)
    else:
        weight = torch.tensor(beta, dtype=student_log_probs.dtype)
        mixture_log_probs = torch.logsumexp(
            torch.stack([student_log_probs + torch.log1p(-weight),
                         teacher_log_probs + torch.log(weight)]), dim=0)
        kl_teacher = F.kl_div(mixture_log_probs, teacher_log_probs, reduction="none",
                              log_target=True)
        kl_student = F.kl_div(mixture_log_probs, student_log_probs, reduction="none",
                              log_target=True)
        jsd = beta * kl_teacher + (1 - beta) * kl_student
    if labels is not None:
        mask = labels != IGNORE_INDEX
        jsd = jsd[mask]
    if reduction == "batchmean":
        if labels is not None:
            return jsd.sum() / mask.sum().clamp(min=1)
        rows = jsd.numel() // jsd.shape[-1] if jsd.dim() and jsd.shape[-1] else 1
        return jsd.sum() / max(rows, 1)
    if reduction == "sum":
        return jsd.sum()
    if reduction == "mean":
        return jsd.mean()
    return jsd


# 10. Class axis as a `dim` keyword, per-row output --------------------------------------------


def kd_rows(student_logits, teacher_logits, dim=1, temperature=1.0):
    """Per-sample T**2 * KL(teacher || student) along `dim`, no reduction."""
    log_student = F.log_softmax(student_logits / temperature, dim=dim)
    soft_teacher = F.softmax(teacher_logits / temperature, dim=dim)
    terms = F.kl_div(log_student, soft_teacher, reduction="none")
    return terms.sum(dim=dim) * temperature**2


# 11. Per-token KL, padding zeroed (True = padding) ---------------------------------------------


def per_token_kl(student_logits, teacher_logits, padding_mask):
    """KL(teacher || student) for every token, 0 where padding_mask is True."""
    per_token = _forward_kl_rows(student_logits, teacher_logits)
    return torch.where(padding_mask, torch.zeros_like(per_token), per_token)


# 12. Teacher probabilities instead of logits ---------------------------------------------------


def kd_teacher_probs(student_logits, teacher_probs):
    """Offline KD from stored teacher probabilities; total over the batch size."""
    student_log_probs = F.log_softmax(student_logits, dim=-1)
    terms = torch.special.xlogy(teacher_probs, teacher_probs) - teacher_probs * student_log_probs
    batch = student_logits.shape[0] if student_logits.dim() else 1
    return terms.sum() / batch


# 13. Liger-Kernel's torch JSD reference on log-probabilities -----------------------------------


def liger_jsd(log_q, log_p, shift_labels=None, beta=0.5, ignore_index=IGNORE_INDEX):
    """JSD(beta) of student log-probs log_q and teacher log-probs log_p, (BT, V) only."""
    BT, V = log_q.shape
    q, p = log_q.exp(), log_p.exp()
    if beta == 0.0:
        # xlogy-style: a teacher probability of exactly zero contributes 0, not 0 * -inf.
        loss = p * (torch.where(p > 0, log_p, torch.zeros_like(log_p)) - log_q)
    elif beta == 1.0:
        loss = q * (torch.where(q > 0, log_q, torch.zeros_like(log_q)) - log_p)
    else:
        m = beta * p + (1 - beta) * q
        log_m = m.log()
        loss = beta * p * (log_p - log_m) + (1 - beta) * q * (log_q - log_m)
    if shift_labels is not None:
        keep = shift_labels != ignore_index
        loss = torch.where(keep.unsqueeze(-1), loss, torch.zeros_like(loss))
        n_non_ignore = keep.sum().clamp(min=1)
    else:
        n_non_ignore = BT
    return loss.sum() / n_non_ignore


# 14. Token KD at a temperature, T**2 restored, mean over kept tokens --------------------------


def token_kd_temperature(student_logits, teacher_logits, labels, temperature=2.0,
                         ignore_index=IGNORE_INDEX):
    """KL(teacher || student) per token of softened distributions, times T**2 so that the
    gradients keep their size, averaged over the tokens whose label is kept."""
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits / temperature, dim=-1)
    per_token = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    kept = (labels != ignore_index).to(per_token.dtype)
    return (per_token * kept).sum() / kept.sum().clamp(min=1) * temperature ** 2
