"""Adapters for torch: the functional, the module, and any plain callable on torch tensors.

Plain callables follow the torch convention: fn(input, target, reduction='mean',
log_target=False) with input = log Q and target = P, taking and returning torch tensors.
Capabilities are read off the callable's signature.
"""

import ast
import importlib.util
import inspect
import sys
from pathlib import Path

import numpy as np

from klconform.adapters import layouts
from klconform.adapters.base import (
    Adapter,
    Call,
    Capabilities,
    ImplementationResultError,
    Observation,
    distribution_version,
    refuse_call_when_described,
)
from klconform.constants import DTYPES, REDUCTIONS

TORCH_DTYPES = frozenset(DTYPES)
TORCH_LAYOUTS = frozenset(layouts.LAYOUTS)


def _torch():
    import torch

    return torch


def torch_devices():
    if "torch" not in sys.modules and sys.platform != "darwin" and not _built_for_a_gpu():
        # A CPU-only build on Linux or Windows has no other device to offer, and finding that
        # out by importing torch costs the run 1.5-2 s of a core in a process that never
        # calls it (its calls go to the call worker).
        return ("cpu",)
    torch = _torch()
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return tuple(devices)


def _built_for_a_gpu():
    """Whether the installed torch was built with CUDA or ROCm, read from its version.py
    without importing torch; True where that file does not say plainly (then torch is
    imported and asked)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return True
    try:
        tree = ast.parse((Path(spec.submodule_search_locations[0]) / "version.py").read_text())
    except (OSError, SyntaxError, ValueError):
        return True
    built = {}
    for node in tree.body:
        # `cuda: Optional[str] = None` (annotated) or `cuda = None`
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            names = [node.target]
        elif isinstance(node, ast.Assign):
            names = node.targets
        else:
            continue
        for name in names:
            if isinstance(name, ast.Name) and name.id in ("cuda", "hip"):
                try:
                    built[name.id] = ast.literal_eval(node.value)
                except ValueError:  # not a literal: computed at import
                    return True
    return set(built) != {"cuda", "hip"} or any(value is not None for value in built.values())


def _check_torch_installed():
    """ModuleNotFoundError, as importing would raise it, where torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        raise ModuleNotFoundError("No module named 'torch'", name="torch")


class TorchCallableAdapter(Adapter):
    def __init__(self, function, name, capabilities=None, description=None, source=None,
                 module_file=None):
        """`function` None: an adapter that only describes the implementation (its calls are
        made by the call worker); `source` (module, name) then says how a snippet imports
        it, and `module_file` where that module is (an editable install's version is found
        by it)."""
        self.function = function
        self.name = name
        self.capabilities = capabilities or capabilities_from_signature(function)
        self._description = description
        self._source = source
        self._module_file = module_file

    def source(self):
        """(module, qualified name) of the callable, either possibly None."""
        return self._source or (getattr(self.function, "__module__", None),
                                getattr(self.function, "__qualname__", None))

    def version(self):
        module = self.source()[0] or "torch"
        return distribution_version(module, self._module_file) or "unknown"

    def describe(self):
        if self._description:
            return self._description
        module = getattr(self.function, "__module__", "?")
        return f"{module}.{getattr(self.function, '__qualname__', repr(self.function))}"

    def _tensors(self, call: Call, requires_grad):
        torch = _torch()
        made = []
        for argument, values in (("input", call.input), ("target", call.target)):
            dtype_name = call.dtype_of(argument)
            tensor = torch.as_tensor(np.asarray(values, dtype=np.float64))
            tensor = tensor.to(device=call.device, dtype=getattr(torch, dtype_name))
            tensor = layouts.torch_view(tensor, call.layout)
            if requires_grad and argument in call.requires_grad and tensor.is_floating_point():
                tensor.requires_grad_(True)
            made.append(tensor)
        return made

    def invoke(self, input, target, call: Call):
        return self.function(input, target, **call.keyword_arguments())

    def tensors(self, call: Call, requires_grad=False):
        if self.function is None:
            refuse_call_when_described(self.name)
        return self._tensors(call, requires_grad)

    def compute(self, call: Call) -> Observation:
        input, target = self.tensors(call)
        result = self.invoke(input, target, call)
        return observe_tensor(result)

    def gradients(self, call: Call):
        input, target = self.tensors(call, requires_grad=True)
        result = self.invoke(input, target, call)
        observe_tensor(result)  # rejects non-tensor results with a clear message
        wanted = [tensor for tensor in (input, target) if tensor.requires_grad]
        grads = iter(_torch().autograd.grad(result.sum(), wanted, allow_unused=True)
                     if wanted else ())
        return tuple(
            _as_numpy(next(grads)) if tensor.requires_grad else None
            for tensor in (input, target)
        )

    def snippet(self, call: Call):
        head = [
            "import torch",
            f"input = torch.tensor(input_values).to(device={call.device!r}, "
            f"dtype=torch.{call.dtype_of('input')})",
            f"target = torch.tensor(target_values).to(device={call.device!r}, "
            f"dtype=torch.{call.dtype_of('target')})",
        ]
        if call.layout:
            head += [layouts.TORCH_SOURCE[call.layout].format(name=name)
                     for name in ("input", "target")]
        kwargs = ", ".join(f"{key}={value!r}" for key, value in call.keyword_arguments().items())
        return "\n".join(head + self.call_source(kwargs)) + "\n"

    def call_source(self, kwargs):
        module, name = self.source()
        if module and name and "<" not in name:
            return [f"from {module} import {name.split('.')[0]}",
                    f"print({name}(input, target{', ' if kwargs else ''}{kwargs}))"]
        return [f"print(<{self.name}>(input, target{', ' if kwargs else ''}{kwargs}))"]


def _as_numpy(grad):
    return None if grad is None else grad.detach().to("cpu", _torch().float64).numpy()


def observe_tensor(result) -> Observation:
    torch = _torch()
    if not isinstance(result, torch.Tensor):
        raise ImplementationResultError(
            f"returned {type(result).__name__}, expected a torch.Tensor"
        )
    value = result.detach().to("cpu", torch.float64).numpy().copy()
    return Observation(value, str(result.dtype).removeprefix("torch."), tuple(result.shape))


def capabilities_from_signature(function) -> Capabilities:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return Capabilities(autograd=True, dtypes=TORCH_DTYPES, devices=torch_devices(),
                            layouts=TORCH_LAYOUTS)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    reduction = parameters.get("reduction")
    has_reduction = reduction is not None or accepts_any
    return Capabilities(
        reductions=frozenset(REDUCTIONS) if has_reduction else frozenset(),
        log_target="log_target" in parameters or accepts_any,
        default_reduction=reduction is None or reduction.default is not inspect.Parameter.empty,
        dtypes=TORCH_DTYPES,
        legacy_args="size_average" in parameters and "reduce" in parameters,
        autograd=True,
        devices=torch_devices(),
        layouts=TORCH_LAYOUTS,
    )


def functional_adapter(describe_only=False):
    """`describe_only`: capabilities, plans and snippets without importing torch."""
    if describe_only:
        _check_torch_installed()
    return TorchCallableAdapter(
        None if describe_only else _torch().nn.functional.kl_div, "torch",
        Capabilities(dtypes=TORCH_DTYPES, legacy_args=True, autograd=True,
                     devices=torch_devices(), layouts=TORCH_LAYOUTS),
        description="torch.nn.functional.kl_div", source=("torch.nn.functional", "kl_div"),
    )


class TorchModuleAdapter(TorchCallableAdapter):
    """nn.KLDivLoss: arguments go to the constructor, tensors to the call."""

    def __init__(self, describe_only=False):
        """`describe_only`: capabilities, plans and snippets without importing torch."""
        if describe_only:
            _check_torch_installed()
        super().__init__(
            None if describe_only else _torch().nn.KLDivLoss, "torch-module",
            Capabilities(dtypes=TORCH_DTYPES, legacy_args=True, module_form=True,
                         autograd=True, devices=torch_devices(), layouts=TORCH_LAYOUTS),
            description="torch.nn.KLDivLoss",
        )

    def invoke(self, input, target, call: Call):
        loss = self.function(**call.keyword_arguments())
        return loss(input, target)

    def call_source(self, kwargs):
        return [f"print(torch.nn.KLDivLoss({kwargs})(input, target))"]
