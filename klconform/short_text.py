"""Numbers, arrays and observed behaviour as short text for failure messages and reports."""

import numpy as np


def first_line(error):
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""


def first_index(mask):
    mask = np.asarray(mask)
    if mask.ndim == 0:
        return ()
    return tuple(int(i[0]) for i in np.nonzero(mask))


def where_text(index):
    return f"index {list(index)}" if index else "the result"


def at_text(index, array):
    return f" at index {list(index)}" if np.ndim(array) else ""


def format_number(value):
    value = float(value)
    if np.isnan(value) or np.isinf(value):
        return str(value)
    return f"{value:.10g}"


def summarize(values, limit=6):
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0:
        return format_number(values)
    flat = values.ravel()
    shown = ", ".join(format_number(v) for v in flat[:limit])
    more = f", ... ({flat.size} values)" if flat.size > limit else ""
    return f"array{list(values.shape)} [{shown}{more}]"


def describe_observed(observed):
    if "raises" in observed:
        return f"raises {observed['raises']}"
    text = f"returns {observed['value']} ({observed['dtype']}, shape {tuple(observed['shape'])})"
    if observed.get("warnings"):
        text += f", warns {observed['warnings'][0]}"
    else:
        text += ", no warning"
    if observed.get("gradient"):
        text += f"; gradient: {observed['gradient']}"
    return text
