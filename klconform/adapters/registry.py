"""The implementation records klconform ships, one YAML file each in records/.

The record names are the built-in `--impl` names and the rows of the matrix (built from
the reports of runs against them). The list in docs/matrix.md is written by hand.
"""

import inspect
from functools import lru_cache
from pathlib import Path

from klconform.errors import ImplementationLoadError
from klconform.spec.conventions import load_record

RECORDS_DIR = Path(__file__).resolve().parent / "records"


@lru_cache(maxsize=1)
def builtin_records():
    """name -> ImplementationRecord, in name order."""
    records = {}
    for path in sorted(RECORDS_DIR.glob("*.yaml")):
        record = load_record(path, source=f"built-in record {path.name}")
        if record.name in records:
            raise ImplementationLoadError(f"{path}: duplicate built-in record {record.name!r}")
        records[record.name] = record
    return dict(sorted(records.items()))


def adapter_from_record(record, function=None, describe_only=False):
    """The adapter a record describes: its own class where it names one, else generic.
    `describe_only`: it is only asked what it can do, so the generic one need not import its
    library (convention.describes_without_importing)."""
    if record.adapter:
        from klconform.adapters.convention import resolve

        factory = resolve(record.adapter, record.name)
        # An adapter class that can describe itself without importing its library says so by
        # taking `describe_only` (klconform.adapters.torch_adapter's).
        adapter = (factory(describe_only=True) if describe_only and _takes_describe_only(factory)
                   else factory())
        adapter.name = record.name
        adapter.record = record
        return adapter
    from klconform.adapters.convention import ConventionAdapter, describes_without_importing

    return ConventionAdapter(record, function=function, describe_only=describe_only
                             and describes_without_importing(record))


def _takes_describe_only(factory):
    try:
        return "describe_only" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
