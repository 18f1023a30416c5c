"""The independent float64 oracle. It never calls the implementation under test.

Work is done in fixed-size chunks so that extra memory stays bounded however large the
input (large-vocabulary rows reach millions of elements), while each chunk is vectorised.
"""

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from klconform.constants import REDUCTIONS
from klconform.dtypes import UNIT_ROUNDOFF
from klconform.machine import openmp_threads
from klconform.oracle import budget
from klconform.spec.tensors import log_softmax_deficit

CHUNK = 1 << 17
# float16 and bfloat16 (unit roundoff 2**-11 and 2**-8): their elementwise expectations are
# stored in float32 (see _ChunkedTerms).
HALF_PRECISION_ROUNDOFF = 2.0 ** -11
# Values and budgets below this cannot overflow float32 once widened for their rounding.
FLOAT32_SAFE = 2.0 ** 126
# The implementation under test uses the threads OpenMP is given, every core unless told
# (torch does); so does the oracle, chunk-wise. Chunks are summed in order whatever their
# number of threads, so the answer does not depend on it.
ORACLE_THREADS = min(4, openmp_threads())


@dataclass(frozen=True)
class Expected:
    # float64 (float32 for a float16 or bfloat16 'none' call, its rounding in the budget);
    # shape () for reductions, the input's shape for 'none'
    value: np.ndarray
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
        # An array even for 0-d inputs, where numpy's product is a scalar that the masked
        # assignment below cannot write to.
        t_log_t = np.asarray(t * np.log(t))
        t_log_t[t == 0] = 0.0
        return t_log_t - t * x


def terms_and_magnitudes(x, t, log_target=False, terms=None):
    """(L_i, m_i): the pointwise terms and the size of the pieces they cancel from.

    One pass shares the logarithm and the products between the two; m_i is what the error
    budget scales with (klconform.oracle.budget). `terms`, if given, receives L_i; x and t
    (float64) are left as they were.
    """
    with np.errstate(all="ignore"):
        if log_target:
            p = np.exp(t)
            terms = np.subtract(t, x, out=terms)
            terms *= p
            magnitudes = np.abs(t)
            magnitudes += np.abs(x)
            magnitudes *= p
            return terms, magnitudes
        t_log_t = np.log(t)
        t_log_t *= t
        np.copyto(t_log_t, 0.0, where=t == 0)
        t_x = np.multiply(t, x)
        terms = np.subtract(t_log_t, t_x, out=terms)
        np.abs(t_log_t, out=t_log_t)
        np.abs(t_x, out=t_x)
        t_log_t += t_x
        # t log(t / q) rounds the quotient: |t| u more than t (log t - log q) can.
        t_log_t += np.abs(t)
        return terms, t_log_t


def divisor_for(reduction, shape):
    numel = math.prod(shape)
    if reduction == "mean":
        return numel
    if reduction == "batchmean":
        # size(0) of the input; a 0-d input has no batch dimension and is not divided.
        return shape[0] if len(shape) else 1
    return 1


def expected(x, t, *, reduction="mean", log_target=False, dtype="float64",
             mask=None) -> Expected:
    """`mask` (the shape without the last, class axis; True: the row counts): masked rows
    contribute nothing, to the value or to the budget; divisors stay those of the shape."""
    x = np.asarray(x)
    t = np.asarray(t)
    if x.shape != t.shape:
        raise ValueError(f"oracle needs equal shapes, got {x.shape} and {t.shape}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"oracle has no reduction {reduction!r}")
    if mask is not None:
        return _masked(x, t, reduction, log_target, dtype, np.asarray(mask, dtype=bool))
    flat_x, flat_t = x.reshape(-1), t.reshape(-1)
    if reduction == "none":
        storage = np.float32 if UNIT_ROUNDOFF[dtype] >= HALF_PRECISION_ROUNDOFF else np.float64
        chunks = _ChunkedTerms(flat_x, flat_t, log_target, dtype, storage)
        if chunks.overflowed:
            chunks = _ChunkedTerms(flat_x, flat_t, log_target, dtype, np.float64)
        return Expected(chunks.values.reshape(x.shape), chunks.tolerance.reshape(x.shape),
                        reduction, 1, chunks.magnitude_sum, chunks.abs_term_sum)
    chunks = _ChunkedTerms(flat_x, flat_t, log_target, dtype, None)
    divisor = divisor_for(reduction, x.shape)
    with np.errstate(all="ignore"):
        value = np.float64(chunks.term_sum) / divisor
    tolerance = budget.reduced_budget(chunks.magnitude_sum, chunks.abs_term_sum, flat_x.size,
                                      divisor, value, dtype)
    if not np.isfinite(value):
        tolerance = np.inf
    return Expected(np.asarray(value), np.asarray(tolerance), reduction, divisor,
                    chunks.magnitude_sum, chunks.abs_term_sum)


def _masked(x, t, reduction, log_target, dtype, mask):
    keep = np.broadcast_to(mask[..., None], x.shape) if x.ndim else np.asarray(bool(mask))
    counted = expected(x[keep], t[keep], reduction="sum", log_target=log_target, dtype=dtype)
    if reduction == "none":
        full = expected(x, t, reduction="none", log_target=log_target, dtype=dtype)
        return Expected(np.where(keep, full.value, 0.0).astype(full.value.dtype),
                        np.where(keep, full.budget, 0.0).astype(full.budget.dtype), reduction,
                        1, counted.magnitude_sum, counted.abs_term_sum)
    divisor = divisor_for(reduction, x.shape)
    with np.errstate(all="ignore"):
        value = np.float64(counted.value) / divisor
    tolerance = budget.reduced_budget(counted.magnitude_sum, counted.abs_term_sum,
                                      int(np.sum(keep)), divisor, value, dtype)
    if not np.isfinite(value):
        tolerance = np.inf
    return Expected(np.asarray(value), np.asarray(tolerance), reduction, divisor,
                    counted.magnitude_sum, counted.abs_term_sum)


class _ChunkedTerms:
    """The terms of flat inputs, chunk by chunk on a few threads (numpy releases the GIL in
    its loops), with the three sums the budgets need and, given a storage dtype, the
    elementwise values and budgets written straight into arrays of that dtype.

    A half-precision dtype's values and budgets are kept in float32: the float32 rounding
    of each value (2**16 times finer than the dtype's own) is added to its budget and the
    budget rounded upward, so no comparison is tighter than in float64, and a vocabulary-
    sized 'none' call holds 8 bytes per element, not 16. A finite term beyond float32's range
    sets `overflowed` and the caller keeps float64 instead.
    """

    def __init__(self, flat_x, flat_t, log_target, dtype, storage):
        self.flat_x, self.flat_t = flat_x, flat_t
        self.log_target, self.dtype, self.storage = log_target, dtype, storage
        count = flat_x.size
        if storage is not None:
            self.values = np.empty(count, dtype=storage)
            self.tolerance = np.empty(count, dtype=storage)
        self.overflowed = False
        starts = range(0, count, CHUNK)
        sums = list(_map_chunks(self._chunk, starts))
        self.term_sum = _fsum([s[0] for s in sums])
        self.abs_term_sum = _fsum([s[1] for s in sums])
        self.magnitude_sum = _fsum([s[2] for s in sums])

    def _chunk(self, start):
        stop = start + CHUNK
        chunk_x = np.asarray(self.flat_x[start:stop], dtype=np.float64)
        chunk_t = np.asarray(self.flat_t[start:stop], dtype=np.float64)
        in_place = self.storage is np.float64
        terms, magnitudes = terms_and_magnitudes(
            chunk_x, chunk_t, self.log_target,
            terms=self.values[start:stop] if in_place else None)
        absolute_terms = np.abs(terms)
        sums = (float(np.sum(terms)), float(np.sum(absolute_terms)), float(np.sum(magnitudes)))
        if self.storage is None:
            return sums
        # Finite sums mean every term and magnitude is finite: no element needs a look.
        all_finite = math.isfinite(sums[1]) and math.isfinite(sums[2])
        if in_place:
            tolerance = budget.element_budget(magnitudes, self.dtype,
                                              out=self.tolerance[start:stop])
        else:
            # The float32 rounding of a value moves it by at most 2**-24 of itself (2**-150
            # below float32's normal range); the budget is then widened by 2**-22 of itself
            # and the smallest float32 subnormal so that rounding it to float32 cannot make it
            # smaller.
            widen = 1.0 + 2.0 ** -22
            tolerance = budget.element_budget(magnitudes, self.dtype, out=magnitudes,
                                              scale=widen)
            with np.errstate(invalid="ignore"):
                storage_error = np.multiply(absolute_terms, 2.0 ** -24 * widen,
                                            out=absolute_terms)
                storage_error += 2.0 ** -148
                tolerance += storage_error
            fits = all_finite and sums[1] < FLOAT32_SAFE and float(np.max(tolerance)) \
                < FLOAT32_SAFE
            if not fits and self._overflows_float32(terms, tolerance):
                self.overflowed = True
                return sums
            self.values[start:stop] = terms
        if not all_finite:
            tolerance[~np.isfinite(terms)] = np.inf
        if not in_place:
            self.tolerance[start:stop] = tolerance
        return sums


    @staticmethod
    def _overflows_float32(terms, tolerance):
        finite = np.isfinite(terms)
        with np.errstate(over="ignore", invalid="ignore"):
            return bool(np.any(finite & (np.isinf(terms.astype(np.float32))
                                         | np.isinf(tolerance.astype(np.float32)))))


# Below this many elements a call is one or two chunks: threads would only add overhead.
THREADED_FROM = 4 * CHUNK
_pool = None


def _map_chunks(function, starts):
    """function over the chunk starts, in order; on a few threads for large inputs."""
    global _pool
    if len(starts) * CHUNK < THREADED_FROM or ORACLE_THREADS < 2:
        return map(function, starts)
    if _pool is None:
        _pool = ThreadPoolExecutor(ORACLE_THREADS, thread_name_prefix="klconform-oracle")
    return _pool.map(function, starts)


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
