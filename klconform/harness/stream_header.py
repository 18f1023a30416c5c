"""The header of a run stream: everything about the run that its results do not say.

Built once per pytest process from the run state; under xdist the controller builds it
(loading the adapter only to describe it) while the workers make the calls. What each test
checks is not here: its start and record events carry that themselves (harness.identity).
"""

import platform
import sys
from importlib import metadata

from klconform import __version__
from klconform.constants import STREAM_FORMAT

PACKAGES = ("numpy", "torch", "pytest", "hypothesis", "jsonschema", "PyYAML", "pytest-xdist")


def header(state, spec, invocation=None):
    settings = state.settings
    return {
        "stream_format": STREAM_FORMAT,
        "klconform_version": __version__,
        "spec_version": spec.version if spec else None,
        "implementation": describe_implementation(settings.impl, state.adapter),
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "packages": {name: _package_version(name) for name in PACKAGES},
        },
        "run": {
            "started": state.started,
            "profile": settings.profile,
            "strict": settings.strict,
            "device": settings.device,
            "min_coverage": settings.min_coverage,
            "invocation": list(sys.argv if invocation is None else invocation),
            "settings": dict(state.describe_hypothesis()),
        },
        "deviations": manifest_entries(state.manifest),
    }


def describe_implementation(impl, adapter):
    if adapter is None:
        return {"name": impl, "description": None, "version": None, "library": None,
                "capabilities": None, "convention": None}
    record = getattr(adapter, "record", None)
    return {
        "name": impl,
        "description": adapter.describe(),
        "version": _safe(adapter.version),
        "library": getattr(record, "library", None),
        "capabilities": adapter.capabilities.as_dict(),
        "convention": record.convention_summary() if record is not None else None,
    }


def manifest_entries(manifest):
    if not manifest:
        return []
    return [{"id": deviation.id, "reason": deviation.reason, "link": deviation.link,
             "dtypes": list(deviation.dtypes) if deviation.dtypes else None,
             "source": getattr(deviation, "source", "manifest")}
            for deviation in manifest.deviations]


def _safe(function):
    try:
        return str(function())
    except Exception as error:
        return f"unknown ({type(error).__name__})"


def _package_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
