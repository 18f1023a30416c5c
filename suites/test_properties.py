"""The property layer: Hypothesis-drawn examples against the implementation under test.

One test per property of the table klconform.engine.properties.PROPERTIES, at each dtype:
test ids are `test_property[<property id>-<dtype>]`, records carry the case id
`property:<property id>`. The default profile draws the same examples every run;
`--kl-profile thorough` draws fresh ones (from `--kl-seed`, or a seed chosen and recorded
in report.json under run.settings).

A failure prints the shrunk example, its reproducing snippet and the command that turns it
into a YAML case (`klconform case-from-example`).
"""


def test_property(kl_property, kl_dtype, kl_check_property):
    kl_check_property(kl_property, kl_dtype)
