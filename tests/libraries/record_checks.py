"""What every library test checks of its record: the canonical values and gradients the
record's convention produces, against the float64 reference of tests/libraries/reference.py
(its example: no entry near a clip, a zero or a subnormal)."""

import numpy as np

from klconform.adapters import load_adapter
from klconform.adapters.base import Call
from tests.libraries.reference import LOG_Q as LOG_PREDICTION
from tests.libraries.reference import P as TARGET
from tests.libraries.reference import canonical, gradients


def canonical_value(record_name, reduction, log_target=False, dtype="float64"):
    target = np.log(TARGET) if log_target else TARGET
    observation = load_adapter(record_name).run(
        # log_target=False would be an explicit argument, which a library may not take.
        Call(LOG_PREDICTION, target, dtype=dtype, reduction=reduction,
             log_target=True if log_target else None))
    return observation, canonical(reduction)


def canonical_gradients(record_name, reduction, dtype="float64"):
    """(d/dinput, d/dtarget) through the record, and the analytic values (torch's formula)."""
    observed = load_adapter(record_name).run_gradients(
        Call(LOG_PREDICTION, TARGET, dtype=dtype, reduction=reduction))
    return observed, gradients(reduction)
