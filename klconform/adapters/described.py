"""An implementation described by the process that imported it.

A run's calls go to its call worker, which imports the implementation. For the user's own
code (--impl MODULE:ATTR, or a --kl-convention record of it) the run's process would import
it a second time only to ask what it can do: its capabilities (read off the function's
signature), plans, snippets and version. That import is torch's, jax's or keras's: seconds of
a core in every pytest process, xdist workers included. Instead the worker, having loaded the
adapter, sends `description_of` it; the run rebuilds an adapter of the same class that
answers those questions without importing anything (`adapter_from_description`).

Only adapters whose answers are all data can be described so: a plain callable's
(TorchCallableAdapter) and a record's (ConventionAdapter, but not one that probes a GPU stack
to plan, the only kind that can be loaded and still unavailable). Any other is loaded in the
run's process as well (`description_of` gives None).
"""

import sys

from klconform.adapters.convention import ConventionAdapter
from klconform.adapters.torch_adapter import TorchCallableAdapter

CALLABLE = "torch-callable"
RECORD = "record"


def description_of(adapter):
    """What the run needs to describe `adapter` (picklable), or None."""
    if type(adapter) is TorchCallableAdapter and adapter.function is not None:
        module, qualname = adapter.source()
        return {"form": CALLABLE, "name": adapter.name, "capabilities": adapter.capabilities,
                "description": adapter.describe(), "source": (module, qualname),
                "module_file": _file_of(module)}
    if type(adapter) is ConventionAdapter and not adapter.record.requires_gpu:
        function = adapter.function or adapter.loss_class
        return {"form": RECORD, "record": adapter.record,
                "function_module": getattr(function, "__module__", None)}
    return None


def adapter_from_description(description):
    if description["form"] == CALLABLE:
        return TorchCallableAdapter(None, description["name"], description["capabilities"],
                                    description=description["description"],
                                    source=description["source"],
                                    module_file=description["module_file"])
    return ConventionAdapter(description["record"], described=description)


def _file_of(module_name):
    return getattr(sys.modules.get(module_name or ""), "__file__", None)
