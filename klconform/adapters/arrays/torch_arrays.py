"""torch tensors, on any device torch has; gradients through torch.autograd."""

import numpy as np

from klconform.adapters.arrays import ArrayBridge, not_an_array


class TorchBridge(ArrayBridge):
    name = "torch"
    distribution = "torch"

    def from_numpy(self, values, dtype, device):
        import torch

        tensor = torch.as_tensor(np.asarray(values, dtype=np.float64))
        return tensor.to(device=device, dtype=getattr(torch, dtype))

    def to_numpy(self, result):
        import torch

        if not isinstance(result, torch.Tensor):
            raise not_an_array(result, "a torch.Tensor", self.name)
        value = result.detach().to("cpu", torch.float64).numpy().copy()
        return value, str(result.dtype).removeprefix("torch."), tuple(result.shape)

    def gradients(self, function, first, second):
        import torch

        first = first.detach().requires_grad_(True)
        second = second.detach().requires_grad_(True)
        result = function(first, second)
        self.to_numpy(result)  # a clear message for non-tensor results
        grads = torch.autograd.grad(result.sum(), [first, second], allow_unused=True)
        return tuple(None if grad is None else grad.detach().to("cpu", torch.float64).numpy()
                     for grad in grads)

    def devices(self):
        from klconform.adapters.torch_adapter import torch_devices

        return torch_devices()


BRIDGE = TorchBridge()
