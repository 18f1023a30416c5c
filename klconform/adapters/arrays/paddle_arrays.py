"""paddle tensors (CPU); gradients through paddle.grad."""


from klconform.adapters.arrays import ArrayBridge, not_an_array, staged_for


class PaddleBridge(ArrayBridge):
    name = "paddle"
    distribution = "paddlepaddle"

    def from_numpy(self, values, dtype, device):
        import paddle

        staged = staged_for(values, dtype)
        tensor = paddle.to_tensor(staged, place=paddle.CPUPlace())
        return tensor if str(tensor.dtype).endswith(dtype) else tensor.astype(dtype)

    def to_numpy(self, result):
        import paddle

        if not isinstance(result, paddle.Tensor):
            raise not_an_array(result, "a paddle.Tensor", self.name)
        value = result.astype("float64").numpy().copy()
        return value, str(result.dtype).removeprefix("paddle."), tuple(result.shape)

    def gradients(self, function, first, second):
        import paddle

        first = first.detach()
        second = second.detach()
        first.stop_gradient = False
        second.stop_gradient = False
        result = function(first, second)
        self.to_numpy(result)  # a clear message for non-tensor results
        grads = paddle.grad([result.sum()], [first, second], allow_unused=True)
        return tuple(None if grad is None else grad.astype("float64").numpy()
                     for grad in grads)


BRIDGE = PaddleBridge()
