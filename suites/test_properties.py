"""The property layer: Hypothesis-drawn examples against the implementation under test.

One test per property (klconform.engine.properties.PROPERTIES), at each dtype: test ids are
`<property id>-<dtype>`, records carry the case id `property:<property id>`. The default
profile draws the same examples every run; `--kl-profile thorough` draws fresh ones (from
`--kl-seed`, or a seed chosen and recorded in report.json under run.settings).

A failure prints the shrunk example, its reproducing snippet and the command that turns it
into a YAML case (`klconform case-from-example`).
"""

import os

import pytest

from klconform.dtypes import DTYPES
from klconform.engine.properties import BY_ID, run_property, session_seed
from klconform.harness.options import replay_command
from klconform.harness.session import kl_session

pytestmark = pytest.mark.klconform


@pytest.fixture
def check_property(request, kl_adapter, kl_device, kl_timeout, kl_conclude):
    state = kl_session(request.config)
    seed = session_seed(state)
    example_dir = os.path.join(state.report_dir, "examples")

    def check(property_id, dtype):
        replay = replay_command(request.node, state)
        kl_conclude(run_property(BY_ID[property_id], kl_adapter, dtype, kl_device, kl_timeout,
                                 seed, example_dir, replay))

    return check


dtypes = pytest.mark.parametrize("dtype", DTYPES)


@dtypes
def test_sum_equals_none_sum(check_property, dtype):
    check_property("sum-equals-none-sum", dtype)


@dtypes
def test_mean_equals_sum_over_numel(check_property, dtype):
    check_property("mean-equals-sum-over-numel", dtype)


@dtypes
def test_batchmean_equals_sum_over_size0(check_property, dtype):
    check_property("batchmean-equals-sum-over-size0", dtype)


@dtypes
def test_log_target_equivalence(check_property, dtype):
    check_property("log-target-equivalence", dtype)


@dtypes
def test_normalized_nonnegative(check_property, dtype):
    check_property("normalized-nonnegative", dtype)


@dtypes
def test_identical_is_zero(check_property, dtype):
    check_property("identical-is-zero", dtype)


@dtypes
def test_asymmetric(check_property, dtype):
    check_property("asymmetric", dtype)


@dtypes
def test_permutation_invariant_sum(check_property, dtype):
    check_property("permutation-invariant-sum", dtype)


@dtypes
def test_none_keeps_shape(check_property, dtype):
    check_property("none-keeps-shape", dtype)


@dtypes
def test_result_dtype(check_property, dtype):
    check_property("result-dtype", dtype)


@dtypes
def test_one_hot_cross_entropy(check_property, dtype):
    check_property("one-hot-cross-entropy", dtype)
