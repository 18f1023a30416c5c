"""numpy arrays (no bfloat16, no autograd)."""

import numpy as np

from klconform.adapters.arrays import ArrayBridge, not_an_array


class NumpyBridge(ArrayBridge):
    name = "numpy"
    distribution = "numpy"

    def from_numpy(self, values, dtype, device):
        return np.asarray(values, dtype=np.float64).astype(dtype)

    def to_numpy(self, result):
        if isinstance(result, np.generic):
            result = np.asarray(result)
        if not isinstance(result, np.ndarray):
            raise not_an_array(result, "a numpy array", self.name)
        return result.astype(np.float64), str(result.dtype), tuple(result.shape)


BRIDGE = NumpyBridge()
