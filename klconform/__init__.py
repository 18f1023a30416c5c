"""klconform: conformance suite and specification checker for KL-divergence implementations."""

from klconform.adapters.base import Adapter, Call, Capabilities, Observation

__version__ = "0.1.0"

__all__ = ["Adapter", "Call", "Capabilities", "Observation", "__version__"]
