"""The claims of the specification (spec/claims.yaml), validated against their schema."""

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jsonschema

from klconform import resources
from klconform.errors import SpecError
from klconform.spec.yaml_loader import read_yaml


@dataclass(frozen=True)
class Claim:
    id: str
    level: str
    statement: str
    formula: str | None
    provenance: tuple
    decision: str | None = None
    family: str = "implementation-defined"
    requires: tuple = ()
    # Claims this one is a consequence of: where a value breaks one of them, this claim's
    # own check fails with it, under that root cause ('mean' equals 'batchmean' when either
    # divides by the wrong count).
    follows: tuple = ()


@dataclass(frozen=True)
class Spec:
    version: str
    claims: dict  # id -> Claim, in file order
    sources: dict
    path: Path


def load_schema(name, spec_dir=None) -> dict:
    path = Path(spec_dir or resources.spec_dir()) / name
    return json.loads(path.read_text(encoding="utf-8"))


def validation_error(document, schema, data=None):
    """The most relevant schema violation as (data path, message), or None."""
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(
        validator.iter_errors(document.data if data is None else data)
    )
    if error is None:
        return None
    return list(error.absolute_path), error.message


@lru_cache(maxsize=8)
def _load_spec_cached(spec_dir: Path) -> Spec:
    path = spec_dir / "claims.yaml"
    document = read_yaml(path)
    problem = validation_error(document, load_schema("claims.schema.json", spec_dir))
    if problem:
        data_path, message = problem
        raise SpecError(path, message, field=dotted_path(data_path),
                        line=document.line_of(data_path))
    claims = {}
    for index, entry in enumerate(document.data["claims"]):
        if entry["id"] in claims:
            raise SpecError(path, "duplicate claim id", case_id=entry["id"],
                            line=document.line_of(["claims", index]))
        for source in entry["provenance"]:
            if source["source"] not in document.data["sources"]:
                raise SpecError(path, f"unknown source {source['source']!r}", case_id=entry["id"],
                                field="provenance", line=document.line_of(["claims", index]))
        if entry.get("retired"):
            continue
        claims[entry["id"]] = Claim(
            id=entry["id"], level=entry["level"], statement=entry["statement"],
            formula=entry.get("formula"), provenance=tuple(entry["provenance"]),
            decision=entry.get("decision"), family=entry["family"],
            requires=tuple(entry.get("requires", ())),
            follows=tuple(entry.get("follows", ())),
        )
    for index, entry in enumerate(document.data["claims"]):
        for cause in entry.get("follows", ()):
            if cause not in claims:
                raise SpecError(path, f"follows unknown claim {cause!r}", case_id=entry["id"],
                                field="follows", line=document.line_of(["claims", index]))
    return Spec(version=document.data["spec_version"], claims=claims,
                sources=document.data["sources"], path=path)


def load_spec(spec_dir=None) -> Spec:
    if not spec_dir:
        return _load_default_spec()
    return _load_spec_cached(Path(spec_dir).resolve())


@lru_cache(maxsize=1)
def _load_default_spec() -> Spec:
    # Judging asks for the spec once per check: resolving its path each time was measurable.
    return _load_spec_cached(resources.spec_dir().resolve())


def dotted_path(data_path):
    text = ""
    for key in data_path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text or "(top level)"

