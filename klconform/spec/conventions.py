"""Implementation records: a KL implementation and the convention it follows, as data.

A record says how to reach the function (MODULE:ATTR, a loss class, or an adapter class),
which positional argument is the prediction and which the target, the space each is in,
what its reductions compute, its dtypes and its autograd. It is validated against
spec/implementation.schema.json; the built-in records live in klconform/adapters/records/
and `--convention FILE` takes the same format.

The canonical convention of the claims is torch's: input = log Q, target = P (log P with
log_target), reductions none / sum / mean / batchmean. What each reduction name computes is
a *meaning*; a native name keeps whatever meaning the record gives it, and a canonical
reduction is realised by any native one with the same divisor on the shape at hand.
"""

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import yaml

from klconform.constants import DTYPES
from klconform.errors import SpecError
from klconform.spec.claims import dotted_path, load_schema, validation_error
from klconform.spec.yaml_loader import read_yaml

_SCHEMA = load_schema("implementation.schema.json")
# The schema is where the words are defined; the enums only give them Python names.
Space = StrEnum("Space", {value.upper().replace("-", "_"): value
                          for value in _SCHEMA["$defs"]["space"]["enum"]})
Role = StrEnum("Role", {value.upper(): value
                        for value in _SCHEMA["properties"]["arguments"]["items"]["enum"]})
Meaning = StrEnum("Meaning", {value.upper().replace("-", "_"): value
                              for value in _SCHEMA["$defs"]["meaning"]["enum"]})
# The record's fields in the schema's order: the order a record is written in.
FIELDS = tuple(_SCHEMA["properties"])

# What each canonical reduction computes.
CANONICAL_MEANING = {"none": Meaning.ELEMENTWISE, "sum": Meaning.SUM,
                     "mean": Meaning.MEAN_ELEMENTS, "batchmean": Meaning.MEAN_BATCH}
SCALAR_MEANINGS = (Meaning.SUM, Meaning.MEAN_ELEMENTS, Meaning.MEAN_ROWS, Meaning.MEAN_BATCH)
MEANING_TEXT = {
    Meaning.ELEMENTWISE: "elementwise terms", Meaning.ROWS: "one sum per row",
    Meaning.SUM: "the total", Meaning.MEAN_ELEMENTS: "the total / number of elements",
    Meaning.MEAN_ROWS: "the total / number of rows", Meaning.MEAN_BATCH: "the total / size(0)",
}
# The "name" of the native reduction of a function that takes no reduction argument.
NO_ARGUMENT = "(no reduction argument)"
# The array libraries whose functions a record may ask to have called compiled (`jit`).
JIT_ARRAYS = ("jax",)


def divisor(meaning, shape, axis=-1, kept_rows=None):
    """What a scalar meaning divides the total by, for an input of `shape` whose class axis is
    `axis`.

    Rows are positions along every axis but the class axis; `kept_rows` is how many of them a
    mask counts (None: all). A 0-d input is one row of one element and has no batch dimension.
    """
    numel = math.prod(shape)
    if meaning == "mean-elements":
        return numel
    if meaning == "mean-rows":
        if kept_rows is not None:
            return kept_rows
        if not len(shape):
            return 1
        class_axis = axis % len(shape)
        return math.prod(size for index, size in enumerate(shape) if index != class_axis)
    if meaning == "mean-batch":
        return shape[0] if len(shape) else 1
    return 1


@dataclass(frozen=True)
class ImplementationRecord:
    """A validated record. Every schema field is a property (None where the record leaves it
    out); a field the schema does not have is an AttributeError, not a silent None."""
    name: str
    description: str
    data: dict = field(repr=False)          # the validated document, as written
    source: str = "built-in"                 # the file it came from

    # Read on every call's plan (a run plans thousands): each typed field is worked out once
    # per record, and handed out read-only, since every plan shares it.
    def __getstate__(self):
        return {name: self.__dict__[name] for name in ("name", "description", "data", "source")}

    @cached_property
    def arguments(self):
        """The roles of the first and second positional arguments."""
        return tuple(Role(role) for role in self.data["arguments"]) \
            if self.data.get("arguments") else None

    @cached_property
    def spaces(self):
        spaces = self.data.get("spaces")
        return MappingProxyType({Role(role): Space(space) for role, space in spaces.items()}) \
            if spaces else None

    @cached_property
    def output(self):
        return Meaning(self.data["output"]) if self.data.get("output") else None

    @cached_property
    def dtypes_by_device(self):
        return MappingProxyType({device: tuple(dtypes) for device, dtypes in (
            self.data.get("dtypes") or {"cpu": list(DTYPES)}).items()})

    @cached_property
    def reduction_names(self):
        return MappingProxyType(dict((self.data.get("reduction") or {}).get("names") or {}))

    @cached_property
    def native_meanings(self):
        """Native reduction name -> meaning; NO_ARGUMENT for a function without a reduction
        argument (its one output)."""
        if self.data.get("reduction"):
            return self.reduction_names
        return MappingProxyType(
            {NO_ARGUMENT: self.data["output"]} if self.data.get("output") else {})

    @property
    def default_meaning(self):
        """What a call without a reduction argument computes."""
        reduction = self.data.get("reduction")
        if reduction:
            default = reduction.get("default")
            return reduction["names"].get(default) if default else None
        return self.data.get("output")

    def native_for(self, canonical, shape, native_shape=None, kept_rows=None):
        """The native reduction name that computes the canonical reduction on `shape`.

        A scalar meaning qualifies where its divisor on the arrays the function is given
        (`native_shape`, its class axis, `kept_rows` counted by a mask) is the canonical one's:
        on a 2-D input the mean over rows is the mean over size(0), on a lifted (1, N, C) input
        the mean over size(0) is the sum. Exact meaning first. None if there is none.
        """
        wanted = CANONICAL_MEANING[canonical]
        names = self.native_meanings
        if wanted not in SCALAR_MEANINGS:
            return next((name for name, meaning in names.items() if meaning == wanted), None)
        native_shape = tuple(shape) if native_shape is None else tuple(native_shape)
        target = divisor(wanted, shape)
        candidates = sorted(names.items(), key=lambda item: item[1] != wanted)
        for name, meaning in candidates:
            if meaning in SCALAR_MEANINGS and divisor(
                    meaning, native_shape, self.class_axis, kept_rows) == target:
                return name
        return None

    @cached_property
    def class_axis(self):
        """The class axis's position in the arrays the function takes (negative: from the end)."""
        return (self.data.get("axis") or {}).get("value", -1)

    def scalar_output(self):
        """(native name, meaning) of a scalar output, preferring the plain sum; None if none."""
        scalars = [(name, meaning) for name, meaning in self.native_meanings.items()
                   if meaning in SCALAR_MEANINGS]
        scalars.sort(key=lambda item: SCALAR_MEANINGS.index(item[1]))
        return scalars[0] if scalars else (None, None)

    def finest_output(self):
        """(native reduction name or None, meaning) of the least reduced output available."""
        for meaning in ("elementwise", "rows"):
            for name, named in self.native_meanings.items():
                if named == meaning:
                    return name, meaning
        return None, None

    def convention_summary(self):
        """The convention in one line, for reports."""
        if self.data.get("adapter") and not self.data.get("spaces"):
            return self.description
        order = ", ".join(f"{role} ({self.data['spaces'][role]})"
                          for role in self.data["arguments"])
        names = self.reduction_names
        if names:
            reductions = "; ".join(f"{name!r}: {MEANING_TEXT[meaning]}"
                                   for name, meaning in names.items())
            default = self.data["reduction"].get("default")
            reductions += f"; default {default!r}" if default else "; no default"
        else:
            reductions = f"no reduction argument, returns {MEANING_TEXT[self.data['output']]}"
        return f"f({order}); {reductions}"


# Fields read as written (None where absent); the typed ones are the class's own properties.
_PLAIN_FIELDS = tuple(key for key in FIELDS if key not in vars(ImplementationRecord)
                      and key not in ("name", "description"))


def _plain_field(key):
    return property(lambda self: self.data.get(key), doc=f"the record's {key!r}, or None")


for _key in _PLAIN_FIELDS:
    setattr(ImplementationRecord, _key, _plain_field(_key))


def _plain(value):
    """Enums and tuples as the YAML scalars and lists they stand for."""
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def record_from_fields(fields, source="klconform diagnose") -> ImplementationRecord:
    """A record built in code (by `diagnose`), validated by the same schema and checks as a
    file; a SpecError names the field a wrong builder got wrong."""
    data = {key: _plain(fields[key]) for key in FIELDS if fields.get(key) is not None}
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise SpecError(source, f"not record fields: {', '.join(unknown)}")
    problem = validation_error(None, _SCHEMA, data)
    if problem:
        data_path, message = problem
        raise SpecError(source, " ".join(message.split())[:200], field=dotted_path(data_path))
    _check_consistency(source, _InMemory(data))
    return ImplementationRecord(name=data["name"], description=data["description"],
                                data=data, source=source)


class _InMemory:
    """A document without lines, for the consistency checks of a record built in code."""

    def __init__(self, data):
        self.data = data

    def line_of(self, data_path):
        return None


def record_yaml(record: ImplementationRecord, header="") -> str:
    """The record as a file `load_record` reads back to the same record."""
    return header + yaml.safe_dump(record.data, sort_keys=False, default_flow_style=None,
                                   width=100)


def name_from_impl(impl):
    """A record name (the matrix row, the report's name) from MODULE:ATTR."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", impl).strip("-._") or "implementation"


def load_record(path, source=None, injected_function=None,
                injected_loss_class=None) -> ImplementationRecord:
    """Read and validate a record; `injected_function` or `injected_loss_class` (MODULE:ATTR
    from --impl; the caller, which may import it, knows which it is) takes the place of the
    file's own `function:` or `loss_class:`."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(path, "implementation record (convention file) not found")
    if injected_function and injected_loss_class:
        raise ValueError("inject a function or a loss class, not both")
    document = read_yaml(path)
    injected = {"function": injected_function, "loss_class": injected_loss_class}
    for key, value in injected.items():
        if value and isinstance(document.data, dict):
            document.data.pop("function", None)
            document.data.pop("loss_class", None)
            document.data[key] = value
            document.data.setdefault("name", name_from_impl(value))
    problem = validation_error(document, _SCHEMA)
    if problem:
        data_path, message = problem
        missing = re.fullmatch(r"'(\w+)' is a required property", message.strip())
        if missing:
            # Nothing on any line is wrong: say what to add instead of pointing at a line.
            raise SpecError(path, f"missing field {missing.group(1)!r}" + (
                " (or run it with --impl MODULE:ATTR, whose name it then takes)"
                if missing.group(1) == "name" else ""))
        raise SpecError(path, " ".join(message.split())[:200], field=dotted_path(data_path),
                        line=document.line_of(data_path))
    data = document.data
    _check_consistency(path, document)
    return ImplementationRecord(name=data["name"], description=data["description"], data=data,
                                source=source or str(path))


def _check_consistency(path, document):
    """What the schema cannot say: fields that must agree with each other."""
    data = document.data

    def fail(message, data_path):
        raise SpecError(path, message, field=dotted_path(data_path),
                        line=document.line_of(data_path))

    reduction = data.get("reduction")
    if reduction and reduction.get("default") is not None \
            and reduction["default"] not in reduction["names"]:
        fail(f"default {reduction['default']!r} is not one of the names "
             f"{sorted(reduction['names'])}", ["reduction", "default"])
    if reduction and data.get("output"):
        fail("give either `output` (no reduction argument) or `reduction`, not both",
             ["output"])
    spaces = data.get("spaces") or {}
    if data.get("log_target") and spaces.get("target") != "probabilities":
        fail("a log_target switch needs the target's own space to be probabilities",
             ["log_target"])
    # An adapter class names no arrays, so this comes before the arrays' check.
    if data.get("jit") and data.get("adapter"):
        fail("jit applies to a function or a loss class; an adapter class makes its own "
             "calls", ["jit"])
    if data.get("jit") and data.get("arrays") not in JIT_ARRAYS:
        fail(f"jit: true needs arrays that klconform can compile ({', '.join(JIT_ARRAYS)}), "
             f"not {data.get('arrays')!r}", ["jit"])
