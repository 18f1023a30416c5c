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

# The largest finite float16: larger values round to infinity.
FLOAT16_MAX = 65504.0

# Smallest positive normal number: below it relative error bounds stop holding.
SMALLEST_NORMAL = {
    "float16": 2.0**-14,
    "bfloat16": 2.0**-126,
    "float32": 2.0**-126,
    "float64": 2.0**-1022,
}


# Up to this many values, float16 rounding is numpy's own cast (the same bits: tests/test_oracle).
CAST_BELOW_SIZE = 128


def round_to(values, dtype):
    """Round float64 values to `dtype` (round-to-nearest-even) and return them as float64."""
    values = np.asarray(values, dtype=np.float64)
    if dtype == "float64":
        return values.copy()
    if dtype == "float32":
        return values.astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return _round_to_float16(values)
    if dtype == "bfloat16":
        return _round_to_bfloat16(values)
    raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")


def _round_to_float16(values):
    # numpy casts to float16 in software, and a float16 subnormal (below 6.1e-5: every
    # probability of a 128000-class softmax) costs it about 70 ns: 83 ms for a million.
    # The same rounding in float64 arithmetic, 10x faster: scale each value by a power of
    # two (exact) so that its float16 quantum is 1, round half to even, scale back. float16
    # keeps 11 significant bits; below its smallest normal, 2**-14, its quantum stays 2**-24.
    # Its eight array operations cost more than the cast on a small array (a call's plan
    # rounds a few dozen values, thousands of times a run).
    if values.size <= CAST_BELOW_SIZE:
        with np.errstate(over="ignore"):
            return values.astype(np.float16).astype(np.float64)
    _, exponent = np.frexp(values)       # |value| in [2**(exponent - 1), 2**exponent)
    shift = np.maximum(exponent, -13) - 11
    # Past 2**1024 the value rounds to infinity, as the cast does; NaN and infinity pass.
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = np.ldexp(np.rint(np.ldexp(values, -shift)), shift)
    return np.where(np.abs(rounded) > FLOAT16_MAX, np.copysign(np.inf, values), rounded)


def _round_to_bfloat16(values):
    # bfloat16 is float32 with the low 16 mantissa bits dropped. Rounding through float32
    # first can double-round, so the float32 step is exact only for values that are already
    # float32; this matches what frameworks do when casting float32 -> bfloat16.
    with np.errstate(over="ignore", invalid="ignore"):
        as32 = np.ascontiguousarray(values, dtype=np.float32)
    bits = as32.view(np.uint32)
    # Round half to even on the 16 bits dropped. Only a NaN's bits can wrap past 2**32
    # here, and every NaN is set again below.
    rounded = bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))
    rounded &= np.uint32(0xFFFF0000)
    result = rounded.view(np.float32).astype(np.float64)
    result[np.isnan(as32)] = np.nan
    return result.reshape(values.shape)
