"""mindspore tensors (CPU, PyNative mode); gradients through mindspore.grad."""

import numpy as np

from klconform.adapters.arrays import ArrayBridge, not_an_array, staged_for


class MindsporeBridge(ArrayBridge):
    name = "mindspore"
    distribution = "mindspore"

    def from_numpy(self, values, dtype, device):
        import mindspore

        staged = staged_for(values, dtype)
        tensor = mindspore.Tensor(staged)
        wanted = getattr(mindspore, dtype)
        return tensor if tensor.dtype == wanted else tensor.astype(wanted)

    def to_numpy(self, result):
        import mindspore

        if not isinstance(result, mindspore.Tensor):
            raise not_an_array(result, "a mindspore.Tensor", self.name)
        # mindspore names dtypes Float32, BFloat16...; klconform's names are lower case.
        dtype = str(result.dtype).lower()
        value = result.astype(mindspore.float64).asnumpy().astype(np.float64).copy()
        return value, dtype, tuple(result.shape)

    def gradients(self, function, first, second):
        import mindspore

        self.to_numpy(function(first, second))  # a clear message for non-tensor results
        grads = mindspore.grad(lambda a, b: function(a, b).sum(), grad_position=(0, 1))(
            first, second)
        return tuple(None if grad is None else self.to_numpy(grad)[0] for grad in grads)


BRIDGE = MindsporeBridge()
