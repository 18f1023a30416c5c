"""Where a canonical call's arrays go in a distillation loss's own form.

klconform's cases keep the class axis last and rank as they come. A training repository's
loss often wants the class axis at 1 ((N, C, H, W) feature maps, (N, C) logits) or only
(batch, seq, vocab) inputs, takes a temperature, and a mask as labels with an ignore index
or as a boolean attention mask. This module maps the canonical arrays onto that form and the
function's outputs back, so every case runs on such a loss with the same values: the
mapping only moves and relabels, and every value the function returns is its own.
"""

import math
from dataclasses import dataclass

import numpy as np

LABEL_IGNORE_INDEX = -100


@dataclass(frozen=True)
class NativeForm:
    """Lifting by leading axes of size 1, then the class axis moved to `axis`."""

    canonical_shape: tuple
    lifted: int            # leading axes of size 1 added for a loss that needs a higher rank
    axis: int              # class axis position in the native arrays (non-negative)

    @property
    def native_shape(self):
        shape = (1,) * self.lifted + tuple(self.canonical_shape)
        if not shape:
            return shape
        moved = list(shape[:-1])
        moved.insert(self.axis, shape[-1])
        return tuple(moved)

    @property
    def identity(self):
        return not self.lifted and self.axis == max(len(self.canonical_shape) - 1, 0)

    def to_native(self, values):
        """An argument in the native form (an argument of another shape, as a broadcasting
        probe passes, is lifted and moved the same way where it can be)."""
        values = np.asarray(values)
        if self.identity:
            return values
        values = values.reshape((1,) * self.lifted + values.shape)
        return np.moveaxis(values, -1, self.axis) if values.ndim > self.axis else values

    def elementwise_back(self, values):
        """An elementwise output back in the canonical form; one of another shape is left as
        it is, for the shape check to report."""
        values = np.asarray(values)
        if self.identity or values.shape != self.native_shape:
            return values
        return np.moveaxis(values, self.axis, -1).reshape(self.canonical_shape)

    def rows_back(self, values):
        """Per-row output (no class axis) back to the canonical rows' shape."""
        return np.asarray(values).reshape(tuple(self.canonical_shape)[:-1])

    def mask_to_native(self, mask):
        """A canonical mask (the shape without the class axis) for the lifted arrays; the
        other axes keep their order when the class axis moves."""
        rows = (1,) * self.lifted + tuple(self.canonical_shape)[:-1]
        return np.asarray(mask, dtype=bool).reshape(rows)


# A loss whose lowest rank is this or more ((batch, seq, vocab), (N, C, H, W)) gets the
# suite's mostly 2-D cases lifted; a lower minimum is a limit the record declares.
LIFTED_FROM_RANK = 3


def lowest_rank(record):
    """The lowest rank of the arrays the function takes, as its record says."""
    axis = record.class_axis
    return max((record.ranks or {}).get("min", 0), axis + 1 if axis >= 0 else 0)


def rank_range(record):
    """(min, max) canonical rank that can be called: lifting lets a (batch, seq, vocab)-only
    loss take every rank from 1."""
    lowest = lowest_rank(record)
    return (1 if lowest >= LIFTED_FROM_RANK else lowest, (record.ranks or {}).get("max"))


def native_form(record, shape):
    """The NativeForm of `record` for canonical arrays of `shape`; None if the loss cannot
    take them (a rank outside what the record declares)."""
    rank = len(shape)
    low, high = rank_range(record)
    if rank < low or (high is not None and rank > high):
        return None
    lifted = max(0, lowest_rank(record) - rank)
    native_rank = rank + lifted
    axis = record.class_axis
    if native_rank == 0:
        return NativeForm(tuple(shape), 0, 0)
    return NativeForm(tuple(shape), lifted, axis % native_rank)


def mask_argument(spec, mask, dtype):
    """(numpy values, array dtype name) a record's mask keyword (its `mask:` field, `spec`)
    is given for a canonical mask (True: the position counts)."""
    if spec["style"] == "labels":
        # A counted position gets class 0: a valid index for any vocabulary.
        labels = np.where(mask, 0, spec.get("ignore_index", LABEL_IGNORE_INDEX))
        return labels.astype(np.int64), "int64"
    flags = mask if spec["style"] == "keep" else ~mask
    kind = spec.get("dtype", "bool")
    return flags.astype(np.float64), {"bool": "bool", "int64": "int64", "float": dtype}[kind]


@dataclass(frozen=True)
class Temperature:
    value: float | None     # None: the loss has no temperature
    scale: float            # what the value is multiplied by (T**2 where declared)
    unsupported: str | None = None

    @property
    def exact(self):
        """Scaling logits by a power of two is exact in every binary float format."""
        if self.value is None:
            return True
        mantissa, _ = math.frexp(self.value)
        return mantissa == 0.5


def temperature_for(record, requested):
    """The temperature a canonical call runs at: the requested one where the loss takes a
    keyword (1 when none is requested), its fixed one otherwise."""
    spec = record.temperature
    if not spec:
        if requested not in (None, 1.0):
            return Temperature(None, 1.0, f"a temperature (T = {requested:g}; its record "
                                          f"declares none)")
        return Temperature(None, 1.0)
    if "keyword" in spec:
        value = 1.0 if requested is None else float(requested)
    else:
        value = float(spec["value"])
        if requested is not None and float(requested) != value:
            return Temperature(None, 1.0, f"T = {requested:g} (its temperature is fixed at "
                                          f"{value:g})")
    return Temperature(value, value * value if spec["scaled"] else 1.0)
