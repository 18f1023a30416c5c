"""Turns a case's tensor description into a float64 array.

A description is either explicit data (a number or nested lists, with the strings "inf",
"-inf" and "nan" for non-finite values) or one of a few declared constructors. Constructors
run in float64 here, never in the implementation under test.
"""

import numpy as np

NON_FINITE = {"inf": np.inf, "+inf": np.inf, "-inf": -np.inf, "nan": np.nan}

CONSTRUCTORS = ("log_of", "exp_of", "softmax_of", "log_softmax_of", "one_hot", "full",
                "seeded_normal")


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
            return float(item)
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
    except ValueError as error:
        raise TensorSpecError(
            path, f"ragged nested lists (rows of different lengths): {error}") from None


def _construct(description, path):
    names = [key for key in description if key in CONSTRUCTORS]
    if len(names) != 1:
        raise TensorSpecError(path, f"expected exactly one constructor of {CONSTRUCTORS}")
    name = names[0]
    where = f"{path}.{name}" if path else name
    if name == "one_hot":
        spec = description["one_hot"]
        indices = np.asarray(spec["indices"], dtype=np.int64)
        classes = int(spec["classes"])
        if indices.size and (indices.min() < 0 or indices.max() >= classes):
            raise TensorSpecError(where, f"index out of range for {classes} classes")
        return np.eye(classes, dtype=np.float64)[indices]
    if name == "seeded_normal":
        # Large data without megabytes of YAML: numpy's PCG64 stream is specified and stable
        # across numpy versions, so the values are reproducible wherever numpy runs.
        spec = description["seeded_normal"]
        generator = np.random.Generator(np.random.PCG64(spec["seed"]))
        draws = generator.standard_normal(tuple(spec["shape"]))
        return draws * spec.get("scale", 1.0) + spec.get("loc", 0.0)
    if name == "full":
        spec = description["full"]
        value = _explicit(spec["value"], f"{where}.value")
        return np.full(tuple(spec["shape"]), value, dtype=np.float64)
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
    shifted = logits - np.max(logits, axis=dim, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=dim, keepdims=True))
