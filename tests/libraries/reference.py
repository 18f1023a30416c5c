"""A small example and the float64 numpy KL every library test compares against."""

import numpy as np

# Two normalised rows: truth P and prediction Q.
P = np.array([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]])
Q = np.array([[0.4, 0.4, 0.2], [0.3, 0.3, 0.4]])
LOG_Q = np.log(Q)


def pointwise(target, log_prediction):
    """torch's terms t (log t - x), with 0 where t == 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(target == 0, 0.0, target * (np.log(target) - log_prediction))


def canonical(reduction, target=P, log_prediction=LOG_Q):
    terms = pointwise(target, log_prediction)
    return {"none": terms, "sum": terms.sum(), "mean": terms.mean(),
            "batchmean": terms.sum() / terms.shape[0]}[reduction]


def gradients(reduction, target=P, log_prediction=LOG_Q):
    """The claims' d/dinput and d/dtarget of the canonical reduction."""
    scale = {"sum": 1.0, "mean": 1.0 / target.size, "batchmean": 1.0 / target.shape[0]}[
        reduction]
    return -target * scale, (np.log(target) + 1 - log_prediction) * scale
