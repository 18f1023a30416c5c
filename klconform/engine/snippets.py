"""Copy-paste snippets that reproduce a failing call outside pytest."""

import numpy as np

INLINE_LIMIT = 64


def numpy_literal(values):
    """Exact source for a float64 array: every float64 repr round-trips."""
    values = np.asarray(values, dtype=np.float64)

    def item(value):
        if np.isnan(value):
            return "nan"
        if np.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(float(value))

    def listed(array):
        if array.ndim == 0:
            return item(array)
        return "[" + ", ".join(listed(row) for row in array) + "]"

    text = listed(values)
    if values.ndim and values.size == 0:
        text = f"np.empty({values.shape})"
        return text
    return f"np.array({text}, dtype=np.float64)"


def preamble(call, case_id=None):
    """Lines defining input_values / target_values for an adapter's snippet."""
    lines = ["import numpy as np", "from numpy import inf, nan"]
    if case_id and max(call.input.size, call.target.size) > INLINE_LIMIT:
        lines += [
            "from klconform.engine.snippets import case_values",
            f"input_values, target_values = case_values({case_id!r}, {call.dtype!r})",
        ]
    else:
        lines += [f"input_values = {numpy_literal(call.input)}",
                  f"target_values = {numpy_literal(call.target)}"]
    return "\n".join(lines) + "\n"


def snippet(adapter, call, case_id=None):
    return preamble(call, case_id) + adapter.snippet(call)


def case_values(case_id, dtype, cases_dir=None):
    """The exact (input, target) values a case gives an implementation at `dtype`."""
    from klconform.dtypes import round_to
    from klconform.spec.cases import load_cases

    for case in load_cases(cases_dir):
        if case.id == case_id:
            x, t = case.arrays
            return round_to(x, dtype), round_to(t, dtype)
    raise KeyError(f"no case with id {case_id!r}")
