"""mlx.core arrays (CPU through mlx-cpu on Linux); gradients through mlx.core.grad."""

import numpy as np

from klconform.adapters.arrays import ArrayBridge, not_an_array


class MlxBridge(ArrayBridge):
    name = "mlx"
    distribution = "mlx"

    def from_numpy(self, values, dtype, device):
        import mlx.core as mx

        values = np.asarray(values, dtype=np.float64)
        # mlx has no bfloat16 numpy counterpart; float32 holds every bfloat16 value exactly.
        staged = values.astype(np.float32) if dtype == "bfloat16" else values.astype(dtype)
        return mx.array(staged, dtype=getattr(mx, dtype))

    def to_numpy(self, result):
        import mlx.core as mx

        if not isinstance(result, mx.array):
            raise not_an_array(result, "an mlx.core.array", self.name)
        dtype = str(result.dtype).removeprefix("mlx.core.")
        # numpy cannot take an mlx bfloat16 buffer; the widening to float32 is exact.
        widened = result.astype(mx.float32) if result.dtype == mx.bfloat16 else result
        return np.array(widened).astype(np.float64), dtype, tuple(result.shape)

    def gradients(self, function, first, second):
        import mlx.core as mx

        def total(a, b):
            result = function(a, b)
            if not isinstance(result, mx.array):  # evaluating a traced array is not allowed
                raise not_an_array(result, "an mlx.core.array", self.name)
            return mx.sum(result)

        grads = mx.grad(total, argnums=(0, 1))(first, second)
        return tuple(self.to_numpy(grad)[0] for grad in grads)


BRIDGE = MlxBridge()
