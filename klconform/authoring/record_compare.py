"""Whether two implementation records state the same convention.

Only the fields that decide how klconform calls the function and what it expects back are
compared: array type, argument order, spaces, the log-target form, the output or the
reductions (keyword, names and meanings, default), the class axis, the temperature, the mask,
the fixed keywords, which argument is detached, and autograd. Names, descriptions, ranks,
dtypes and deviations describe the library, not its convention.
"""

CONVENTION_FIELDS = ("arrays", "arguments", "spaces", "log_target", "output", "reduction",
                     "axis", "temperature", "mask", "call", "no_gradient", "autograd")


def convention_of(record):
    """The convention-defining part of a record (a dict, or an ImplementationRecord)."""
    data = getattr(record, "data", record)
    return {key: data.get(key) for key in CONVENTION_FIELDS if data.get(key) is not None}


def convention_differences(first, second):
    """["field: first's value != second's value", ...]; empty when equivalent."""
    a, b = convention_of(first), convention_of(second)
    return [f"{key}: {a.get(key)!r} != {b.get(key)!r}" for key in CONVENTION_FIELDS
            if a.get(key) != b.get(key)]
