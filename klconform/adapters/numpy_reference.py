"""A clean-room numpy implementation of torch's kl_div semantics.

Written from the documented formula, not from torch's source: it is the second
implementation that shows the suite is about semantics, not about agreeing with torch.
It computes in the dtype it is given (float16, float32 or float64).
"""

import warnings

import numpy as np

# Stated here, not imported: this module stands for third-party code written from the docs.
REDUCTIONS = ("none", "mean", "sum", "batchmean")


class MeanReductionWarning(UserWarning):
    """'mean' divides by every element, so it is not the KL value."""


def kl_div(input, target, reduction="mean", log_target=False):
    input = np.asarray(input)
    target = np.asarray(target)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    dtype = np.result_type(input, target)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"kl_div needs floating inputs, got {input.dtype} and {target.dtype}")
    input, target = np.broadcast_arrays(input.astype(dtype), target.astype(dtype))
    with np.errstate(all="ignore"):
        if log_target:
            terms = np.exp(target) * (target - input)
        else:
            # 0 * log 0 is 0 by continuity; 0 * x stays in so NaN and inf still propagate.
            entropy_part = np.where(target == 0, dtype.type(0), target * np.log(target))
            terms = entropy_part - target * input
    if reduction == "none":
        return terms
    if reduction == "mean":
        warnings.warn(
            "reduction='mean' divides by the number of elements, not the batch size; "
            "use 'batchmean' for the KL divergence", MeanReductionWarning, stacklevel=2)
    total = terms.sum(dtype=dtype)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / dtype.type(terms.size) if terms.size else dtype.type(np.nan)
    batch = input.shape[0] if input.ndim else 1
    return total / dtype.type(batch) if batch else dtype.type(np.nan)
