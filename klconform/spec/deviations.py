"""Known-deviation manifests (--kl-xfails FILE): failures an implementation owns up to.

    deviations:
      - id: mean-warns                # a case id or a claim id
        dtypes: [float16]             # optional: only these dtypes
        reason: "we do not warn; see our docs"
        link: https://example.org/issue/1

A listed failure is reported `xfailed`; a listed case that now passes is `stale` (a
warning, and a failure under --kl-strict). A claim entry covers every case of the claim;
those that pass simply pass. Unknown ids are an error: a typo must not
silently hide nothing.
"""

from dataclasses import dataclass

from klconform.errors import SpecError
from klconform.spec.claims import dotted_path, validation_error
from klconform.spec.yaml_loader import read_yaml

SCHEMA = {
    "type": "object", "required": ["deviations"], "additionalProperties": False,
    "properties": {"deviations": {"type": "array", "items": {
        "type": "object", "required": ["id", "reason"], "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "reason": {"type": "string", "minLength": 1},
            "link": {"type": "string"},
            "dtypes": {"type": "array", "minItems": 1,
                       "items": {"enum": ["float16", "bfloat16", "float32", "float64"]}},
        }}}},
}


@dataclass(frozen=True)
class Deviation:
    id: str
    reason: str
    link: str | None
    dtypes: tuple | None
    source: str = "manifest"     # or "record": declared by the implementation's record

    def describe(self):
        return f"known deviation {self.id!r}: {self.reason}" + (
            f" ({self.link})" if self.link else "")


class Manifest:
    def __init__(self, deviations):
        self.deviations = deviations

    def match(self, case_id, claims, dtype):
        for deviation in self.deviations:
            if deviation.dtypes and dtype not in deviation.dtypes:
                continue
            if deviation.id == case_id or deviation.id in claims:
                return deviation
        return None

    def owns(self, case_id, claims, dtype):
        """Whether a deviation covers each of `claims` (the claims a test fails) at `dtype`:
        the test is then reported xfailed (harness.conclude)."""
        return bool(claims) and all(self.match(case_id, (claim,), dtype) for claim in claims)


def load_manifest(path, known_case_ids, known_claim_ids, known_property_ids=()) -> Manifest:
    document = read_yaml(path)
    problem = validation_error(document, SCHEMA)
    if problem:
        data_path, message = problem
        raise SpecError(path, message, field=dotted_path(data_path),
                        line=document.line_of(data_path))
    deviations = []
    for index, entry in enumerate(document.data["deviations"]):
        known = entry["id"] in known_case_ids or entry["id"] in known_claim_ids
        # Generated checks (properties, gradients) carry ids with a prefix, e.g. "grad:<case>".
        prefix, _, rest = entry["id"].partition(":")
        prefixed = (prefix == "grad" and rest in known_case_ids) or (
            prefix == "property" and rest in known_property_ids)
        if not (known or prefixed):
            raise SpecError(path, f"unknown case or claim id {entry['id']!r}",
                            field=f"deviations[{index}].id",
                            line=document.line_of(["deviations", index, "id"]))
        deviations.append(Deviation(entry["id"], entry["reason"], entry.get("link"),
                                    tuple(entry["dtypes"]) if "dtypes" in entry else None))
    return Manifest(deviations)


def record_deviations(record):
    """An implementation record's `deviations:` as manifest entries."""
    return [Deviation(entry["id"], entry["reason"], entry.get("link"),
                      tuple(entry["dtypes"]) if entry.get("dtypes") else None, "record")
            for entry in record.deviations or ()]
