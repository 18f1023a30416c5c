"""Floating dtypes by name, and rounding to them in numpy without any framework.

The oracle must see exactly the values an implementation sees, so inputs are rounded to the
dtype under test here (bfloat16 included, which numpy lacks) before both get them.
"""

import numpy as np

from klconform.constants import DTYPES

# Unit roundoff (half the machine epsilon) is the error of one correctly rounded operation.
UNIT_ROUNDOFF = {
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
    "float32": 2.0**-24,
    "float64": 2.0**-53,
}

# Smallest positive normal number: below it relative error bounds stop holding.
SMALLEST_NORMAL = {
    "float16": 2.0**-14,
    "bfloat16": 2.0**-126,
    "float32": 2.0**-126,
    "float64": 2.0**-1022,
}


def round_to(values, dtype):
    """Round float64 values to `dtype` (round-to-nearest-even) and return them as float64."""
    values = np.asarray(values, dtype=np.float64)
    if dtype == "float64":
        return values.copy()
    if dtype == "float32":
        return values.astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return values.astype(np.float16).astype(np.float64)
    if dtype == "bfloat16":
        return _round_to_bfloat16(values)
    raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")


def _round_to_bfloat16(values):
    # bfloat16 is float32 with the low 16 mantissa bits dropped. Rounding through float32
    # first can double-round, so the float32 step is exact only for values that are already
    # float32; this matches what frameworks do when casting float32 -> bfloat16.
    as32 = np.ascontiguousarray(values.astype(np.float32))
    bits = as32.view(np.uint32).astype(np.uint64)
    lsb = (bits >> 16) & 1
    rounded = ((bits + 0x7FFF + lsb) & 0xFFFF0000).astype(np.uint32)
    result = rounded.view(np.float32).astype(np.float64)
    nan = np.isnan(as32)
    result[nan] = np.nan
    return result.reshape(values.shape)
