"""The independent float64 oracle. It never calls the implementation under test.

Work is done in fixed-size chunks so that extra memory stays bounded however large the
input (large-vocabulary rows reach millions of elements), while each chunk is vectorised.
"""

import math
from dataclasses import dataclass

import numpy as np

from klconform.constants import REDUCTIONS
from klconform.oracle import budget
from klconform.spec.tensors import log_softmax_deficit

CHUNK = 1 << 16


@dataclass(frozen=True)
class Expected:
    value: np.ndarray        # float64; shape () for reductions, input's shape for 'none'
    budget: np.ndarray       # absolute tolerance, same shape (inf where value is non-finite)
    reduction: str
    divisor: float
    magnitude_sum: float     # sum of m_i, the size of what was computed
    abs_term_sum: float      # sum of |L_i|


def pointwise(x, t, log_target=False):
    """Pointwise terms L_i (IEEE semantics: 0 * log 0 = 0, anything with NaN is NaN)."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(all="ignore"):
        if log_target:
            return np.exp(t) * (t - x)
        t_log_t = t * np.log(t)
        t_log_t[t == 0] = 0.0
        return t_log_t - t * x


def terms_and_magnitudes(x, t, log_target=False):
    """(L_i, m_i): the pointwise terms and the size of the pieces they cancel from.

    One pass shares the logarithm and the products between the two; m_i is what the error
    budget scales with (klconform.oracle.budget).
    """
    with np.errstate(all="ignore"):
        if log_target:
            p = np.exp(t)
            difference = t - x
            return p * difference, p * (np.abs(t) + np.abs(x))
        t_log_t = t * np.log(t)
        t_log_t[t == 0] = 0.0
        t_x = t * x
        terms = t_log_t - t_x
        np.abs(t_log_t, out=t_log_t)
        np.abs(t_x, out=t_x)
        t_log_t += t_x
        return terms, t_log_t


def divisor_for(reduction, shape):
    numel = math.prod(shape)
    if reduction == "mean":
        return numel
    if reduction == "batchmean":
        # size(0) of the input; a 0-d input has no batch dimension and is not divided.
        return shape[0] if len(shape) else 1
    return 1


def expected(x, t, *, reduction="mean", log_target=False, dtype="float64") -> Expected:
    x = np.asarray(x)
    t = np.asarray(t)
    if x.shape != t.shape:
        raise ValueError(f"oracle needs equal shapes, got {x.shape} and {t.shape}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"oracle has no reduction {reduction!r}")
    flat_x, flat_t = x.reshape(-1), t.reshape(-1)
    count = flat_x.size
    if reduction == "none":
        terms = np.empty(count, dtype=np.float64)
        mags = np.empty(count, dtype=np.float64)
    term_sums, abs_sums, mag_sums = [], [], []
    for start in range(0, count, CHUNK):
        chunk_x = flat_x[start:start + CHUNK].astype(np.float64)
        chunk_t = flat_t[start:start + CHUNK].astype(np.float64)
        chunk_terms, chunk_mags = terms_and_magnitudes(chunk_x, chunk_t, log_target)
        if reduction == "none":
            terms[start:start + CHUNK] = chunk_terms
            mags[start:start + CHUNK] = chunk_mags
        term_sums.append(float(np.sum(chunk_terms)))
        abs_sums.append(float(np.sum(np.abs(chunk_terms))))
        mag_sums.append(float(np.sum(chunk_mags)))
    magnitude_sum = _fsum(mag_sums)
    abs_term_sum = _fsum(abs_sums)
    if reduction == "none":
        terms = terms.reshape(x.shape)
        # The budget is written over the magnitudes (budget.element_budget, in place): a
        # vocabulary-sized 'none' call then holds two float64 arrays, not four.
        tolerance = budget.element_budget(mags, dtype, out=mags).reshape(x.shape)
        tolerance[~np.isfinite(terms)] = np.inf
        return Expected(terms, tolerance, reduction, 1, magnitude_sum, abs_term_sum)
    divisor = divisor_for(reduction, x.shape)
    with np.errstate(all="ignore"):
        value = np.float64(_fsum(term_sums)) / divisor
    tolerance = budget.reduced_budget(magnitude_sum, abs_term_sum, count, divisor, value, dtype)
    if not np.isfinite(value):
        tolerance = np.inf
    return Expected(np.asarray(value), np.asarray(tolerance), reduction, divisor,
                    magnitude_sum, abs_term_sum)


def _fsum(values):
    # math.fsum raises on inf - inf; a plain sum gives the IEEE answer (nan) there.
    if all(math.isfinite(v) for v in values):
        return math.fsum(values)
    return sum(values)


def cross_entropy_route(logits, t, *, reduction, dim=-1):
    """KL computed as cross-entropy of the logits minus the target's entropy.

    This route never sees the log-probabilities given to the implementation: it starts
    from the logits and uses log-sum-exp, so it checks the identity, not the oracle twice.
    """
    logits = np.asarray(logits, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    cross = t * log_softmax_deficit(logits, dim)
    with np.errstate(all="ignore"):
        cross[t == 0] = 0.0
        negative_entropy = t * np.log(t)
        negative_entropy[t == 0] = 0.0
    total = math.fsum(cross.ravel()) + math.fsum(negative_entropy.ravel())
    return total / divisor_for(reduction, t.shape)
