"""Turns a case's tensor description into a float64 array.

A description is either explicit data (a number or nested lists, with the strings "inf",
"-inf" and "nan" for non-finite values) or one of a few declared constructors. Constructors
run in float64 here, never in the implementation under test.
"""

import math

import numpy as np

NON_FINITE = {"inf": np.inf, "+inf": np.inf, "-inf": -np.inf, "nan": np.nan}

CONSTRUCTORS = ("log_of", "exp_of", "softmax_of", "log_softmax_of", "one_hot", "full",
                "seeded_normal")

# Constructors turn a few bytes of YAML into arrays of any size; the largest real case has
# about a million elements, so this ceiling (128 MiB of float64) stops a typo or a hostile
# shape from exhausting memory while leaving ample room for larger vocabularies.
MAX_ELEMENTS = 1 << 24


class TensorSpecError(ValueError):
    """Raised with the path (inside the description) of what was wrong."""

    def __init__(self, path, message):
        self.path = path
        super().__init__(message)


def build(description, path=""):
    if isinstance(description, dict):
        return _construct(description, path)
    return _explicit(description, path)


def _explicit(data, path):
    def convert(item, where):
        if isinstance(item, bool):
            raise TensorSpecError(where, f"booleans are not tensor values (got {item!r})")
        if isinstance(item, (int, float)):
            try:
                return float(item)
            except OverflowError:
                raise TensorSpecError(
                    where, f"a {len(str(item))}-digit integer is too large for float64") from None
        if isinstance(item, str):
            if item.lower() in NON_FINITE:
                return NON_FINITE[item.lower()]
            raise TensorSpecError(where, f"string {item!r} is not a number, 'inf', '-inf' or 'nan'")
        if isinstance(item, list):
            return [convert(value, f"{where}[{index}]") for index, value in enumerate(item)]
        raise TensorSpecError(where, f"unexpected {type(item).__name__} in tensor data")

    converted = convert(data, path)
    try:
        return np.array(converted, dtype=np.float64)
    except ValueError:
        _raise_at_ragged_row(converted, path)
        raise


def _raise_at_ragged_row(data, path):
    """Names the first row whose shape differs from its first sibling's (numpy's own
    message gives no position)."""

    def shape_of(item, where):
        if not isinstance(item, list):
            return ()
        shapes = [shape_of(child, f"{where}[{index}]") for index, child in enumerate(item)]
        for index, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise TensorSpecError(
                    f"{where}[{index}]",
                    f"ragged nested lists: this row has shape {shape} but the first row "
                    f"beside it has shape {shapes[0]}")
        return (len(item), *(shapes[0] if shapes else ()))

    shape_of(data, path)


def _checked_shape(shape, where):
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise TensorSpecError(
            where, f"shape {list(shape)} has {count} elements; the limit is {MAX_ELEMENTS}")
    return tuple(shape)


def _scalar(value, where):
    return float(_explicit(value, where))


def _construct(description, path):
    names = [key for key in description if key in CONSTRUCTORS]
    if len(names) != 1:
        raise TensorSpecError(path, f"expected exactly one constructor of {CONSTRUCTORS}")
    name = names[0]
    where = f"{path}.{name}" if path else name
    if name == "one_hot":
        spec = description["one_hot"]
        classes = int(spec["classes"])
        # Checked on the Python ints, before numpy, which would overflow on a huge index.
        for position, index in enumerate(spec["indices"]):
            if not 0 <= index < classes:
                raise TensorSpecError(f"{where}.indices[{position}]",
                                      f"index {index} out of range for {classes} classes")
        _checked_shape((len(spec["indices"]), classes), where)
        indices = np.asarray(spec["indices"], dtype=np.int64)
        return np.eye(classes, dtype=np.float64)[indices]
    if name == "seeded_normal":
        # Large data without megabytes of YAML: numpy's PCG64 stream is specified and stable
        # across numpy versions, so the values are reproducible wherever numpy runs.
        spec = description["seeded_normal"]
        shape = _checked_shape(spec["shape"], f"{where}.shape")
        scale = _scalar(spec.get("scale", 1.0), f"{where}.scale")
        loc = _scalar(spec.get("loc", 0.0), f"{where}.loc")
        generator = np.random.Generator(np.random.PCG64(spec["seed"]))
        return generator.standard_normal(shape) * scale + loc
    if name == "full":
        spec = description["full"]
        shape = _checked_shape(spec["shape"], f"{where}.shape")
        return np.full(shape, _scalar(spec["value"], f"{where}.value"), dtype=np.float64)
    inner = build(description[name], where)
    if name == "log_of":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(inner)
    if name == "exp_of":
        return np.exp(inner)
    dim = description.get("dim", -1)
    if inner.ndim == 0 or not -inner.ndim <= dim < inner.ndim:
        raise TensorSpecError(f"{path}.dim", f"dim {dim} out of range for {inner.ndim}-d data")
    log_probs = _log_softmax(inner, dim)
    return log_probs if name == "log_softmax_of" else np.exp(log_probs)


def _log_softmax(logits, dim):
    return -log_softmax_deficit(logits, dim)


def log_softmax_deficit(logits, dim=-1):
    """-log_softmax(logits), accurate where one logit dominates.

    Written as (top - z) + log1p(sum of the others' exp(z - top)): the largest logit is
    never added in and subtracted again, which would cost u * |top| and, for a dominant
    class, more than the whole float64 budget of a KL near 0.
    """
    logits = np.asarray(logits, dtype=np.float64)
    top_index = np.argmax(logits, axis=dim, keepdims=True)
    top = np.take_along_axis(logits, top_index, axis=dim)
    others = np.exp(logits - top)
    np.put_along_axis(others, top_index, 0.0, axis=dim)
    return (top - logits) + np.log1p(np.sum(others, axis=dim, keepdims=True))

