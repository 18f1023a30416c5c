"""jax arrays; gradients through jax.grad.

jax silently turns float64 into float32 unless 64-bit mode is on, so a record that lists
float64 must ask for `setup: {jax_enable_x64: true}`, and from_numpy refuses to hand over an
array whose dtype is not the one asked for rather than let a float32 result pass as float64.
"""

import os

import numpy as np

from klconform.adapters.arrays import ArrayBridge, not_an_array
from klconform.adapters.base import ImplementationResultError
from klconform.short_text import first_line

# klconform's device names -> jax's platform names.
PLATFORMS = {"cpu": "cpu", "cuda": "gpu"}


class JaxBridge(ArrayBridge):
    name = "jax"
    distribution = "jax"

    def setup(self, setup):
        import jax

        if "jax_enable_x64" in setup:
            # Must precede the first array: jax fixes its default dtypes on first use.
            jax.config.update("jax_enable_x64", bool(setup["jax_enable_x64"]))

    def can_share_compilations(self):
        # The user's own persistent cache is left as they set it up.
        return "JAX_COMPILATION_CACHE_DIR" not in os.environ

    def compilation_scope(self):
        import jax
        import jaxlib
        import jaxlib.version

        from klconform import program_store

        # The native libraries' sizes and times too: an in-place reinstall of another build
        # keeps the version, and its programs crash a process of this one.
        folder = os.path.dirname(jaxlib.__file__)
        native = sorted((entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
                        for entry in os.scandir(folder)
                        if entry.name.endswith((".so", ".pyd", ".dylib")))
        return program_store.scope("jax", jax.__version__, jaxlib.version.__version__, native)

    def share_compilations(self, directory, writes):
        import jax
        from jax.experimental.compilation_cache import compilation_cache

        # A forked child given another folder (convention.compile_apart): jax opens the
        # folder it was given once, at its first compilation, which may have come before.
        compilation_cache.reset_cache()
        jax.config.update("jax_compilation_cache_dir", str(directory))
        # Without this, jax puts the folder's name into the compile options that key its
        # entries, and no process could find what another compiled into another folder.
        jax.config.update("jax_persistent_cache_enable_xla_caches", "none")
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        # A reader never writes: an entry is whole when it appears (moved in, not written).
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          0.0 if writes else float("inf"))

    def from_numpy(self, values, dtype, device):
        import jax
        import jax.numpy as jnp

        values = np.asarray(values, dtype=np.float64)
        if dtype == "bfloat16":
            # numpy has no bfloat16; the values are exact in float32 and in bfloat16.
            values = values.astype(np.float32)
        platform = PLATFORMS.get(device.split(":")[0], device)
        try:
            target_device = jax.devices(platform)[0]
        except RuntimeError as error:
            raise ImplementationResultError(f"jax has no {device} device ({error})") from None
        # Converted here, not by jnp.asarray on the device: that is a dispatched operation per
        # call (0.8 ms of a 1.2 ms call), and the values are exact in the dtype either way.
        array = jax.device_put(values.astype(getattr(jnp, dtype)), target_device)
        if str(array.dtype) != dtype:
            raise ImplementationResultError(
                f"jax made a {array.dtype} array when {dtype} was asked for (64-bit mode "
                "needs `setup: {jax_enable_x64: true}` in the record)")
        return array

    def to_numpy(self, result):
        import jax

        if not isinstance(result, jax.Array):
            raise not_an_array(result, "a jax.Array", self.name)
        value = np.asarray(result).astype(np.float64)
        return value, str(result.dtype), tuple(result.shape)

    def gradients(self, function, first, second):
        import jax
        import jax.numpy as jnp

        self.to_numpy(function(first, second))  # a clear message for non-array results
        if isinstance(function, BoundCall):
            grads = function.gradients(first, second)
        else:
            grads = jax.grad(lambda a, b: jnp.sum(function(a, b)), argnums=(0, 1))(first,
                                                                                   second)
        return tuple(np.asarray(grad).astype(np.float64) for grad in grads)

    def compiled(self, function):
        return Compiled(function)

    def devices(self):
        import jax

        found = ["cpu"]
        try:
            if jax.devices("gpu"):
                found.append("cuda")
        except RuntimeError:
            pass
        return tuple(found)


BRIDGE = JaxBridge()


class Compiled:
    """A function of (prediction, target, **keywords) under jax.jit.

    Operation by operation, jax compiles each primitive for each new shape and dtype (about
    forty small programs for a value and its gradients, measured 1.4 s at a new shape against
    0.25 s as two programs). Keyword arguments that are not arrays (a reduction name, an axis,
    a temperature) are static, so a function may branch on them as training code does.
    """

    def __init__(self, function):
        self.function = function
        self._programs = {}

    def bind(self, keywords):
        return BoundCall(self, keywords)

    def program(self, kind, keywords):
        import jax
        import jax.numpy as jnp

        static = tuple(sorted(name for name, value in keywords.items()
                              if not isinstance(value, jax.Array)))
        key = (kind, static)
        if key not in self._programs:
            value = self.function
            program = value
            if kind == "gradients":
                def summed(prediction, target, **named):
                    return jnp.sum(value(prediction, target, **named))

                program = jax.grad(summed, argnums=(0, 1))
            self._programs[key] = jax.jit(program, static_argnames=static)
        return self._programs[key]

    def run(self, kind, prediction, target, keywords):
        import jax

        try:
            return self.program(kind, keywords)(prediction, target, **keywords)
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                jax.errors.TracerBoolConversionError,
                jax.errors.TracerIntegerConversionError) as error:
            raise ImplementationResultError(
                f"it cannot be traced by jax.jit, which its record asks for (jit: true): "
                f"{type(error).__name__}: {first_line(error)}; set jit: false to call it "
                f"operation by operation") from None


class BoundCall:
    """A compiled function with one call's keyword arguments: called with (prediction,
    target) like any implementation call, and asked for its gradients by the bridge."""

    def __init__(self, compiled, keywords):
        self.compiled = compiled
        self.keywords = keywords

    def __call__(self, prediction, target):
        return self.compiled.run("value", prediction, target, self.keywords)

    def gradients(self, prediction, target):
        return self.compiled.run("gradients", prediction, target, self.keywords)
