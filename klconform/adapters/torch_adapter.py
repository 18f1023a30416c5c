"""Adapters for torch: the functional, the module, and any plain callable on torch tensors.

Plain callables follow the torch convention: fn(input, target, reduction='mean',
log_target=False) with input = log Q and target = P, taking and returning torch tensors.
Capabilities are read off the callable's signature.
"""

import inspect

import numpy as np

from klconform.adapters import layouts
from klconform.adapters.base import (
    Adapter,
    Call,
    Capabilities,
    ImplementationResultError,
    Observation,
    distribution_version,
)
from klconform.constants import DTYPES, REDUCTIONS

TORCH_DTYPES = frozenset(DTYPES)
TORCH_LAYOUTS = frozenset(layouts.LAYOUTS)


def _torch():
    import torch

    return torch


def torch_devices():
    torch = _torch()
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return tuple(devices)


class TorchCallableAdapter(Adapter):
    def __init__(self, function, name, capabilities=None, description=None):
        self.function = function
        self.name = name
        self.capabilities = capabilities or capabilities_from_signature(function)
        self._description = description

    def version(self):
        module = getattr(self.function, "__module__", None) or "torch"
        return distribution_version(module) or "unknown"

    def describe(self):
        if self._description:
            return self._description
        module = getattr(self.function, "__module__", "?")
        return f"{module}.{getattr(self.function, '__qualname__', repr(self.function))}"

    def tensors(self, call: Call, requires_grad=False):
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
        module = getattr(self.function, "__module__", None)
        name = getattr(self.function, "__qualname__", None)
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


def functional_adapter():
    torch = _torch()
    return TorchCallableAdapter(
        torch.nn.functional.kl_div, "torch",
        Capabilities(dtypes=TORCH_DTYPES, legacy_args=True, autograd=True,
                     devices=torch_devices(), layouts=TORCH_LAYOUTS),
        description="torch.nn.functional.kl_div",
    )


class TorchModuleAdapter(TorchCallableAdapter):
    """nn.KLDivLoss: arguments go to the constructor, tensors to the call."""

    def __init__(self):
        torch = _torch()
        super().__init__(
            torch.nn.KLDivLoss, "torch-module",
            Capabilities(dtypes=TORCH_DTYPES, legacy_args=True, module_form=True,
                         autograd=True, devices=torch_devices(), layouts=TORCH_LAYOUTS),
            description="torch.nn.KLDivLoss",
        )

    def invoke(self, input, target, call: Call):
        loss = self.function(**call.keyword_arguments())
        return loss(input, target)

    def call_source(self, kwargs):
        return [f"print(torch.nn.KLDivLoss({kwargs})(input, target))"]
