"""The adapter interface: how klconform talks to an implementation under test.

An adapter knows its library and nothing about cases, oracles or reports. It receives a
language-neutral Call (float64 numpy arrays whose values are already exactly representable
in the dtype under test) and returns an Observation (the result as float64 numpy plus what
the library reported about it). Capabilities say what the library can be asked, so a case
needing something else is reported unsupported instead of failed.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

from klconform.dtypes import DTYPES

REDUCTIONS = ("none", "mean", "sum", "batchmean")


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
    # Memory layouts (klconform.adapters.layouts) the adapter passes on to the library as
    # views; empty for adapters that hand their arrays over as they come.
    layouts: frozenset = frozenset()

    def as_dict(self):
        return {
            "reductions": sorted(self.reductions), "log_target": self.log_target,
            "default_reduction": self.default_reduction, "dtypes": sorted(self.dtypes),
            "legacy_args": self.legacy_args, "module_form": self.module_form,
            "autograd": self.autograd, "devices": list(self.devices),
            "layouts": sorted(self.layouts),
        }


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


class Adapter:
    """Subclass and implement `compute` (and `gradients` if capabilities.autograd)."""

    name = "unnamed"
    capabilities = Capabilities()
    source = None   # the --impl string load_adapter made it from (re-created in the call worker)

    def version(self) -> str:
        return "unknown"

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
