"""The property layer: Hypothesis-drawn examples against the implementation under test.

One test per property of the table klconform.engine.properties.PROPERTIES, at each dtype:
test ids are `test_property[<property id>-<dtype>]`, records carry the case id
`property:<property id>`. The default profile draws the same examples every run;
`--kl-profile thorough` draws fresh ones (from `--kl-seed`, or a seed chosen and recorded
in report.json under run.settings).

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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("property_id", list(BY_ID))
def test_property(check_property, property_id, dtype):
    check_property(property_id, dtype)
