"""Loading case files: YAML -> schema-validated, semantically checked Case objects.

A malformed case stops the run before any test executes: every problem becomes a SpecError
naming the file, line, case id and field.
"""

import copy
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from klconform import resources
from klconform.constants import DEFAULT_DTYPES, DTYPES, REDUCTIONS
from klconform.errors import SpecError
from klconform.spec import tensors
from klconform.spec.claims import dotted_path, load_schema, load_spec, validation_error
from klconform.spec.yaml_loader import read_yaml
from klconform.statuses import strictest


@dataclass(frozen=True)
class Case:
    id: str
    claims: tuple
    description: str
    provenance: tuple
    inputs: dict
    call: dict
    dtypes: tuple
    expect: dict
    profile: str
    file: Path
    line: int | None
    level: str = "must"  # the strictest level among the case's claims
    raw: dict = field(default=None, repr=False, compare=False)

    @cached_property
    def arrays(self):
        """(input, target) as float64 arrays, before rounding to any dtype."""
        return build_pair(self.inputs)

    @cached_property
    def mask(self):
        """Which rows count (a boolean array of the input's shape without its class axis), or
        None where the case has no mask."""
        return build_mask(self.inputs)

    def other_call(self):
        """The (inputs, call) of the relation's second call, with this case's as defaults."""
        other = self.expect["relation"]["other"]
        inputs = {**self.inputs, **other.get("inputs", {})}
        call = {**self.call, **other.get("call", {})}
        return build_pair(inputs), call

    @property
    def kind(self):
        if "probe" in self.expect:
            return "probe"
        if "raises" in self.expect:
            return "raises"
        return "value"


def build_pair(inputs):
    return tensors.build(inputs["input"]), tensors.build(inputs["target"])


def build_mask(inputs):
    if "mask" not in inputs:
        return None
    return tensors.build(inputs["mask"]) != 0




def case_files(directory):
    directory = Path(directory)
    if not directory.is_dir():
        raise SpecError(directory, "cases directory does not exist")
    files = sorted(p for p in directory.rglob("*")
                   if p.suffix in (".yaml", ".yml") and not p.is_dir())
    if not files:
        raise SpecError(directory, "no case files (*.yaml) found")
    return files


def load_cases(cases_dir=None, spec=None, spec_dir=None, extra_dirs=()) -> list:
    """The cases of cases_dir (default: the bundled ones), then those of extra_dirs.

    Ids are unique across all of them: a user's case beside the bundled ones cannot
    shadow one.
    """
    spec = spec or load_spec(spec_dir)
    schema = load_schema("case.schema.json", spec_dir)
    cases, seen = [], {}
    directories = [cases_dir or resources.cases_dir(), *(d for d in extra_dirs if d)]
    for path in (path for directory in directories for path in case_files(directory)):
        for case in _load_file_or_explain(path, schema, spec):
            if case.id in seen:
                raise SpecError(path, f"duplicate case id (first defined in {seen[case.id]})",
                                case_id=case.id, field="id", line=case.line)
            seen[case.id] = f"{case.file.name}:{case.line}"
            cases.append(case)
    return cases


def _load_file_or_explain(path, schema, spec):
    """_load_file, with anything it did not foresee still reported as one line.

    The checks below are meant to catch every malformed file; this is the backstop that keeps
    the promise of one line (and no traceback) should a new kind of bad input slip past them.
    """
    try:
        return list(_load_file(path, schema, spec))
    except SpecError:
        raise
    except Exception as error:
        raise SpecError(path, f"cannot load ({type(error).__name__}: "
                              f"{' '.join(str(error).split())[:200]}); "
                              "please report this as a klconform bug") from None


def _load_file(path, schema, spec):
    if not path.is_file():
        # A FIFO or device named *.yaml would block or never end when read.
        raise SpecError(path, "not a regular file")
    document = read_yaml(path)
    if not isinstance(document.data, dict):
        raise SpecError(path, "a case file is a mapping with a 'cases' list", line=1)
    problem = validation_error(document, schema)
    if problem:
        data_path, message = problem
        raise SpecError(path, _short(message), case_id=_case_id_at(document.data, data_path),
                        field=_field_in_case(data_path), line=document.line_of(data_path))
    for index, raw in enumerate(document.data["cases"]):
        line = document.line_of(["cases", index])
        yield _make_case(path, raw, line, spec, document, index)


def _make_case(path, raw, line, spec, document, index):
    def fail(message, field_path):
        field_line = document.line_of(["cases", index, *field_path]) or line
        raise SpecError(path, message, case_id=raw["id"], field=dotted_path(field_path),
                        line=field_line)

    for position, claim_id in enumerate(raw["claims"]):
        if claim_id not in spec.claims:
            fail(f"unknown claim {claim_id!r}", ["claims", position])
    for position, source in enumerate(raw["provenance"]):
        if source["source"] not in spec.sources:
            fail(f"unknown source {source['source']!r}; known: {', '.join(spec.sources)}",
                 ["provenance", position, "source"])
    call = dict(raw.get("call", {}))
    expect = raw["expect"]
    reduction = call.get("reduction")
    if reduction is not None and reduction not in REDUCTIONS and "raises" not in expect \
            and "probe" not in expect:
        fail(f"reduction {reduction!r} is not one of {REDUCTIONS} and the case expects no error",
             ["call", "reduction"])
    # Shapes only: the arrays are built when the case runs (Case.arrays), never for a case
    # that does not, while every error their building could meet is found here.
    shapes = {}
    for name in ("input", "target"):
        try:
            shapes[name] = tensors.shape_of(raw["inputs"][name])
        except tensors.TensorSpecError as error:
            fail(str(error), ["inputs", name, *_split(error.path)])
    if "mask" in raw["inputs"]:
        try:
            mask = tensors.build(raw["inputs"]["mask"])
        except tensors.TensorSpecError as error:
            fail(str(error), ["inputs", "mask", *_split(error.path)])
        if mask.shape != shapes["input"][:-1] or not np.all((mask == 0) | (mask == 1)):
            fail(f"a mask holds 0 or 1 for each row: shape {shapes['input'][:-1]}, "
                 f"got shape {mask.shape}", ["inputs", "mask"])
    if "probe" not in expect and "raises" not in expect:
        if shapes["input"] != shapes["target"]:
            fail(f"input shape {shapes['input']} and target shape "
                 f"{shapes['target']} differ (only probe cases may mismatch)", ["inputs"])
        _check_expectations(raw, shapes, reduction, fail)
    levels = {spec.claims[claim].level for claim in raw["claims"]}
    case = Case(
        id=raw["id"], claims=tuple(raw["claims"]), description=raw["description"],
        provenance=tuple(raw["provenance"]), inputs=raw["inputs"], call=call,
        dtypes=tuple(raw.get("dtypes", DEFAULT_DTYPES)), expect=expect,
        profile=raw.get("profile", "default"), file=Path(path), line=line,
        level=strictest(levels), raw=copy.deepcopy(raw),
    )
    return case


def _check_expectations(raw, shapes, reduction, fail):
    expect = raw["expect"]
    published = expect.get("published")
    if published and "array" in published:
        try:
            shape = tensors.shape_of(published["array"])
        except tensors.TensorSpecError as error:
            fail(str(error), ["expect", "published", "array", *_split(error.path)])
        if reduction != "none":
            fail("a published array needs reduction 'none'", ["expect", "published", "array"])
        if shape != shapes["input"]:
            fail(f"published array shape {shape} differs from input shape "
                 f"{shapes['input']}", ["expect", "published", "array"])
    if published and "value" in published and reduction == "none":
        fail("a published scalar needs a reducing call", ["expect", "published", "value"])
    if "cross_entropy" in expect:
        try:
            logits = tensors.shape_of(expect["cross_entropy"]["logits"])
        except tensors.TensorSpecError as error:
            fail(str(error), ["expect", "cross_entropy", "logits", *_split(error.path)])
        if logits != shapes["target"]:
            fail(f"logits shape {logits} differs from target shape "
                 f"{shapes['target']}", ["expect", "cross_entropy", "logits"])
    relation = expect.get("relation")
    if relation:
        other_inputs = relation["other"].get("inputs", {})
        for name, description in other_inputs.items():
            try:
                tensors.shape_of(description)
            except tensors.TensorSpecError as error:
                fail(str(error),
                     ["expect", "relation", "other", "inputs", name, *_split(error.path)])
    if expect.get("sign") and reduction == "none":
        fail("a sign expectation needs a reducing call", ["expect", "sign"])
    for dtype in raw.get("dtypes", DEFAULT_DTYPES):
        if dtype not in DTYPES:
            fail(f"unknown dtype {dtype!r}", ["dtypes"])
    if not tensors.finite(raw["inputs"]["input"]) or not tensors.finite(raw["inputs"]["target"]):
        if "nan-propagates" not in raw["claims"]:
            fail("non-finite values belong in probe cases or nan-propagates cases", ["inputs"])


def _case_id_at(data, data_path):
    if len(data_path) >= 2 and data_path[0] == "cases" and isinstance(data_path[1], int):
        try:
            entry = data["cases"][data_path[1]]
        except (IndexError, KeyError, TypeError):
            return None
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            return entry["id"]
        return f"#{data_path[1]} (no id)"
    return None


def _field_in_case(data_path):
    if len(data_path) >= 2 and data_path[0] == "cases":
        return dotted_path(data_path[2:]) if len(data_path) > 2 else None
    return dotted_path(data_path)


def _split(path_text):
    """'log_of[1][0]' -> ['log_of', 1, 0]: a TensorSpecError path as data-path keys, list
    indices as ints, so that line_of can follow them and dotted_path prints them as [n]."""
    return [int(index) if index else name
            for index, name in re.findall(r"\[(\d+)\]|([^.\[\]]+)", path_text)]


def _short(message, limit=200):
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."
