"""A property example made from its draws: the arrays of a call, without Hypothesis.

Values are made in float64 with numpy from a drawn generator seed and then rounded to the
dtype under test with klconform.dtypes.round_to, so the oracle and the implementation see
exactly the same numbers. What is drawn (shape, kind of distribution, scale, reduction,
log_target, generator seed) is Hypothesis's part (engine.strategies); making the example
from those draws is this module's, which the processes that only replay stored examples
(engine.planned_calls) import without importing Hypothesis (0.17 s).

Distributions live on the last axis: every last-axis row is one distribution.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from klconform.dtypes import SMALLEST_NORMAL, round_to

# Kinds of target distribution P. 'zeros' has exact zeros, so log P is -inf there: it is
# only ever a plain (log_target=False) target, never an input or a log-target.
TARGET_KINDS = ("softmax", "zeros", "near-one-hot", "peaked")
POSITIVE_KINDS = ("softmax", "near-one-hot", "peaked")

@dataclass(frozen=True)
class Example:
    """One drawn call: arrays already exact in `dtype` (float64 numpy)."""

    dtype: str
    input: np.ndarray
    target: np.ndarray
    reduction: str | None = None      # None: the argument is left out (default 'mean')
    log_target: bool | None = None    # None: the argument is left out
    kind: str = ""                    # how P and Q were made, for people reading a failure
    extra: dict = field(default_factory=dict)  # per-property data (logits, permutation)
    draws: tuple = ()  # what was drawn to make it, from which it is made again when replayed

    def __repr__(self):
        # Hypothesis prints the shrunk example with repr: a summary, the values are in the
        # reproducing snippet and the JSON example file.
        return (f"Example(dtype={self.dtype!r}, shape={self.input.shape}, kind={self.kind!r}, "
                f"reduction={self.reduction!r}, log_target={self.log_target!r})")


def _as_rows(shape):
    """A 0-d value is a one-element distribution: work on (rows, last) and reshape back."""
    return (1, 1) if shape == () else (math.prod(shape[:-1]), shape[-1])


def log_distribution(kind, shape, rng, scale, floor=0.0):
    """log P in float64 along the last axis, for a drawn kind; -inf marks exact zeros.

    `floor` lifts every probability to at least that value (then renormalises): properties
    that take log P after rounding need P to stay a positive normal number in the dtype.
    """
    rows, width = _as_rows(shape)
    if kind == "near-one-hot":
        # 1 - eps on one class, eps spread over the others: eps from 1e-8 to 1e-2.
        eps = 10.0 ** rng.uniform(-8, -2, size=(rows, 1))
        hot = rng.integers(0, width, size=rows)
        share = eps / max(width - 1, 1)
        probabilities = np.broadcast_to(share, (rows, width)).copy()
        probabilities[np.arange(rows), hot] = 1.0 - eps[:, 0] if width > 1 else 1.0
    else:
        spread = {"softmax": scale, "zeros": scale, "peaked": 40.0 * scale}[kind]
        probabilities = np.exp(log_softmax_rows(spread * rng.standard_normal((rows, width))))
        if kind == "zeros":
            # Zero a random subset of each row, keeping its largest entry.
            dropped = rng.random((rows, width)) < 0.5
            dropped[np.arange(rows), probabilities.argmax(axis=1)] = False
            probabilities[dropped] = 0.0
            probabilities /= probabilities.sum(axis=1, keepdims=True)
    if floor:
        probabilities = np.maximum(probabilities, floor)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.log(probabilities).reshape(shape)


def log_softmax_rows(logits):
    """log softmax along axis 1, accurate where one logit dominates.

    With the row maximum subtracted, that entry contributes exactly 1 to the normaliser;
    log1p of the rest keeps the relative accuracy that log(1 + small) loses. Confident
    predictions have KL values of that small size, and float64 budgets are relative to it.
    """
    rows = np.arange(logits.shape[0])
    top = logits.argmax(axis=1)
    shifted = logits - logits[rows, top][:, None]
    others = np.exp(shifted)
    others[rows, top] = 0.0
    return shifted - np.log1p(others.sum(axis=1, keepdims=True))


def positive_floor(dtype, width):
    """Smallest probability kept by properties that need log P finite after rounding.

    Twice the dtype's smallest normal number: rounding then has its relative error bound,
    and log of it is finite. Lifting k entries to the floor must leave P a distribution,
    hence the cap at 1/(2k).
    """
    return min(2.0 * SMALLEST_NORMAL[dtype], 0.5 / max(width, 1))


@dataclass(frozen=True)
class Options:
    """What a property lets the strategy draw."""

    reductions: tuple = (None, "none", "sum", "mean", "batchmean")
    log_targets: tuple = (None, False, True)
    target_kinds: tuple = TARGET_KINDS
    identical: bool = False           # Q = P (KL(P||P))
    min_dims: int = 0
    max_dims: int = 4
    min_last: int = 1
    positive: bool = False            # every probability positive in the dtype


def sample_array(adapter):
    """Uniform log-probabilities of a rank the adapter takes (2 where it can), to ask its
    plan about a call: a plan may refuse log Q rows that are not normalised (a logits
    argument), which must not make a whole property look unsupported."""
    low, high = adapter.capabilities.ranks
    rank = max(low, min(2, high if high is not None else 2))
    return np.full((2,) * rank, -np.log(2.0) if rank else 0.0)


def reduction_choices(adapter, options, dtype, device):
    """The drawn reductions / log_target values the adapter supports (never draw others)."""
    from klconform.adapters.base import Call
    from klconform.engine.evaluate import plan_refusal

    empty = sample_array(adapter)

    def supported(reduction, log_target):
        call = Call(empty, empty, dtype=dtype, reduction=reduction, log_target=log_target,
                    device=device)
        return plan_refusal(adapter, call) is None

    reductions = tuple(r for r in options.reductions if supported(r, None))
    log_targets = tuple(v for v in options.log_targets
                        if reductions and supported(reductions[0], v))
    return reductions, log_targets


def _positive(options, log_target):
    return options.positive or bool(log_target) or options.identical


def target_kinds(options, log_target):
    positive = _positive(options, log_target)
    return tuple(k for k in options.target_kinds if not positive or k in POSITIVE_KINDS)


def example_from_draws(dtype, options, draws):
    """The Example that `examples` makes from these draws (shape, reduction, log_target,
    target kind, input kind, scale, generator seed): stored examples are replayed from them."""
    shape, reduction, log_target, target_kind, input_kind, scale, seed = draws
    shape = tuple(shape)
    rng = np.random.default_rng(seed)
    in_log_space = bool(log_target)
    width = _as_rows(shape)[1]
    floor = positive_floor(dtype, width) if _positive(options, log_target) else 0.0

    log_p = log_distribution(target_kind, shape, rng, scale, floor)
    target = round_to(log_p if in_log_space else np.exp(log_p), dtype)
    if options.identical:
        # Q = P as exactly as the dtype allows: the same array in log space, or the log of
        # the rounded P (both sides then describe one distribution up to one rounding).
        input_values = target.copy() if in_log_space else round_to(np.log(target), dtype)
    else:
        # Q always has log Q finite: an input of -inf is implementation-defined territory.
        input_values = round_to(log_distribution(input_kind, shape, rng, scale,
                                                 positive_floor(dtype, width)), dtype)
    kind = f"P {target_kind}, Q {'= P' if options.identical else input_kind}, scale {scale:g}"
    return Example(dtype, input_values, target, reduction, log_target, kind,
                   draws=(shape, reduction, log_target, target_kind, input_kind, scale, seed))


def one_hot_from_draws(dtype, draws):
    """The Example that `one_hot_examples` makes from (shape, scale, generator seed)."""
    shape, scale, seed = draws
    shape = tuple(shape)
    rng = np.random.default_rng(seed)
    rows, width = _as_rows(shape)
    logits = scale * rng.standard_normal((rows, width))
    log_q = log_softmax_rows(logits)
    target = np.eye(width)[rng.integers(0, width, size=rows)]
    return Example(dtype, round_to(log_q.reshape(shape), dtype), target.reshape(shape),
                   "batchmean", None, f"one-hot target, logits scale {scale:g}",
                   {"logits": logits.reshape(shape)}, draws=(shape, scale, seed))


def permutation_from_seed(seed, size):
    return np.random.default_rng(seed).permutation(size) if seed else np.roll(np.arange(size), 1)
