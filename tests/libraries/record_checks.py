"""What every library test checks of its record: the canonical values and gradients the
record's convention produces, against klconform's float64 numpy reference."""

import numpy as np

from klconform.adapters import load_adapter
from klconform.adapters.base import Call
from klconform.adapters.numpy_reference import kl_div

# Two normalised rows of three classes: no entry near a clip, a zero or a subnormal.
TARGET = np.array([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]])
LOG_PREDICTION = np.log(np.array([[0.4, 0.4, 0.2], [0.3, 0.3, 0.4]]))


def canonical_value(record_name, reduction, log_target=False, dtype="float64"):
    target = np.log(TARGET) if log_target else TARGET
    observation = load_adapter(record_name).run(
        # log_target=False would be an explicit argument, which a library may not take.
        Call(LOG_PREDICTION, target, dtype=dtype, reduction=reduction,
             log_target=True if log_target else None))
    expected = kl_div(LOG_PREDICTION, target, reduction=reduction, log_target=log_target) \
        if reduction != "mean" else np.sum(kl_div(LOG_PREDICTION, target, reduction="none",
                                                 log_target=log_target)) / TARGET.size
    return observation, expected


def canonical_gradients(record_name, reduction, dtype="float64"):
    """(d/dinput, d/dtarget) through the record, and the analytic values (torch's formula)."""
    grad_input, grad_target = load_adapter(record_name).run_gradients(
        Call(LOG_PREDICTION, TARGET, dtype=dtype, reduction=reduction))
    scale = {"sum": 1.0, "batchmean": 1.0 / TARGET.shape[0], "mean": 1.0 / TARGET.size}
    scale = scale.get(reduction, 1.0)
    return (grad_input, grad_target), (-TARGET * scale,
                                       (np.log(TARGET) + 1 - LOG_PREDICTION) * scale)
