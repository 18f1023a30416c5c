"""`klconform diagnose` on training-repository distillation losses.

Every correct loss is diagnosed to the record written for it by hand (convention, ranks,
temperature, mask, fixed keywords); every mutant gives a finding on a claim, told what the
probes cannot decide the way a user would (--assume from its base loss's record: the student
argument, the class axis, the T**2 factor, the output); what is not a KL is named.

"0 findings implies the run passes": a loss diagnosed without findings gets its hand-written
record, which test_judged.py runs to a pass; one loss is run here from the diagnosed record
itself, the others in the slow tests.
"""

import pytest
import yaml

from klconform.authoring.diagnose import diagnose, diagnose_command, record_text
from klconform.authoring.record_compare import convention_differences
from tests.distillation.mutants import CORRECT, WRONG, record_path
from tests.distillation.test_judged import MUTANT_DTYPES, failing_must, impl_of, judged

# Compared beyond the convention: a distillation loss's ranks are part of how it is called.
ALSO_COMPARED = ("ranks",)
# The one correct loss with a finding: it computes in float32 inside (its record leaves
# float64 out of its dtypes, and the run fails accuracy-in-dtype where a record keeps it).
EXPECTED_FINDINGS = {"upcast-kd-sum": "accuracy-in-dtype"}
NOT_KL = "tests.distillation.not_kl"


def hand_written(name):
    return yaml.safe_load(record_path(name).read_text())


def assumptions(record):
    """What a user who knows their loss states: which argument is the student, the class
    axis, whether T**2 is meant, what the output divides by."""
    found = {"first": record["arguments"][0],
             "axis": str((record.get("axis") or {}).get("value", -1))}
    if record.get("temperature"):
        found["scaled"] = "yes" if record["temperature"]["scaled"] else "no"
    if record.get("output"):
        found["output"] = record["output"]
    return found


def differences(diagnosed, written):
    found = convention_differences(diagnosed, written)
    return found + [f"{key}: {diagnosed.get(key)!r} != {written.get(key)!r}"
                    for key in ALSO_COMPARED if diagnosed.get(key) != written.get(key)]


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_each_loss_is_diagnosed_to_its_hand_written_record(name):
    written = hand_written(name)
    result = diagnose(written["function"], call=written.get("call"))
    assert result.record is not None, result.ambiguities
    assert differences(result.record.data, written) == []
    expected = EXPECTED_FINDINGS.get(name)
    assert [finding for finding in result.findings
            if not (expected and finding.endswith(f"[the run fails {expected}]"))] == []
    if expected:
        assert any(finding.endswith(f"[the run fails {expected}]")
                   for finding in result.findings), result.findings


@pytest.mark.parametrize("name", sorted(WRONG))
def test_each_mutant_gives_a_finding(name):
    """A finding naming a claim, or (a dim keyword ignored for the softmax and used for the
    sum, which no reading has) a refusal: never a record without a finding."""
    mutant = WRONG[name]
    written = hand_written(mutant.record)
    result = diagnose(mutant.impl, assumptions(written), call=written.get("call"))
    if result.record is None:
        assert result.ambiguities and not result.not_a_kl, name
        return
    assert result.findings, f"{name}: a record without a finding"
    assert all("[the run fails " in finding for finding in result.findings), result.findings


def test_a_record_diagnosed_without_findings_passes_its_run(tmp_path):
    name = "token-kd-labels"
    result = diagnose(impl_of(CORRECT[name]))
    assert result.findings == []
    path = tmp_path / "diagnosed.yaml"
    path.write_text(record_text(result.record))
    assert failing_must(judged(impl_of(CORRECT[name]), path)) == set()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(CORRECT) - set(EXPECTED_FINDINGS)))
def test_every_loss_diagnosed_without_findings_passes_its_run(tmp_path, name):
    written = hand_written(name)
    result = diagnose(written["function"], call=written.get("call"))
    assert result.findings == []
    path = tmp_path / "diagnosed.yaml"
    path.write_text(record_text(result.record))
    assert failing_must(judged(written["function"], path)) == set()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WRONG))
def test_a_mutant_diagnosed_without_assumptions_fails_its_run_or_has_a_finding(tmp_path,
                                                                               name):
    """Without --assume, a mutant that is a valid convention of its own (a reverse KL, a KL
    over the last axis) gets that record; every other one still gets a finding."""
    mutant = WRONG[name]
    result = diagnose(mutant.impl, call=hand_written(mutant.record).get("call"))
    if result.record is None or result.findings:
        return
    path = tmp_path / "diagnosed.yaml"
    path.write_text(record_text(result.record))
    failing = failing_must(judged(mutant.impl, path, MUTANT_DTYPES))
    conventions = {"roles", "class-axis", "temperature-scaling", "token-mean-divisor"}
    assert failing or set(mutant.breaks) <= conventions, name


@pytest.mark.parametrize("function, named", [
    ("soft_label_cross_entropy", "cross-entropy"),
    ("symmetric_jsd", "Jensen-Shannon"),
])
def test_what_is_not_a_kl_is_named_and_gets_no_record(capsys, function, named):
    assert diagnose_command(f"{NOT_KL}:{function}", None, []) == 1
    out = capsys.readouterr().out
    assert "NOT A KL" in out and named in out and "no record inferred" in out


def test_a_generalised_jsd_is_named_and_the_beta_that_makes_it_a_kl_is_offered():
    result = diagnose("tests.distillation.losses:gkd_jsd")
    assert result.record is None and "Jensen-Shannon" in result.not_a_kl
    assert any("--call beta=0.0" in line for line in result.ambiguities)


def test_a_required_keyword_is_asked_for_not_guessed(capsys):
    assert diagnose_command(f"{NOT_KL}:kd_with_alpha", None, []) == 2
    assert "--call alpha=VALUE" in capsys.readouterr().err
    assert diagnose_command(f"{NOT_KL}:kd_with_alpha", None, [], call_pairs=["alpha=1.0"]) == 0


def test_a_float32_computation_is_a_finding_and_the_record_is_still_written():
    result = diagnose("tests.distillation.losses:upcast_kd_sum")
    assert result.record is not None
    assert any("float32" in finding and finding.endswith("[the run fails accuracy-in-dtype]")
               for finding in result.findings)


def test_a_refusal_names_the_nearest_readings():
    mutant = WRONG["kd_rows_dim_ignored"]
    result = diagnose(mutant.impl)
    assert result.record is None
    assert "nearest:" in result.ambiguities[0]
