"""The adapter interface: how klconform talks to an implementation under test.

An adapter knows its library and nothing about cases, oracles or reports. It receives a
language-neutral Call (float64 numpy arrays whose values are already exactly representable
in the dtype under test) and returns an Observation (the result as float64 numpy plus what
the library reported about it). Capabilities say what the library can be asked, so a case
needing something else is reported unsupported instead of failed.
"""

import functools
import warnings
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np

from klconform.constants import DTYPES, REDUCTIONS


@functools.lru_cache(maxsize=1)
def _distributions_by_package():
    return metadata.packages_distributions()


def distribution_version(module_name, module_file=None):
    """The version of the installed distribution providing module_name, or None.

    The report's header names the implementation's own package, not torch: a plain
    callable from another library is that library's version. A module that is not from
    an installed distribution (a file on sys.path) has none. `module_file`: where the module
    is, when this process has not imported it.
    """
    top = (module_name or "").split(".")[0]
    own = _distribution_named_for(top)
    if own is not None:
        return own.version
    names = list(_distributions_by_package().get(top, ()))
    # An editable install maps no top-level name to its distribution (only a .pth file):
    # try the distribution of the same name, then the one whose project folder holds it.
    names += [top] + _editable_distributions_holding(module_name, module_file)
    for distribution in names:
        try:
            return metadata.version(distribution)
        except (metadata.PackageNotFoundError, ValueError):
            continue
    return None


def _distribution_named_for(top):
    """The distribution named like the package that installs it (torch, jax): found without
    reading every installed distribution's file list, which costs a default run's header
    0.2 s."""
    try:
        distribution = metadata.distribution(top)
    except (metadata.PackageNotFoundError, ValueError):
        return None
    # RECORD read as text: torch's lists 17,000 files, which `files` would make into paths.
    record = "\n" + (distribution.read_text("RECORD") or "")
    if f"\n{top}/" in record or f"\n{top}.py," in record:
        return distribution
    return None


def _editable_distributions_holding(module_name, module_file=None):
    import json
    import sys
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    source = module_file or getattr(sys.modules.get(module_name), "__file__", None)
    if not source:
        return []
    source = Path(source).resolve()
    found = []
    for distribution in metadata.distributions():
        try:
            origin = json.loads(distribution.read_text("direct_url.json") or "null")
        except (OSError, ValueError):
            continue
        if not origin or not (origin.get("dir_info") or {}).get("editable"):
            continue
        url = urlparse(origin.get("url", ""))
        if url.scheme == "file" and Path(unquote(url.path)).resolve() in source.parents:
            found.append(distribution.metadata["Name"])
    return found


@dataclass(frozen=True)
class Capabilities:
    reductions: frozenset = frozenset(REDUCTIONS)
    log_target: bool = True
    default_reduction: bool = True      # may be called without a reduction argument
    dtypes: frozenset = frozenset(DTYPES)
    legacy_args: bool = False           # size_average / reduce
    module_form: bool = False           # the call goes through a loss object
    autograd: bool = False
    devices: tuple = ("cpu",)
    # Canonical reductions klconform computes itself from the library's finer output: the
    # values are still the library's, but the reduction's own claims cannot be judged.
    composed_reductions: frozenset = frozenset()
    ranks: tuple = (0, None)            # (min, max) input rank; None: no upper bound
    # Memory layouts (klconform.adapters.layouts) the adapter passes on to the library as
    # views; empty for adapters that hand their arrays over as they come.
    layouts: frozenset = frozenset()
    # What a distillation loss's record declares: "temperature", "mask", "logits" (an
    # argument it normalises itself). Claims about each are not applicable without it.
    distillation: frozenset = frozenset()
    # The library compiles per input shape: properties draw from strategies.FIXED_SHAPES.
    fixed_shapes: bool = False

    def as_dict(self):
        return {
            "reductions": sorted(self.reductions), "log_target": self.log_target,
            "default_reduction": self.default_reduction, "dtypes": sorted(self.dtypes),
            "legacy_args": self.legacy_args, "module_form": self.module_form,
            "autograd": self.autograd, "devices": list(self.devices),
            "composed_reductions": sorted(self.composed_reductions),
            "ranks": list(self.ranks),
            "layouts": sorted(self.layouts),
            "distillation": sorted(self.distillation),
            "fixed_shapes": self.fixed_shapes,
        }


# The label of a divisor that counts masked rows too (Plan.divisors).
PADDED_ROWS = "padded rows"


@dataclass(frozen=True)
class Plan:
    """How an adapter will carry out one canonical call, known before it is made.

    `unsupported` is the reason the call cannot be made at all. `composed` says a reduction
    is klconform's arithmetic over the library's output; `conversions` name arguments that
    klconform converted between spaces (each adds a rounding the budget must allow).
    """

    unsupported: str | None = None
    composed: str | None = None
    conversions: tuple = ()            # e.g. ("prediction: exp", "target: log")
    # (claim, reason) pairs this call cannot judge whatever the case: a gradient with respect
    # to logits is not the gradient with respect to log-probabilities, say.
    unjudged: tuple = ()
    # The value is `scale` times KL(P||Q): a distillation loss's declared T**2 factor.
    scale: float = 1.0
    # Arguments the library normalises itself (logits): its own log_softmax/softmax rounds
    # in the dtype, which the budget allows for.
    normalised: tuple = ()
    # Arguments whose gradient is taken with respect to logits: the softmax's own term is part
    # of the expected gradient ((Q - P), not -P).
    logits_gradients: tuple = ()
    # A canonical reduction rescaled from a scalar output: what that output declares it
    # divides by, and (label, divisor) of the other divisors it could have used instead, so
    # a wrong divisor is named as such.
    declared_meaning: str | None = None
    declared_divisor: float = 1.0
    divisors: tuple = ()


@dataclass(frozen=True)
class Call:
    input: np.ndarray
    target: np.ndarray
    dtype: str
    reduction: str | None = None       # None: leave the argument out (the default)
    log_target: bool | None = None     # None: leave the argument out
    legacy: dict = field(default_factory=dict)
    device: str = "cpu"
    input_dtype: str | None = None     # overrides dtype for one argument (promotion probes)
    target_dtype: str | None = None
    # Arguments that require grad in gradients(): distillation differentiates through the
    # input only (detached teacher), VAEs and some RL losses through the target only.
    requires_grad: tuple = ("input", "target")
    # None: contiguous arrays. Otherwise a name from klconform.adapters.layouts.LAYOUTS:
    # the adapter passes views in that layout holding the same values.
    layout: str | None = None
    # Distillation losses: the temperature to call at (None: the record's own, else 1), and
    # which positions along every axis but the class axis count (True) - None: all of them.
    temperature: float | None = None
    mask: np.ndarray | None = None

    def dtype_of(self, argument):
        override = self.input_dtype if argument == "input" else self.target_dtype
        return override or self.dtype

    def keyword_arguments(self):
        kwargs = dict(self.legacy)
        if self.reduction is not None:
            kwargs["reduction"] = self.reduction
        if self.log_target is not None:
            kwargs["log_target"] = self.log_target
        return kwargs


@dataclass(frozen=True)
class Observation:
    value: np.ndarray      # float64 copy of the result
    dtype: str             # the result's dtype as the library names it
    shape: tuple
    warnings: tuple = ()   # "Category: message" strings raised during the call


class ImplementationResultError(Exception):
    """The implementation returned something that is not a result (wrong type)."""


def refuse_call_when_described(adapter_name):
    """What an adapter loaded with describe_only raises when asked to make a call."""
    raise RuntimeError(f"klconform: the adapter of {adapter_name} was loaded only to describe "
                       f"it (describe_only); its calls go to the call worker")


class Adapter:
    """Subclass and implement `compute` (and `gradients` if capabilities.autograd)."""

    name = "unnamed"
    capabilities = Capabilities()
    # What names the implementation this adapter calls for as long as the process lives,
    # or None: engine.prepared keeps an observation of a case's call under it.
    observation_key = None

    def version(self) -> str:
        """The version of the distribution the adapter's module was installed from."""
        return distribution_version(type(self).__module__) or "unknown"

    def describe(self) -> str:
        return self.name

    def compute(self, call: Call) -> Observation:
        raise NotImplementedError(f"adapter {self.name!r} does not implement compute()")

    def gradients(self, call: Call):
        """(d input, d target) of the sum of the result, as float64 numpy arrays.

        Only the arguments named in call.requires_grad require grad; the other one's
        gradient is None.
        """
        raise NotImplementedError(f"adapter {self.name!r} declares no autograd")

    def plan(self, call: Call) -> Plan:
        """Whether and how this adapter carries out `call` (from its capabilities)."""
        return Plan(unsupported=capability_gap(self.capabilities, call))

    def snippet(self, call: Call) -> str:
        """Python source reproducing the call outside klconform.

        It may use `input_values` and `target_values`: float64 numpy arrays holding the exact
        values of the call, defined by the lines klconform.engine.snippets puts before it.
        """
        return (
            "from klconform.adapters import load_adapter\n"
            "from klconform.adapters.base import Call\n"
            f"adapter = load_adapter({self.name!r})\n"
            f"print(adapter.run(Call(input_values, target_values, dtype={call.dtype!r}, "
            f"reduction={call.reduction!r}, log_target={call.log_target!r}, "
            f"legacy={call.legacy!r}, device={call.device!r})))\n"
        )

    def run_gradients(self, call: Call):
        """gradients() with the library's warnings kept out of the test output."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.gradients(call)

    def run(self, call: Call) -> Observation:
        """compute() with every warning the library raises captured into the observation."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            observation = self.compute(call)
        if not isinstance(observation, Observation):
            raise ImplementationResultError(
                f"adapter {self.name!r} returned {type(observation).__name__}, not an Observation"
            )
        messages = tuple(f"{w.category.__name__}: {w.message}" for w in caught)
        return Observation(observation.value, observation.dtype, observation.shape,
                           observation.warnings + messages)


def capability_gap(caps: Capabilities, call: Call):
    """What `call` asks for that the capabilities lack, as a phrase; None if nothing."""
    if call.dtype not in caps.dtypes:
        return f"dtype {call.dtype}"
    if call.device.split(":")[0] not in caps.devices:
        return f"device {call.device} (has {', '.join(caps.devices)})"
    rank = np.ndim(call.input)
    low, high = caps.ranks
    if rank < low or (high is not None and rank > high):
        return f"rank-{rank} inputs (takes ranks {low} to {'any' if high is None else high})"
    if call.reduction is None and not caps.default_reduction:
        return "calls without a reduction argument"
    if call.reduction is not None:
        if not caps.reductions:
            return "a reduction argument"
        if call.reduction in REDUCTIONS and call.reduction not in caps.reductions:
            return f"reduction {call.reduction!r}"
    if call.log_target is not None and not caps.log_target:
        return f"a log_target argument (log_target={call.log_target})"
    if call.legacy and not caps.legacy_args:
        return "legacy size_average/reduce arguments"
    if call.mask is not None and not np.all(call.mask) and "mask" not in caps.distillation:
        return "masked positions (no mask argument)"
    if call.temperature not in (None, 1.0) and "temperature" not in caps.distillation:
        return f"a temperature (T = {call.temperature:g})"
    return None
