"""Error budgets: how far an implementation's value may be from the float64 oracle.

The budget is proportional to the unit roundoff u of the dtype under test times the
magnitude of what was computed, never times |result|: a KL value cancels toward 0 while
its pointwise pieces stay large, and the rounding error follows the pieces. spec/README.md
states the same rules for people.

  m_i  = |t_i log t_i| + |t_i x_i|           (log_target: e^{t_i} (|t_i| + |x_i|))
  elem = K_ELEM u m_i + K_ELEM u tiny         per pointwise term
  sum  = u (K_ELEM sum m_i + K_ACC(n) sum |L_i|) + n K_ELEM u tiny
  mean, batchmean: sum / divisor + 2 u |result|

K_ACC(n) = 4 + 2 sqrt(n) admits any reasonable summation order (pairwise, blocked, row by
row, sequential with statistically independent errors), while the float64 budget stays
~1e8 times below float32's unit roundoff, so float64 inputs computed in float32 fail.
"""

import math

import numpy as np

from klconform.dtypes import SMALLEST_NORMAL, UNIT_ROUNDOFF

K_ELEM = 8.0


def accumulation_factor(count: int) -> float:
    return 4.0 + 2.0 * math.sqrt(max(count, 1))


def element_budget(magnitudes, dtype, out=None):
    """Per-element budget for reduction='none' (numpy array in, numpy array out).

    With `out` (a float64 array, which may be `magnitudes` itself) no temporary is made.
    """
    u = UNIT_ROUNDOFF[dtype]
    if out is None:
        return K_ELEM * u * (magnitudes + SMALLEST_NORMAL[dtype])
    np.add(magnitudes, SMALLEST_NORMAL[dtype], out=out)
    np.multiply(out, K_ELEM * u, out=out)
    return out


def reduced_budget(magnitude_sum, abs_term_sum, count, divisor, result, dtype):
    u = UNIT_ROUNDOFF[dtype]
    floor = count * K_ELEM * u * SMALLEST_NORMAL[dtype]
    total = u * (K_ELEM * magnitude_sum + accumulation_factor(count) * abs_term_sum) + floor
    if divisor == 1:
        return total
    return total / divisor + 2.0 * u * abs(result)
