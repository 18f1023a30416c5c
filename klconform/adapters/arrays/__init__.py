"""Array bridges: numpy float64 values in, a library's arrays out, and back.

A convention adapter (klconform.adapters.convention) is generic over the array type; what
differs between numpy, torch, jax, tensorflow, paddle, mindspore and mlx lives in one small
bridge each, registered by the name a record's `arrays:` field uses.
"""

import importlib

import numpy as np

from klconform.adapters.base import ImplementationResultError

BRIDGE_MODULES = {
    "numpy": "klconform.adapters.arrays.numpy_arrays",
    "torch": "klconform.adapters.arrays.torch_arrays",
    "jax": "klconform.adapters.arrays.jax_arrays",
    "tensorflow": "klconform.adapters.arrays.tensorflow_arrays",
    "paddle": "klconform.adapters.arrays.paddle_arrays",
    "mindspore": "klconform.adapters.arrays.mindspore_arrays",
    "mlx": "klconform.adapters.arrays.mlx_arrays",
}


# Set by a run for its call workers, for a record that `compiles_per_shape`
# (klconform.engine.compile_ahead): the folder of programs compiled ahead of the calls and
# kept from earlier runs, and the worker's own, where its library writes what it compiles.
COMPILED_AHEAD_VARIABLE = "KLCONFORM_COMPILED_AHEAD"
COMPILED_HERE_VARIABLE = "KLCONFORM_COMPILED_HERE"


class ArrayBridge:
    """One array library, as the convention adapter needs it. Subclasses fill these in."""

    name = "?"
    distribution = None      # the package whose version identifies the array library

    def setup(self, setup: dict):
        """Library-wide switches a record asks for (jax 64-bit mode, ...), before any call."""

    def can_share_compilations(self):
        """Whether another process can compile this library's programs for this one (a
        compilation cache both read), asked without importing the library."""
        return False

    def compilation_scope(self):
        """The name of the folder, among the shared ones, of programs this process can load:
        those compiled by the same build of the library on the same kind of CPU. Only where
        can_share_compilations()."""
        raise NotImplementedError(f"{self.name} arrays share no compilations")

    def share_compilations(self, directory, writes):
        """Before the first compilation: look up compiled programs in `directory` (and, with
        `writes`, put every one compiled there). Only where can_share_compilations()."""
        raise NotImplementedError(f"{self.name} arrays share no compilations")

    def from_numpy(self, values: np.ndarray, dtype: str, device: str):
        raise NotImplementedError

    def to_numpy(self, result):
        """(float64 values, dtype name, shape) of a result; ImplementationResultError if the
        result is not an array of this library."""
        raise NotImplementedError

    def gradients(self, function, first, second):
        """d sum(function(first, second)) / d first and / d second, as float64 numpy."""
        raise NotImplementedError(f"{self.name} arrays have no autograd bridge")

    def compiled(self, function):
        """`function(prediction, target, **keywords)` as the library's compiler runs it, for
        a record that says `jit: true`; only the bridges of spec.conventions.JIT_ARRAYS have
        one (a record asking it of other arrays is refused when it loads)."""
        raise NotImplementedError(f"{self.name} arrays have no compiler bridge")

    def devices(self):
        return ("cpu",)


def bridge(name) -> ArrayBridge:
    module = importlib.import_module(BRIDGE_MODULES[name])
    return module.BRIDGE


def staged_for(values, dtype):
    """float64 values in the form a library's tensor constructor takes for `dtype`: numpy
    has no bfloat16, so anything below float64 is built as float32 (exact for values already
    rounded to the dtype) and cast by the library."""
    values = np.asarray(values, dtype=np.float64)
    return values if dtype == "float64" else values.astype(np.float32)


def type_name(value):
    """'numpy.ndarray', 'torch.Tensor', 'float': the type as its library spells it."""
    kind = type(value)
    module = getattr(kind, "__module__", "") or ""
    name = getattr(kind, "__qualname__", kind.__name__)
    return name if module in ("builtins", "") else f"{module}.{name}"


def not_an_array(result, expected, arrays):
    """klconform's refusal of a result: the message says what the implementation returned
    and what its record promised, because the report attributes it to klconform (the
    implementation itself raised nothing)."""
    name = type_name(result)
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return ImplementationResultError(
        f"the implementation returned {article} {name} where the record says {arrays} "
        f"arrays: expected {expected}")
