"""Memory layouts that real callers pass: views that hold the same values as a contiguous array.

A kernel that reads raw memory as if it were contiguous gets these wrong. Every layout here is
built from the values an adapter would otherwise pass contiguously, in the library's own
array type, after the cast to the dtype under test (a cast copies, and the copy would be
contiguous again). Where a layout leaves gaps in memory they hold NaN, so reading them shows.

  transposed     the last two axes stored swapped (2-d and up)
  stepped        every other element of an array twice as long on the last axis
  expanded       a stride-0 leading axis: one slice repeated (the call's arrays are already
                 that repetition, see logical())
  offset         contiguous, but starting 7 elements into its storage
  channels_last  4-d, stored NHWC (torch.channels_last)
"""

import numpy as np

LAYOUTS = ("transposed", "stepped", "expanded", "offset", "channels_last")
OFFSET = 7          # elements of NaN before the values, in layout "offset"
EXPANDED_COPIES = 2


def applies(layout, shape):
    """Whether `layout` makes a non-contiguous (or offset) view of arrays of `shape`."""
    if layout == "transposed":
        return len(shape) >= 2 and shape[-1] > 1 and shape[-2] > 1
    if layout == "stepped":
        return len(shape) >= 1 and shape[-1] > 1
    if layout == "channels_last":
        return len(shape) == 4 and shape[1] > 1 and shape[2] * shape[3] > 1
    return layout in ("expanded", "offset")


def logical(values, layout):
    """The values a call in `layout` holds (float64 numpy): expanded repeats them."""
    values = np.asarray(values)
    if layout == "expanded":
        return np.repeat(values[np.newaxis], EXPANDED_COPIES, axis=0)
    return values


def numpy_view(values, layout):
    """`values` (already in the dtype under test) as a numpy view in `layout`."""
    if layout is None:
        return values
    if layout == "transposed":
        return np.ascontiguousarray(np.swapaxes(values, -1, -2)).swapaxes(-1, -2)
    if layout == "stepped":
        storage = np.full((*values.shape[:-1], 2 * values.shape[-1]), np.nan, values.dtype)
        storage[..., ::2] = values
        return storage[..., ::2]
    if layout == "expanded":
        return np.broadcast_to(values[:1], values.shape)
    if layout == "offset":
        storage = np.full(values.size + OFFSET, np.nan, values.dtype)
        storage[OFFSET:] = values.ravel()
        return storage[OFFSET:].reshape(values.shape)
    if layout == "channels_last":
        return np.ascontiguousarray(values.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    raise ValueError(f"unknown layout {layout!r}")


def torch_view(tensor, layout):
    """`tensor` (already in the dtype and device under test) as a torch view in `layout`."""
    import torch

    if layout is None:
        return tensor
    if layout == "transposed":
        return tensor.mT.contiguous().mT
    if layout == "stepped":
        storage = torch.full((*tensor.shape[:-1], 2 * tensor.shape[-1]), float("nan"),
                             dtype=tensor.dtype, device=tensor.device)
        storage[..., ::2] = tensor
        return storage[..., ::2]
    if layout == "expanded":
        return tensor[:1].expand(tensor.shape)
    if layout == "offset":
        storage = torch.full((tensor.numel() + OFFSET,), float("nan"), dtype=tensor.dtype,
                             device=tensor.device)
        storage[OFFSET:] = tensor.reshape(-1)
        return storage[OFFSET:].view(tensor.shape)
    if layout == "channels_last":
        return tensor.contiguous(memory_format=torch.channels_last)
    raise ValueError(f"unknown layout {layout!r}")


# For reproducing snippets: the line that turns a contiguous `name` into the layout.
TORCH_SOURCE = {
    "transposed": "{name} = {name}.mT.contiguous().mT",
    "stepped": ("{name} = torch.stack([{name}, torch.full_like({name}, float('nan'))], -1)"
                ".flatten(-2)[..., ::2]"),
    "expanded": "{name} = {name}[:1].expand({name}.shape)",
    "offset": (f"{{name}} = torch.cat([torch.full(({OFFSET},), float('nan'), dtype={{name}}"
               f".dtype), {{name}}.reshape(-1)])[{OFFSET}:].view({{name}}.shape)"),
    "channels_last": "{name} = {name}.contiguous(memory_format=torch.channels_last)",
}
