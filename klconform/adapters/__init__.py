"""Turning an --impl string into an Adapter.

Resolution order:
  1. a built-in name: one of the records in klconform/adapters/records/;
  2. an entry point in the group `klconform.adapters` (an Adapter instance or subclass);
  3. MODULE:ATTR, ATTR being an Adapter (instance or subclass) or a plain callable with
     the torch convention (input, target, reduction='mean', log_target=False);
  4. MODULE, exposing one of those under the name KLCONFORM_ADAPTER.
"""

import difflib
import importlib
import os
import pkgutil
import re
import sys
from importlib.metadata import entry_points

from klconform.adapters.base import Adapter, Call, Capabilities, Observation
from klconform.errors import ImplementationLoadError

# klconform.adapters.registry (the records, hence the YAML loader and the JSON schemas) is
# imported where a record is needed: importing klconform.adapters.base, as the run does
# before it starts its call worker, then costs no more than numpy.

ENTRY_POINT_GROUP = "klconform.adapters"
MODULE_ATTRIBUTE = "KLCONFORM_ADAPTER"
_MODULE_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def load_adapter(spec: str, convention=None, describe_only=False) -> Adapter:
    """The adapter for an --impl string; `convention` (a record file) states how a
    MODULE:ATTR function is called, instead of assuming the torch convention.
    `describe_only`: the adapter will only be asked what it can do (its calls are made in the
    call worker), so a built-in record's library is checked installed but not imported."""
    return _resolve(spec, convention, describe_only)


def described_by_its_importer(spec: str, convention=None) -> bool:
    """Whether --impl names the user's own code (MODULE:ATTR, MODULE, a --kl-convention
    record's function) that a process importing it can describe to one that does not
    (klconform.adapters.described): not a built-in or an entry point, and, without a record,
    a module that exists (a misspelt one is refused where it is named, importing nothing)."""
    import importlib.util

    spec = spec.strip()
    if convention is not None:
        return True
    from klconform.adapters.registry import builtin_records

    if not spec or spec in builtin_records() or not _MODULE_PATH.match(spec.split(":")[0]):
        return False
    if any(entry_point.name == spec for entry_point in entry_points(group=ENTRY_POINT_GROUP)):
        return False
    try:
        return importlib.util.find_spec(spec.split(":")[0].split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def _resolve(spec: str, convention=None, describe_only=False) -> Adapter:
    spec = spec.strip()
    if not spec:
        raise ImplementationLoadError("--impl is empty")
    if convention is not None:
        return _with_convention(spec, convention)
    from klconform.adapters.registry import adapter_from_record, builtin_records

    records = builtin_records()
    if spec in records:
        try:
            return adapter_from_record(records[spec], describe_only=describe_only)
        except ImportError as error:
            extra = records[spec].extra
            hint = f'; pip install "klconform[{extra}]"' if extra else ""
            raise ImplementationLoadError(
                f"--impl {spec}: built-in adapter needs a library that does not import "
                f"({type(error).__name__}: {error}){hint}") from None
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
                    f"--impl {spec}: module {module_name!r} has no attribute {attribute_path!r}"
                    + did_you_mean(part, _public_names(target),
                                   lambda name, part=part: spec[:len(spec) - len(part)] + name))
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


def _with_convention(spec, convention_path):
    """A record file for the user's own function: --impl MODULE:ATTR names the function
    (overriding any `function:` in the file), or the file names it and --impl its name."""
    import dataclasses
    import inspect

    from klconform.adapters.convention import prepare_libraries, resolve
    from klconform.spec.conventions import load_record

    record = load_record(convention_path, injected_function=spec if ":" in spec else None)
    if record.adapter:
        raise ImplementationLoadError(
            f"--convention {convention_path}: a convention file describes a function "
            f"(function: or loss_class:), not an adapter class")
    if ":" in spec:
        # A class named by --impl is a loss class (built with the reduction, then called);
        # the file's setup (KERAS_BACKEND, jax's 64-bit mode) precedes the import that
        # finds out.
        prepare_libraries(record)
        try:
            is_class = inspect.isclass(resolve(spec, spec))
        except ImplementationLoadError:
            if not record.requires_gpu:
                raise
            is_class = False  # the adapter reports every call unavailable, with the reason
        if is_class:
            record = load_record(convention_path, injected_loss_class=spec)
        record = dataclasses.replace(record, name=spec)
    from klconform.adapters.registry import adapter_from_record

    return adapter_from_record(record)


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
            f"(ModuleNotFoundError: {error})" + (_in_working_directory(error.name) or
                                                 _near_modules(error.name, module_name, spec))
        ) from None
    except Exception as error:
        raise ImplementationLoadError(
            f"--impl {spec}: importing module {module_name!r} failed "
            f"({type(error).__name__}: {error})") from None


def _unknown(spec):
    from klconform.adapters.registry import builtin_records

    known = sorted(builtin_records()) + sorted(
        ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return (f"--impl {spec}: unknown implementation: not a built-in or entry point "
            f"({', '.join(known)}), and not an importable MODULE or MODULE:ATTR"
            + did_you_mean(spec, known))


def did_you_mean(name, candidates, spell=str):
    """'; did you mean X?' for the candidates close to name, or ''."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(spell(match)) for match in close) + "?"


def _public_names(namespace):
    return [name for name in dir(namespace) if not name.startswith("_")]


def _in_working_directory(missing):
    """Why a module in the working directory is not found: the `pytest` command does not put
    that directory on sys.path (`python -m pytest` and `klconform run` do)."""
    top = (missing or "").split(".")[0]
    here = os.getcwd()
    if not top or any(os.path.abspath(entry or os.curdir) == here for entry in sys.path):
        return ""
    if not (os.path.isdir(os.path.join(here, top))
            or os.path.isfile(os.path.join(here, f"{top}.py"))):
        return ""
    return (f"; {top!r} is in the working directory, which is not on sys.path: run "
            f"`python -m pytest`, or set `pythonpath = .` in pytest's configuration")


def _near_modules(missing, module_name, spec):
    """Close names for the part of a dotted module path that does not exist."""
    if not missing or missing not in module_name:
        return ""
    parent, _, last = missing.rpartition(".")
    if parent:
        try:
            package = importlib.import_module(parent)
            names = [info.name for info in pkgutil.iter_modules(getattr(package, "__path__", []))]
        except Exception:  # the hint is a courtesy: never let it hide the real error
            return ""
    else:
        names = [info.name for info in pkgutil.iter_modules()]
    rest = spec[len(missing):]
    return did_you_mean(last, names, lambda name: f"{parent + '.' if parent else ''}{name}{rest}")


__all__ = ["Adapter", "Call", "Capabilities", "Observation", "load_adapter", "as_adapter",
           "described_by_its_importer", "ENTRY_POINT_GROUP", "MODULE_ATTRIBUTE"]
