"""The designed inputs: small float64 arrays on which every reading predicts a different answer.

Each probe is a pair of arrays at one rank, normalised along one axis (the last, and axis 1
from rank 3 on, so that a class axis at 1 shows), with both arguments as probabilities or as
log-probabilities: a function that validates its arguments accepts at least one pair. Where
the function takes a mask, a probe also says which rows count (some do not, from rank 2 on).
"""

from dataclasses import dataclass
from itertools import product

import numpy as np

from klconform.spec.conventions import Space

# One shape per rank; every axis a different size, so an axis or a divisor cannot hide.
RANK_SHAPES = {1: (5,), 2: (3, 5), 3: (2, 3, 5), 4: (2, 3, 4, 5)}
BASE_RANK = 2
PAIRS = tuple(product((Space.PROBABILITIES, Space.LOG_PROBABILITIES), repeat=2))


def normalised(shape, seed, offset, axis=-1):
    """Probability rows along `axis`, asymmetric and far from uniform."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.15, 1.0, size=shape) ** 3 + offset
    return raw / np.sum(raw, axis=axis, keepdims=True)


def kept_rows(shape, axis):
    """Which rows a probe's mask counts: every third dropped, so that some rows of every
    shape from rank 2 on are dropped and some kept."""
    rows = tuple(size for index, size in enumerate(shape) if index != axis % len(shape))
    count = int(np.prod(rows)) if rows else 1
    return (np.arange(count) % 3 != 2).reshape(rows)


@dataclass(frozen=True)
class Probe:
    """Two arrays handed to the function as its first and second positional arguments."""
    kind: tuple             # the space each array is normalised in
    first: np.ndarray
    second: np.ndarray
    axis: int = -1          # the axis its rows are normalised along
    kept: np.ndarray = None  # the rows its mask counts, where the call passes a mask

    @property
    def shape(self):
        return self.first.shape

    @property
    def rank(self):
        return self.first.ndim

    def describe(self):
        where = "" if self.axis == -1 else f", along axis {self.axis}"
        return (f"{'x'.join(map(str, self.shape)) or 'scalar'} "
                f"({self.kind[0]}, {self.kind[1]}{where})")


def probes_for(shape, axis=-1, masked=False):
    """The four space pairs at one shape."""
    first, second = normalised(shape, 11, 0.02, axis), normalised(shape, 23, 0.05, axis)
    kept = kept_rows(shape, axis) if masked and len(shape) else None
    return [Probe((a, b), np.log(first) if a == Space.LOG_PROBABILITIES else first,
                  np.log(second) if b == Space.LOG_PROBABILITIES else second, axis, kept)
            for a, b in PAIRS]


def probe_set(ranks=tuple(RANK_SHAPES), masked=False):
    """Every rank's probes, along the last axis and (rank 3 on) along axis 1."""
    found = []
    for rank in ranks:
        found += probes_for(RANK_SHAPES[rank], -1, masked)
        if rank >= 3:
            found += probes_for(RANK_SHAPES[rank], 1, masked)
    return found


def in_space(probabilities, space):
    """Probability rows written in `space` (logits: log-probabilities plus a constant)."""
    with np.errstate(divide="ignore"):
        if space == Space.PROBABILITIES:
            return probabilities
        return np.log(probabilities) + (0.7 if space == Space.LOGITS else 0.0)
