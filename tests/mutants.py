"""Deliberately wrong, and deliberately different but correct, KL-divergence implementations.

Every entry is a plain callable with torch's convention, `(input, target, reduction='mean',
log_target=False)` on torch tensors, so the suites can run it as
`--impl tests.mutants:NAME`. A wrong one (a mutant) reproduces one mistake seen in real
code and names the claims of spec/claims.yaml it breaks: the suite must fail a must-level
case on each of those claims. A correct one computes the same function another way (order
of summation, precision, strictness) and must pass.

Each mutant changes one thing against torch.nn.functional.kl_div, so the failure it
causes can only come from that one thing.
"""

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

REDUCTIONS = ("none", "sum", "mean", "batchmean")


@dataclass(frozen=True)
class Mutant:
    name: str
    function: Callable
    breaks: tuple          # claim ids the suite must report failing; empty for a correct one
    note: str
    # Further must-level claims it fails, each with why that is the truth about this
    # function and not a check blaming the wrong claim; with `breaks`, the exact set.
    also: dict = field(default_factory=dict)

    @property
    def impl(self):
        return f"{__name__}:{self.name}"

    @property
    def fails(self):
        return frozenset(self.breaks) | frozenset(self.also)


# Why a mutant is recorded with more claims than its one bug names: the gaps of
# attribution that are known, kept exact here so that closing one shows as a change.
GRADIENT_ONLY = ("where the value is within its budget and the gradient is not, no known "
                 "mistake reproduces the gradient: it fails on the gradient's own claims")
LARGE_HALF = ("on 8 x 128000 in a half precision the value's budget hides the mistake and "
              "the gradient's does not; " + GRADIENT_ONLY)
KINK = ("where the total is within its budget of 0, the clamp's gradient (0 wherever the "
        "rounding fell below 0) is reproduced by no gradient hypothesis: it fails the "
        "gradient's own claims, under the clamp's root cause")

WRONG: dict[str, Mutant] = {}
CORRECT: dict[str, Mutant] = {}


def wrong(*claims, note, also=None):
    def register(function):
        WRONG[function.__name__] = Mutant(function.__name__, function, claims, note,
                                          dict(also or {}))
        return function

    return register


def correct(note):
    def register(function):
        CORRECT[function.__name__] = Mutant(function.__name__, function, (), note)
        return function

    return register


def _probabilities(target, log_target):
    return target.exp() if log_target else target


def _terms(input, target, log_target):
    return F.kl_div(input, target, reduction="none", log_target=log_target)


def _reduce(terms, reduction, input):
    """The four reductions done right, for mutants whose mistake lies before them."""
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        return terms.mean()
    if reduction == "batchmean":
        return terms.sum() / (input.size(0) if input.dim() else 1)
    raise ValueError(f"{reduction!r} is not a valid reduction")


# Roles and formula ---------------------------------------------------------------------


@wrong("roles", note="computes KL(Q||P): the prediction is treated as the truth",
       also={"gradient-input": LARGE_HALF, "gradient-target": LARGE_HALF})
def roles_swapped(input, target, reduction="mean", log_target=False):
    log_truth = target if log_target else target.log()
    return F.kl_div(log_truth, input.exp(), reduction=reduction)


@wrong("roles-asymmetric", note="symmetrised KL: the mean of KL(P||Q) and KL(Q||P)",
       also={"gradient-input": GRADIENT_ONLY, "gradient-target": GRADIENT_ONLY})
def symmetrised(input, target, reduction="mean", log_target=False):
    log_truth = target if log_target else target.log()
    forward = F.kl_div(input, target, reduction=reduction, log_target=log_target)
    backward = F.kl_div(log_truth, input, reduction=reduction, log_target=True)
    return (forward + backward) / 2


@wrong("roles", note="input taken as probabilities Q: log() applied to the input",
       also={"log-target": "log() of log-probabilities is nan; with log_target=True a nan "
                           "is also what ignoring log_target gives, which is listed first"})
def input_as_probabilities(input, target, reduction="mean", log_target=False):
    return F.kl_div(input.log(), target, reduction=reduction, log_target=log_target)


@wrong("zero-target", note="plain t * log t, so a zero target gives 0 * -inf = nan")
def zero_target_nan(input, target, reduction="mean", log_target=False):
    if log_target:
        return F.kl_div(input, target, reduction=reduction, log_target=True)
    return _reduce(target * (target.log() - input), reduction, input)


@wrong("cross-entropy-decomposition",
       note="target-entropy term dropped: returns the cross-entropy -sum(t * x)")
def cross_entropy_only(input, target, reduction="mean", log_target=False):
    return _reduce(-_probabilities(target, log_target) * input, reduction, input)


@wrong("none-pointwise", note="eps added inside the log: t * log(t + 1e-7)",
       also={"gradient-target": "on 8 x 128000 at float32 the eps is inside the value's "
                                "budget and outside d/dtarget's: log(t + eps) + t / (t + eps)"})
def eps_inside_log(input, target, reduction="mean", log_target=False):
    # Not 1e-8: float16 rounds that to 0, and the function is then also zero_target_nan.
    p = _probabilities(target, log_target)
    return _reduce(p * ((p + 1e-7).log() - input), reduction, input)


@wrong("zero-target", note="keras-style: both distributions clipped to [1e-7, 1] first",
       also={"gradient-input": "the clip's gradient at a zero target (1e-7 / n, not 0) and "
                               "an overflow at float16 are reproduced by no gradient "
                               "hypothesis: they fail the gradient's own claims",
             "gradient-target": GRADIENT_ONLY})
def keras_clipped(input, target, reduction="mean", log_target=False):
    p = _probabilities(target, log_target).clamp(1e-7, 1.0)
    q = input.exp().clamp(1e-7, 1.0)
    return _reduce(p * (p / q).log(), reduction, input)


@wrong("unnormalized-negative",
       note="both arguments renormalised over the last axis (softmax of input, t / sum t)",
       also={"elementwise": "it knows the last axis holds the distribution: the claim's "
                            "statement is untrue",
             "gradient-input": "with one-hot targets in a half precision the softmax's "
                               "gradient is not reproduced within the gradient budget",
             "gradient-target": GRADIENT_ONLY})
def renormalised(input, target, reduction="mean", log_target=False):
    log_prediction = F.log_softmax(input, dim=-1)
    if log_target:
        truth = F.log_softmax(target, dim=-1)
    else:
        truth = target / target.sum(dim=-1, keepdim=True)
    return F.kl_div(log_prediction, truth, reduction=reduction, log_target=log_target)


@wrong("cross-entropy-one-hot",
       note="label smoothing applied to the target (0.1 spread over the classes): a one-hot "
            "target is no longer one-hot",
       also={"gradient-input": GRADIENT_ONLY, "gradient-target": GRADIENT_ONLY})
def target_smoothed(input, target, reduction="mean", log_target=False):
    truth = _probabilities(target, log_target)
    smoothed = 0.9 * truth + 0.1 / truth.shape[-1] if truth.dim() else truth
    return F.kl_div(input, smoothed, reduction=reduction, log_target=False)


@wrong("identical-zero", note="label smoothing applied to the prediction (0.1 spread over "
                              "the classes): KL(P||P) is no longer 0",
       also={"gradient-input": GRADIENT_ONLY, "gradient-target": GRADIENT_ONLY})
def prediction_smoothed(input, target, reduction="mean", log_target=False):
    if not input.dim():
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)
    smoothed = torch.log(0.9 * input.exp() + 0.1 / input.shape[-1])
    return F.kl_div(smoothed, target, reduction=reduction, log_target=log_target)


# log_target ----------------------------------------------------------------------------


@wrong("log-target", note="log_target accepted but ignored: log P used as P")
def log_target_ignored(input, target, reduction="mean", log_target=False):
    return F.kl_div(input, target, reduction=reduction)


@wrong("log-target", note="log_target applied even when False: P used as log P")
def log_target_always_applied(input, target, reduction="mean", log_target=False):
    return F.kl_div(input, target, reduction=reduction, log_target=True)


# Sign, scale, units ----------------------------------------------------------------------


@wrong("unnormalized-negative", note="negative results clamped to 0",
       also={"none-negative-terms": "its 'none' result is the terms, which it clamps: the "
                                    "claim's own statement",
             "gradient-input": KINK, "gradient-target": KINK})
def result_clamped(input, target, reduction="mean", log_target=False):
    return F.kl_div(input, target, reduction=reduction, log_target=log_target).clamp(min=0)


@wrong("none-negative-terms", note="each pointwise term clamped to 0 before the reduction",
       also={"gradient-input": KINK, "gradient-target": KINK})
def terms_clamped(input, target, reduction="mean", log_target=False):
    return _reduce(_terms(input, target, log_target).clamp(min=0), reduction, input)


@wrong("unnormalized-negative", note="absolute value of the result")
def absolute_value(input, target, reduction="mean", log_target=False):
    return F.kl_div(input, target, reduction=reduction, log_target=log_target).abs()


@wrong("normalized-nonnegative", note="sign flipped: returns -KL",
       also={"unnormalized-negative": "on raw logits every term is negative, where -KL and "
                                      "|KL| are the same function; the closer one is named, "
                                      "and the report joins it to the sign's root cause"})
def sign_flipped(input, target, reduction="mean", log_target=False):
    return -F.kl_div(input, target, reduction=reduction, log_target=log_target)


@wrong("worked-examples", note="units in bits: divided by ln 2",
       also={"none-negative-terms": "at bfloat16 clamping the terms rounds to the same "
                                    "number as the bits, and is closer"})
def in_bits(input, target, reduction="mean", log_target=False):
    return F.kl_div(input, target, reduction=reduction, log_target=log_target) / math.log(2)


# Reductions ------------------------------------------------------------------------------


@wrong("reduction-batchmean", note="'batchmean' divides by numel, i.e. computes 'mean'",
       also={"mean-is-not-kl": "'batchmean' equals 'mean': the claim's statement is untrue"})
def batchmean_divides_by_numel(input, target, reduction="mean", log_target=False):
    if reduction == "batchmean":
        return _terms(input, target, log_target).sum() / input.numel()
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


@wrong("reduction-sum", note="'sum' divided by size(0): the batch mean returned for 'sum'")
def sum_divides_by_size0(input, target, reduction="mean", log_target=False):
    if reduction == "sum":
        return _terms(input, target, log_target).sum() / (input.size(0) if input.dim() else 1)
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


# 'mean' is then the KL value: mean-is-not-kl follows, under reduction-mean's root cause.
@wrong("reduction-mean", note="'mean' divides by size(0), i.e. 'batchmean'",
       also={"mean-is-not-kl": "'mean' equals 'batchmean': the claim's statement is untrue"})
def mean_divides_by_size0(input, target, reduction="mean", log_target=False):
    if reduction == "mean":
        return _terms(input, target, log_target).sum() / input.size(0)
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


@wrong("reduction-batchmean",
       note="'batchmean' divides by every leading dimension (rows of the flattened input)")
def batchmean_divides_by_leading_dims(input, target, reduction="mean", log_target=False):
    if reduction == "batchmean":
        return _terms(input, target, log_target).sum() / math.prod(input.shape[:-1])
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


@wrong("none-pointwise", note="'none' returns per-row sums instead of the pointwise terms")
def none_reduced_per_row(input, target, reduction="mean", log_target=False):
    if reduction == "none":
        return _terms(input, target, log_target).sum(dim=-1)
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


@wrong("default-reduction-mean", note="the default reduction is 'batchmean'")
def default_batchmean(input, target, reduction="batchmean", log_target=False):
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


@wrong("invalid-reduction-rejected", note="an unknown reduction string is treated as 'mean'")
def invalid_reduction_as_mean(input, target, reduction="mean", log_target=False):
    if reduction not in REDUCTIONS:
        reduction = "mean"
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


# Precision, dtype, NaN --------------------------------------------------------------------


@wrong("accuracy-in-dtype", note="float64 inputs computed in float32 (result cast back to float64)")
def float32_inside(input, target, reduction="mean", log_target=False):
    result = F.kl_div(input.float(), target.float(), reduction=reduction, log_target=log_target)
    return result.to(input.dtype)


@wrong("result-dtype", note="half-precision inputs upcast to float32 and never cast back")
def half_result_upcast(input, target, reduction="mean", log_target=False):
    if input.dtype in (torch.float16, torch.bfloat16):
        input, target = input.float(), target.float()
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


@wrong("nan-propagates", note="NaN pointwise terms replaced by 0 before the reduction")
def nan_swallowed(input, target, reduction="mean", log_target=False):
    terms = _terms(input, target, log_target)
    # Not torch.nan_to_num: it would also turn +-inf into finite numbers, a second mistake.
    return _reduce(torch.where(terms.isnan(), torch.zeros_like(terms), terms), reduction, input)


# Gradients: the forward value is right, the backward pass is not ---------------------------


@wrong("gradient-target", note="target detached: no gradient flows to the target")
def target_detached(input, target, reduction="mean", log_target=False):
    return F.kl_div(input, target.detach(), reduction=reduction, log_target=log_target)


@wrong("gradient-input", note="the input's gradient doubled (value unchanged)")
def input_gradient_doubled(input, target, reduction="mean", log_target=False):
    # input - input.detach() is exactly 0 forward and has gradient 1 backward.
    doubled = input.detach() + 2 * (input - input.detach())
    return F.kl_div(doubled, target, reduction=reduction, log_target=log_target)


def _divisor(input, reduction):
    return {"mean": input.numel(), "batchmean": input.size(0) if input.dim() else 1}.get(
        reduction, 1)


@wrong("gradient-input",
       note="the input-only backward path (distillation: teacher detached) forgets to divide "
            "by the reduction's divisor; the path with both gradients is right")
def input_only_backward_unscaled(input, target, reduction="mean", log_target=False):
    if input.requires_grad and not target.requires_grad:
        # Exactly the input forward; backward, its gradient times the divisor.
        factor = _divisor(input, reduction)
        input = input.detach() + factor * (input - input.detach())
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


@wrong("gradient-target",
       note="the target-only backward path (VAE / RL: prediction fixed) flips the sign of the "
            "target's gradient; the path with both gradients is right")
def target_only_backward_negated(input, target, reduction="mean", log_target=False):
    if target.requires_grad and not input.requires_grad:
        target = target.detach() - (target - target.detach())
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


# Memory layout: the values are right for contiguous arguments only -----------------------


def _as_if_contiguous(tensor):
    # What a kernel that walks data_ptr() with contiguous strides reads.
    strides, step = [], 1
    for size in reversed(tensor.shape):
        strides.insert(0, step)
        step *= size
    return tensor.as_strided(tensor.shape, strides, tensor.storage_offset())


@wrong("layout-independent",
       note="a kernel that reads its arguments' memory as if they were contiguous")
def assumes_contiguous(input, target, reduction="mean", log_target=False):
    return F.kl_div(_as_if_contiguous(input), _as_if_contiguous(target), reduction=reduction,
                    log_target=log_target)


# Correct variants -------------------------------------------------------------------------


@correct("computed in float64 and cast back to the input dtype")
def float64_accumulation(input, target, reduction="mean", log_target=False):
    result = F.kl_div(input.double(), target.double(), reduction=reduction,
                      log_target=log_target)
    return result.to(input.dtype)


@correct("sums each row first, then the row sums")
def row_wise_sum(input, target, reduction="mean", log_target=False):
    terms = _terms(input, target, log_target)
    if reduction == "none" or terms.dim() < 2:
        return _reduce(terms, reduction, input)
    total = terms.reshape(terms.shape[0], -1).sum(dim=1).sum()
    divisors = {"sum": 1, "mean": terms.numel(), "batchmean": input.size(0)}
    if reduction not in divisors:
        raise ValueError(f"{reduction!r} is not a valid reduction")
    return total / divisors[reduction]


@correct("copies non-contiguous arguments to contiguous ones first")
def made_contiguous(input, target, reduction="mean", log_target=False):
    return F.kl_div(input.contiguous(), target.contiguous(), reduction=reduction,
                    log_target=log_target)


@correct("refuses input and target of different shapes instead of broadcasting")
def strict_shapes(input, target, reduction="mean", log_target=False):
    if input.shape != target.shape:
        raise ValueError(f"shape mismatch: input {tuple(input.shape)}, "
                         f"target {tuple(target.shape)}")
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


@correct("no legacy size_average/reduce arguments and never a warning ('mean' included): "
         "mean-warns is should-level, so this is reported, not failed")
def silent(input, target, reduction="mean", log_target=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)


@correct("the formula written out: xlogy(t, t) - t * x, or exp(t) * (t - x) with log_target")
def xlogy_formula(input, target, reduction="mean", log_target=False):
    if log_target:
        terms = target.exp() * (target - input)
    else:
        terms = torch.xlogy(target, target) - target * input
    return _reduce(terms, reduction, input)
