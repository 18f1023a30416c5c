"""Hypothesis strategies for the property layer: shapes, distributions, calls.

Hypothesis draws the structure (shape, kind of distribution, scale, reduction, log_target,
generator seed) and shrinks it; the example is made from those draws by engine.drawn.
Drawing every element through Hypothesis would make large last dimensions slow without
finding more.
"""

import math
from functools import cache

from hypothesis import strategies as st

from klconform.engine.drawn import (
    POSITIVE_KINDS,
    Options,
    example_from_draws,
    one_hot_from_draws,
    permutation_from_seed,
    target_kinds,
)

MAX_ELEMENTS = 4096        # keeps one example (and its reproducing snippet) small
LARGE_LAST_DIM = (100, 1024)  # vocabulary-like rows, where summation order matters


# Strategies are built once and reused across draws: building one costs far more than
# drawing from it, and the same strategy draws the same examples from the same choices.
_GENERATOR_SEEDS = st.integers(0, 2**32 - 1)


@cache
def _sampled(options):
    return st.sampled_from(options)


@cache
def _integers(low, high):
    return st.integers(low, high)


@cache
def _leading_dims(count):
    return st.lists(_integers(1, 4), min_size=count, max_size=count)


@cache
def _last_dims(min_last):
    return st.one_of(_integers(max(min_last, 1), 8), _integers(*LARGE_LAST_DIM))


# For a library that compiles per input shape (Capabilities.fixed_shapes), by rank, smallest
# first (Hypothesis shrinks toward the first): each rank keeps size 1, rows of one element
# and vocabulary-like rows, so every property still meets those edges, and each shape is
# compiled once for the whole run instead of once per drawn example.
FIXED_SHAPES = {
    0: ((),),
    1: ((1,), (5,), (1024,)),
    2: ((1, 1), (3, 1), (3, 5), (2, 1024)),
    3: ((1, 1, 1), (2, 3, 1), (2, 3, 5), (1, 2, 1024)),
    4: ((1, 1, 1, 1), (2, 1, 3, 1), (2, 1, 3, 5), (1, 2, 1, 1024)),
}


@cache
def cached_shapes(min_dims=0, max_dims=4, min_last=1, fixed=False):
    """Shapes of min_dims to max_dims dimensions, the last at least min_last: drawn, or
    (`fixed`) sampled from FIXED_SHAPES."""
    if fixed:
        return st.sampled_from(tuple(
            shape for rank in range(min_dims, max_dims + 1) for shape in FIXED_SHAPES[rank]
            if not shape or shape[-1] >= min_last))
    return shapes(min_dims, max_dims, min_last)


@st.composite
def shapes(draw, min_dims=0, max_dims=4, min_last=1):
    """0-d to 4-d shapes: small leading dims (size 1 included), small or large last dim."""
    ndim = draw(_integers(min_dims, max_dims))
    if ndim == 0:
        return ()
    leading = draw(_leading_dims(ndim - 1))
    last = draw(_last_dims(min_last))
    rows = math.prod(leading)
    last = max(min_last, min(last, MAX_ELEMENTS // rows))
    return (*leading, last)


EVERY_OPTION = Options()


@st.composite
def examples(draw, dtype, reductions, log_targets, options=EVERY_OPTION, fixed=False):
    """An Example at `dtype`: P (target) and Q (input, log space) on drawn shapes (from
    FIXED_SHAPES where `fixed`)."""
    shape = draw(cached_shapes(options.min_dims, options.max_dims, options.min_last, fixed))
    reduction = draw(_sampled(tuple(reductions)))
    log_target = draw(_sampled(tuple(log_targets)))
    target_kind = draw(_sampled(target_kinds(options, log_target)))
    input_kind = target_kind if options.identical else draw(_sampled(POSITIVE_KINDS))
    scale = draw(_sampled((1.0, 0.1, 4.0, 1e-6)))
    seed = draw(_GENERATOR_SEEDS)
    return example_from_draws(dtype, options, (shape, reduction, log_target, target_kind,
                                               input_kind, scale, seed))


@st.composite
def one_hot_examples(draw, dtype, max_dims=4, fixed=False):
    """log_softmax(logits) as input and a one-hot target, with the logits kept."""
    shape = draw(cached_shapes(2, max(max_dims, 2), 1, fixed))
    scale = draw(_sampled((1.0, 0.1, 4.0, 30.0)))
    seed = draw(_GENERATOR_SEEDS)
    return one_hot_from_draws(dtype, (shape, scale, seed))


def permutations_of(size):
    """(generator seed, permutation of range(size)): drawn through the seed, which shrinks
    to a rotation."""
    return _GENERATOR_SEEDS.map(lambda seed: (seed, permutation_from_seed(seed, size)))


