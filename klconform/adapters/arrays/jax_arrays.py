"""jax arrays; gradients through jax.grad.

jax silently turns float64 into float32 unless 64-bit mode is on, so a record that lists
float64 must ask for `setup: {jax_enable_x64: true}`, and from_numpy refuses to hand over an
array whose dtype is not the one asked for rather than let a float32 result pass as float64.
"""

import numpy as np

from klconform.adapters.arrays import ArrayBridge, not_an_array
from klconform.adapters.base import ImplementationResultError

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
        array = jax.device_put(jnp.asarray(values, dtype=getattr(jnp, dtype)), target_device)
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
        grads = jax.grad(lambda a, b: jnp.sum(function(a, b)), argnums=(0, 1))(first, second)
        return tuple(np.asarray(grad).astype(np.float64) for grad in grads)

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
