"""Turning a failing property example into YAML cases (`klconform case-from-example`).

A failing property writes its shrunk example as JSON (reports/<impl>/examples/<property>-
<dtype>.json, and printed in the failure when small). The JSON already holds each call of
the example as a case body: exact input and target values at the dtype, the call, and an
expectation evaluate.py understands. This module adds what a case file needs around them
(id, claims, description, provenance, dtypes) and writes YAML that `klconform check-spec`
accepts. The ids are derived from the values, so converting the same example twice gives
the same ids and a duplicate is caught by check-spec instead of silently added.
"""

import hashlib
import json

import yaml

from klconform.errors import KLConformError

EXAMPLE_FORMAT = 1


class ExampleError(KLConformError):
    """The file is not a klconform property example."""


def read_example(text):
    try:
        example = json.loads(text)
    except json.JSONDecodeError as error:
        raise ExampleError(f"not JSON: {error}") from None
    if not isinstance(example, dict) or example.get("klconform_example") != EXAMPLE_FORMAT:
        raise ExampleError("not a klconform property example (no 'klconform_example': "
                           f"{EXAMPLE_FORMAT})")
    for key in ("property", "claims", "dtype", "cases"):
        if key not in example:
            raise ExampleError(f"the example has no {key!r}")
    return example


def cases_from_example(example, spec=None):
    """The case dicts (ready for a case file) for one failing example."""
    from klconform.spec.claims import load_spec

    spec = spec or load_spec()
    provenance = _provenance(example["claims"], spec)
    cases = []
    for body in example["cases"]:
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]
        cases.append({
            "id": f"found-{example['property']}-{example['dtype']}-{digest}",
            "claims": list(example["claims"]),
            "description": (f"Found by the property {example['property']!r} "
                            f"({example.get('statement', '').rstrip('.')}): {body['note']}. "
                            f"Shrunk example: {example.get('example', '?')}."),
            "provenance": provenance,
            "inputs": {"input": body["input"], "target": body["target"]},
            **({"call": body["call"]} if body["call"] else {}),
            "dtypes": [example["dtype"]],
            "expect": body["expect"],
        })
    return cases


def _provenance(claim_ids, spec):
    """The sources of the claims the property checks: the case supports those claims."""
    entries = []
    for claim_id in claim_ids:
        claim = spec.claims.get(claim_id)
        if claim is None:
            raise ExampleError(f"unknown claim {claim_id!r}")
        for entry in claim.provenance[:1]:
            entries.append({"source": entry["source"], "part": entry["part"]})
    return entries


def case_file_text(example, spec=None):
    document = {"description": f"Cases found by the property layer ({example['property']}).",
                "cases": cases_from_example(example, spec)}
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
