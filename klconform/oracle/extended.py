"""Extended-precision (mpmath) evaluation for the worked examples.

The published numbers of the seed documents are checked against this, so a float64
rounding artefact in the oracle can never be mistaken for a wrong document or vice versa.
Small inputs only: it is a loop over elements.
"""

import mpmath
import numpy as np

from klconform.oracle.float64 import divisor_for

DIGITS = 40


def kl_value(x, t, *, reduction="mean", log_target=False):
    """KL at `DIGITS` significant digits; an mpf for reductions, an array of mpf for 'none'."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    with mpmath.workdps(DIGITS):
        terms = [_term(mpmath.mpf(float(a)), mpmath.mpf(float(b)), log_target)
                 for a, b in zip(x.ravel(), t.ravel(), strict=True)]
        if reduction == "none":
            return np.array(terms, dtype=object).reshape(x.shape)
        return mpmath.fsum(terms) / divisor_for(reduction, x.shape)


def _term(x, t, log_target):
    if log_target:
        return mpmath.exp(t) * (t - x)
    if t == 0:
        return mpmath.mpf(0)
    return t * (mpmath.log(t) - x)


def as_float64(value):
    if isinstance(value, np.ndarray):
        return np.vectorize(float, otypes=[np.float64])(value)
    return np.float64(float(value))
