"""klconform: conformance suite and specification checker for KL-divergence implementations."""

from klconform.adapters.base import Adapter, Call, Capabilities, Observation

__version__ = "0.1.0"

__all__ = ["Adapter", "Call", "Capabilities", "Observation", "TorchCallable", "__version__"]


def __getattr__(name):
    # Imported on first use: the pytest plugin imports this package in every pytest run
    # of every project, and the torch adapter module is not needed there.
    if name == "TorchCallable":
        from klconform.adapters.torch_adapter import TorchCallableAdapter

        return TorchCallableAdapter
    raise AttributeError(f"module 'klconform' has no attribute {name!r}")
