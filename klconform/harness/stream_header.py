"""The header of a run stream: everything about the run that its results do not say.

Built once per pytest process from the session state; under xdist the controller builds it
(loading the adapter only to describe it) while the workers make the calls.
"""

import platform
import sys
from importlib import metadata

from klconform import __version__
from klconform.harness.run_stream import STREAM_FORMAT

PACKAGES = ("numpy", "torch", "pytest", "hypothesis", "jsonschema", "PyYAML", "pytest-xdist")


def header(state, cases, spec, invocation=None):
    return {
        "stream_format": STREAM_FORMAT,
        "klconform_version": __version__,
        "spec_version": spec.version if spec else None,
        "implementation": describe_implementation(state.impl, state.adapter),
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "packages": {name: _package_version(name) for name in PACKAGES},
        },
        "run": {
            "started": state.started,
            "profile": state.profile,
            "strict": state.strict,
            "device": state.device,
            "min_coverage": getattr(state, "min_coverage", None),
            "invocation": list(sys.argv if invocation is None else invocation),
            "settings": dict(state.settings or {}),
        },
        "deviations": manifest_entries(state.manifest),
        "tests": tests_map(cases),
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


def tests_map(cases):
    """'<case id>-<dtype>' (the test id parameter) -> what that test checks, so a test that
    crashed the process before recording anything is still counted against its claims."""
    from klconform.engine.gradients import CLAIMS as GRADIENT_CLAIMS

    tests = {}
    for case in cases or ():
        for dtype in case.dtypes:
            tests[f"{case.id}-{dtype}"] = {"case": case.id, "dtype": dtype,
                                           "claims": list(case.claims), "level": case.level,
                                           "gradient_claims": list(GRADIENT_CLAIMS)}
    return tests


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
