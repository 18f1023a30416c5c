"""klconform: conformance suite and specification checker for KL-divergence implementations."""

__version__ = "0.1.0"

__all__ = ["Adapter", "Call", "Capabilities", "Observation", "TorchCallable", "__version__"]

# Imported on first use: the pytest plugin imports this package in every pytest run of every
# project, and the CLI before it starts pytest; neither needs numpy or the adapters there.
_FROM_BASE = ("Adapter", "Call", "Capabilities", "Observation")


def __getattr__(name):
    if name in _FROM_BASE:
        from klconform.adapters import base

        return getattr(base, name)
    if name == "TorchCallable":
        from klconform.adapters.torch_adapter import TorchCallableAdapter

        return TorchCallableAdapter
    raise AttributeError(f"module 'klconform' has no attribute {name!r}")
