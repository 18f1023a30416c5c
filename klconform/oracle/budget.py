"""Error budgets: how far an implementation's value may be from the float64 oracle.

The budget is proportional to the unit roundoff u of the dtype under test times the
magnitude of what was computed, never times |result|: a KL value cancels toward 0 while
its pointwise pieces stay large, and the rounding error follows the pieces. spec/README.md
states the same rules for people.

  m_i  = |t_i log t_i| + |t_i x_i|           (log_target: e^{t_i} (|t_i| + |x_i|))
  elem = K_ELEM u m_i + K_ELEM u tiny         per pointwise term
  sum  = K_ELEM u sum m_i + gamma(n - 1) sum |L_i| + n K_ELEM u tiny
  mean, batchmean: sum / divisor + 2 u |result|

gamma(k) = k u / (1 - k u) is the rigorous worst-case bound of recursive summation of k + 1
terms in any order (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., eq. 4.4),
so every correct summation order passes: pairwise, blocked, row by row, and a sequential
float64 sum alike. It is capped at 1 (the bound is void once k u reaches 1/2: nothing finer
can be said at that precision). The float64 budget of a million terms is still about 1e-10
relative, 1e3 times below float32's unit roundoff, so float64 inputs computed in float32
fail. How much better than the worst case an implementation sums is the should-level claim
summation-accuracy, measured, not budgeted.

A conversion klconform makes for a library in another convention (log Q -> Q, P -> log P)
rounds once more in the dtype; conversion_budget() is what that rounding can move a term.
"""


import numpy as np

from klconform.dtypes import SMALLEST_NORMAL, UNIT_ROUNDOFF

K_ELEM = 8.0


def accumulation_bound(count: int, u: float) -> float:
    """gamma(count - 1): the relative bound of summing `count` terms recursively."""
    k = max(count - 1, 0) * u
    return k / (1.0 - k) if k < 0.5 else 1.0


def element_budget(magnitudes, dtype, out=None, scale=1.0):
    """Per-element budget for reduction='none' (numpy array in, numpy array out), times
    `scale` (a storage widening, see klconform.oracle.float64).

    With `out` (a float64 array, which may be `magnitudes` itself) no temporary is made.
    """
    u = UNIT_ROUNDOFF[dtype]
    if out is None:
        return K_ELEM * u * scale * (magnitudes + SMALLEST_NORMAL[dtype])
    np.add(magnitudes, SMALLEST_NORMAL[dtype], out=out)
    np.multiply(out, K_ELEM * u * scale, out=out)
    return out


def reduced_budget(magnitude_sum, abs_term_sum, count, divisor, result, dtype):
    u = UNIT_ROUNDOFF[dtype]
    floor = count * K_ELEM * u * SMALLEST_NORMAL[dtype]
    total = u * K_ELEM * magnitude_sum + accumulation_bound(count, u) * abs_term_sum + floor
    if divisor == 1:
        return total
    return total / divisor + 2.0 * u * abs(result)


def conversion_budget(x, t, log_target, conversions, dtype):
    """Per-term absolute error that klconform's own conversions add, before rounding.

    Q = fl(exp(x)) is exp(x)(1 + d), |d| <= u: a term t (log t - log Q) moves by |t| u.
    log P rounded is log P + e, |e| <= u |log P|: the term e^lp (lp - x) moves by
    |t| u |log t| (|log t - x| + 1). Where the converted value is not a normal number of
    the dtype the relative bound does not hold, and nothing can be promised (inf).
    """
    u, tiny = UNIT_ROUNDOFF[dtype], SMALLEST_NORMAL[dtype]
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    extra = np.zeros(np.broadcast(x, t).shape)
    with np.errstate(all="ignore"):
        p = np.exp(t) if log_target else t
        for conversion in conversions:
            if conversion.startswith("prediction"):
                q = np.exp(x)
                extra = extra + np.where(q >= tiny, np.abs(p) * u, np.where(p == 0, 0.0, np.inf))
            elif conversion.startswith("target"):
                log_p = np.log(p)
                bound = np.abs(p) * u * np.abs(log_p) * (np.abs(log_p - x) + 1.0)
                extra = extra + np.where(p == 0, 0.0, np.where(p >= tiny, bound, np.inf))
    return extra


def _row_sums(values):
    """Sums along the last (class) axis, kept for broadcasting over the row."""
    if np.ndim(values) == 0:
        return values
    return np.sum(values, axis=-1, keepdims=True)


def log_softmax_error(log_probabilities, u):
    """Absolute error bound of each log-probability a function computes as log_softmax of
    logits in precision u: the subtraction of the row maximum, the exponentials, their sum
    over C classes and the logarithm (see spec/README.md)."""
    x = np.where(np.isfinite(log_probabilities), log_probabilities, 0.0)
    if np.ndim(x) == 0:
        return K_ELEM * u * (np.abs(x) + 1.0)
    q = np.exp(x)
    width = x.shape[-1]
    spread = np.abs(np.max(x, axis=-1, keepdims=True))
    return K_ELEM * u * (np.abs(x) + 3.0 * spread + _row_sums(q * np.abs(x)) + 1.0) \
        + accumulation_bound(width, u)


def normalisation_budget(x, t, log_target, normalised, dtype):
    """Per-term error a function adds by normalising its own logits arguments: the terms of
    p (log p - log q) with log q (prediction) or p and log p (target) carrying the error of
    the function's log_softmax / softmax."""
    u = UNIT_ROUNDOFF[dtype]
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    extra = np.zeros(np.broadcast(x, t).shape)
    with np.errstate(all="ignore"):
        p = np.exp(t) if log_target else t
        log_p = t if log_target else np.log(t)
        weight = np.where(p > 0, np.abs(p), 0.0)
        if "input" in normalised:
            extra = extra + weight * log_softmax_error(x, u)
        if "target" in normalised:
            spread = np.where(p > 0, np.abs(log_p - x), 0.0)
            extra = extra + weight * log_softmax_error(np.where(p > 0, log_p, -np.inf), u) \
                * (spread + 1.0)
    return np.where(np.isfinite(extra), extra, np.inf)


def temperature_budget(x, t, log_target, arguments, dtype):
    """Per-term error of logits klconform scaled by a temperature that is not a power of two
    (T x rounded once): each log-probability the function recovers moves by about u times
    |x| and the row's shift."""
    u = UNIT_ROUNDOFF[dtype]
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(all="ignore"):
        p = np.exp(t) if log_target else t
        log_p = np.where(p > 0, t if log_target else np.log(np.where(p > 0, p, 1.0)), 0.0)
        weight = np.where(p > 0, np.abs(p), 0.0)
        finite_x = np.where(np.isfinite(x), x, 0.0)
        extra = np.zeros(np.broadcast(x, t).shape)
        if "input" in arguments:
            shift = _row_sums(np.exp(finite_x) * np.abs(finite_x))
            extra = extra + 2.0 * u * weight * (np.abs(finite_x) + shift)
        if "target" in arguments:
            shift = _row_sums(weight * np.abs(log_p))
            extra = extra + 2.0 * u * weight * (np.abs(log_p) + shift) \
                * (np.abs(log_p - finite_x) + 1.0)
    return extra
