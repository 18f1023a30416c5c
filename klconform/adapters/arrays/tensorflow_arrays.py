"""tensorflow tensors; gradients through tf.GradientTape."""

import numpy as np

from klconform.adapters.arrays import ArrayBridge, not_an_array
from klconform.adapters.base import ImplementationResultError

# klconform's device names -> tensorflow's device types.
DEVICE_TYPES = {"cpu": "CPU", "cuda": "GPU"}


class TensorflowBridge(ArrayBridge):
    name = "tensorflow"
    distribution = "tensorflow"

    def _device(self, device):
        import tensorflow as tf

        kind, _, index = device.partition(":")
        device_type = DEVICE_TYPES.get(kind, kind.upper())
        if not tf.config.list_logical_devices(device_type):
            raise ImplementationResultError(f"tensorflow has no {device} device")
        return f"/{device_type}:{index or 0}"

    def from_numpy(self, values, dtype, device):
        import tensorflow as tf

        values = np.asarray(values, dtype=np.float64)
        if dtype == "bfloat16":
            # numpy has no bfloat16; the values are exact in float32 and in bfloat16.
            values = values.astype(np.float32)
        with tf.device(self._device(device)):
            return tf.cast(tf.constant(values), getattr(tf, dtype))

    def to_numpy(self, result):
        import tensorflow as tf

        if not tf.is_tensor(result):
            raise not_an_array(result, "a tensorflow Tensor", self.name)
        value = tf.cast(result, tf.float64).numpy()
        return np.asarray(value, dtype=np.float64), result.dtype.name, tuple(result.shape)

    def gradients(self, function, first, second):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            # Watching the tensors themselves keeps their dtype (a tf.Variable would too, but
            # not every dtype has variables on every device).
            tape.watch(first)
            tape.watch(second)
            result = function(first, second)
            self.to_numpy(result)  # a clear message for non-tensor results
            total = tf.reduce_sum(result)
        grads = tape.gradient(total, [first, second])
        return tuple(None if grad is None else tf.cast(grad, tf.float64).numpy()
                     for grad in grads)

    def devices(self):
        import tensorflow as tf

        return ("cpu", "cuda") if tf.config.list_logical_devices("GPU") else ("cpu",)


BRIDGE = TensorflowBridge()
