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


def shape_of(description, path=""):
    """The shape `build` gives `description`, with every error `build` would raise, without
    computing a constructor's values: a case is checked when it loads and its arrays are
    built when it runs (a thorough-profile case's million elements, in a default run,
    never)."""
    if isinstance(description, dict):
        name, where = _constructor(description, path)
        spec = description[name]
        if name == "one_hot":
            indices, classes = _one_hot_checked(spec, where)
            return _checked_shape((len(indices), classes), where)
        if name in ("seeded_normal", "full"):
            shape = _checked_shape(spec["shape"], f"{where}.shape")
            for key in ("scale", "loc", "value"):
                if key in spec:
                    _scalar(spec[key], f"{where}.{key}")
            return shape
        inner = shape_of(spec, where)
        if name in ("softmax_of", "log_softmax_of"):
            _dim_checked(description, len(inner), path)
        return inner
    return _explicit(description, path).shape


def finite(description):
    """Whether every value `build` gives `description` is finite: a generated array that its
    description alone decides is never built."""
    return _known_finite(description) or bool(np.all(np.isfinite(build(description))))


# A standard normal draw is far below this in magnitude, and so is anything of which a
# (log-)softmax is taken here; a description beyond it is built to find out.
_MODERATE = 1e6


def _known_finite(description):
    """True where the description alone says its values are finite (and within _MODERATE
    for the generators); False where only its values can tell."""
    if not isinstance(description, dict):
        return False  # explicit data: checking its values costs what reading them cost
    name, _ = _constructor(description, "")
    spec = description[name]
    if name == "one_hot":
        return True
    if name == "seeded_normal":
        return abs(_scalar(spec.get("scale", 1.0), "")) <= _MODERATE \
            and abs(_scalar(spec.get("loc", 0.0), "")) <= _MODERATE
    if name in ("softmax_of", "log_softmax_of"):
        # Of finite logits within _MODERATE: probabilities in [0, 1], or log-probabilities
        # within twice that plus the log of the row's length.
        return _known_finite(spec)
    return False  # log_of, exp_of, full: their values decide


def _constructor(description, path):
    """(its constructor's name, the path inside it)."""
    names = [key for key in description if key in CONSTRUCTORS]
    if len(names) != 1:
        raise TensorSpecError(path, f"expected exactly one constructor of {CONSTRUCTORS}")
    name = names[0]
    return name, f"{path}.{name}" if path else name


def _one_hot_checked(spec, where):
    classes = int(spec["classes"])
    # Checked on the Python ints, before numpy, which would overflow on a huge index.
    for position, index in enumerate(spec["indices"]):
        if not 0 <= index < classes:
            raise TensorSpecError(f"{where}.indices[{position}]",
                                  f"index {index} out of range for {classes} classes")
    _checked_shape((len(spec["indices"]), classes), where)
    return spec["indices"], classes


def _dim_checked(description, ndim, path):
    dim = description.get("dim", -1)
    if ndim == 0 or not -ndim <= dim < ndim:
        raise TensorSpecError(f"{path}.dim", f"dim {dim} out of range for {ndim}-d data")
    return dim


def _construct(description, path):
    name, where = _constructor(description, path)
    if name == "one_hot":
        indices, classes = _one_hot_checked(description["one_hot"], where)
        return np.eye(classes, dtype=np.float64)[np.asarray(indices, dtype=np.int64)]
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
    log_probs = _log_softmax(inner, _dim_checked(description, inner.ndim, path))
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

