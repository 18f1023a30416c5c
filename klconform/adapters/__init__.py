"""Turning an --impl string into an Adapter.

Resolution order:
  1. a built-in name (torch, torch-module, numpy);
  2. an entry point in the group `klconform.adapters` (an Adapter instance or subclass);
  3. MODULE:ATTR, ATTR being an Adapter (instance or subclass) or a plain callable with
     the torch convention (input, target, reduction='mean', log_target=False);
  4. MODULE, exposing one of those under the name KLCONFORM_ADAPTER.
"""

import importlib
import re
from importlib.metadata import entry_points

from klconform.adapters.base import Adapter, Call, Capabilities, Observation
from klconform.errors import ImplementationLoadError

ENTRY_POINT_GROUP = "klconform.adapters"
MODULE_ATTRIBUTE = "KLCONFORM_ADAPTER"
_MODULE_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def _builtin_torch():
    from klconform.adapters.torch_adapter import functional_adapter

    return functional_adapter()


def _builtin_torch_module():
    from klconform.adapters.torch_adapter import TorchModuleAdapter

    return TorchModuleAdapter()


def _builtin_numpy():
    from klconform.adapters.numpy_adapter import NumpyAdapter

    return NumpyAdapter()


BUILTINS = {"torch": _builtin_torch, "torch-module": _builtin_torch_module,
            "numpy": _builtin_numpy}


def load_adapter(spec: str) -> Adapter:
    adapter = _resolve(spec)
    # The call worker (klconform.engine.isolation) re-creates the adapter from this string.
    adapter.source = spec.strip()
    return adapter


def _resolve(spec: str) -> Adapter:
    spec = spec.strip()
    if not spec:
        raise ImplementationLoadError("--impl is empty")
    if spec in BUILTINS:
        try:
            return BUILTINS[spec]()
        except ImportError as error:
            raise ImplementationLoadError(
                f"--impl {spec}: built-in adapter needs a library that does not import "
                f"({type(error).__name__}: {error})") from None
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name == spec:
            return _from_entry_point(entry_point, spec)
    if ":" in spec:
        module_name, _, attribute_path = spec.partition(":")
        module = _import(module_name, spec)
        target = module
        for part in attribute_path.split("."):
            if not hasattr(target, part):
                raise ImplementationLoadError(
                    f"--impl {spec}: module {module_name!r} has no attribute {attribute_path!r}")
            target = getattr(target, part)
        return as_adapter(target, spec)
    if not _MODULE_PATH.match(spec):
        raise ImplementationLoadError(_unknown(spec))
    module = _import(spec, spec, unknown_if_missing=True)
    if not hasattr(module, MODULE_ATTRIBUTE):
        raise ImplementationLoadError(
            f"--impl {spec}: module {spec!r} defines no {MODULE_ATTRIBUTE}; "
            f"name an attribute with {spec}:ATTR or define {MODULE_ATTRIBUTE}")
    return as_adapter(getattr(module, MODULE_ATTRIBUTE), spec)


def as_adapter(target, spec) -> Adapter:
    if isinstance(target, type) and issubclass(target, Adapter):
        target = target()
    if isinstance(target, Adapter):
        if target.name == Adapter.name:
            target.name = spec
        return target
    if callable(target):
        try:
            from klconform.adapters.torch_adapter import TorchCallableAdapter
        except ImportError as error:
            raise ImplementationLoadError(
                f"--impl {spec}: plain callables use torch tensors, and torch does not import "
                f"({error})") from None
        return TorchCallableAdapter(target, spec)
    raise ImplementationLoadError(
        f"--impl {spec}: {type(target).__name__} object is neither an Adapter nor callable")


def _from_entry_point(entry_point, spec):
    try:
        target = entry_point.load()
    except Exception as error:  # a broken third-party package must not crash the runner
        raise ImplementationLoadError(
            f"--impl {spec}: entry point {entry_point.value!r} in group {ENTRY_POINT_GROUP!r} "
            f"failed to load ({type(error).__name__}: {error})") from None
    if not (isinstance(target, Adapter) or (isinstance(target, type)
                                            and issubclass(target, Adapter))):
        raise ImplementationLoadError(
            f"--impl {spec}: entry point {entry_point.value!r} is a {type(target).__name__}, "
            f"not a klconform Adapter instance or subclass")
    return as_adapter(target, spec)


def _import(module_name, spec, unknown_if_missing=False):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if unknown_if_missing and error.name == module_name.split(".")[0]:
            raise ImplementationLoadError(_unknown(spec)) from None
        raise ImplementationLoadError(
            f"--impl {spec}: cannot import module {module_name!r} "
            f"(ModuleNotFoundError: {error})") from None
    except Exception as error:
        raise ImplementationLoadError(
            f"--impl {spec}: importing module {module_name!r} failed "
            f"({type(error).__name__}: {error})") from None


def _unknown(spec):
    names = ", ".join(sorted(BUILTINS) + sorted(ep.name for ep in entry_points(
        group=ENTRY_POINT_GROUP)))
    return (f"--impl {spec}: unknown implementation: not a built-in or entry point ({names}), "
            f"and not an importable MODULE or MODULE:ATTR")


__all__ = ["Adapter", "Call", "Capabilities", "Observation", "load_adapter", "as_adapter",
           "ENTRY_POINT_GROUP", "MODULE_ATTRIBUTE"]
