"""Adapter for klconform's own numpy implementation (klconform.adapters.numpy_reference)."""

import numpy as np

from klconform.adapters import layouts
from klconform.adapters import numpy_reference as reference_numpy
from klconform.adapters.base import Adapter, Call, Capabilities, Observation


class NumpyAdapter(Adapter):
    name = "numpy"
    # numpy has no bfloat16 and no autograd.
    capabilities = Capabilities(dtypes=frozenset({"float16", "float32", "float64"}),
                                layouts=frozenset(layouts.LAYOUTS))

    def version(self):
        return np.__version__

    def describe(self):
        return "klconform.adapters.numpy_reference.kl_div (numpy)"

    def compute(self, call: Call) -> Observation:
        input = layouts.numpy_view(np.asarray(call.input).astype(call.dtype_of("input")),
                                   call.layout)
        target = layouts.numpy_view(np.asarray(call.target).astype(call.dtype_of("target")),
                                    call.layout)
        result = np.asarray(reference_numpy.kl_div(input, target, **call.keyword_arguments()))
        return Observation(result.astype(np.float64), str(result.dtype), result.shape)

    def snippet(self, call: Call):
        kwargs = ", ".join(f"{key}={value!r}" for key, value in call.keyword_arguments().items())
        return (
            "from klconform.adapters.numpy_reference import kl_div\n"
            f"print(kl_div(input_values.astype(np.{call.dtype_of('input')}), "
            f"target_values.astype(np.{call.dtype_of('target')}){', ' if kwargs else ''}"
            f"{kwargs}))\n"
        )
