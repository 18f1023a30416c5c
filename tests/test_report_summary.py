"""report.md for a pull request: root causes first, one line per repeated error, under the
size GitHub takes whatever fails; report-full.md keeps every failure."""

import random
import string

from klconform.report.markdown import REPORT_MD_LIMIT, render_full_markdown, render_markdown
from klconform.report.root_causes import normalise, root_causes
from tests.suite_runner import implementation_module, run_suite
from tests.test_markdown_escaping import outside_fences, unescaped_pipes

BATCHMEAN_BY_NUMEL = """
    import torch.nn.functional as F

    def kl(input, target, reduction="mean", log_target=False):
        if reduction == "batchmean":
            return F.kl_div(input, target, reduction="sum", log_target=log_target) / input.numel()
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)
"""

RETURNS_NUMPY = """
    import torch.nn.functional as F

    def kl(input, target, reduction="mean", log_target=False):
        return F.kl_div(input, target, reduction=reduction, log_target=log_target).detach().numpy()
"""


def assert_valid_markdown(text):
    lines = text.splitlines()
    kept = outside_fences(lines)   # asserts every fence closes
    columns = None
    for line in kept:
        if line.startswith("|"):
            columns = columns or unescaped_pipes(line)
            assert unescaped_pipes(line) == columns, line
        else:
            columns = None


def test_one_bug_gives_a_short_report_naming_the_root_cause_first(pytester):
    module = implementation_module(pytester, "batchmean_numel_kl", BATCHMEAN_BY_NUMEL)
    run = run_suite(pytester, f"{module}:kl", "-k", "batchmean or roles",
                    suites=("test_cases.py", "test_gradients.py", "test_properties.py"))
    report = run.report
    assert report["verdict"] == "fail"
    markdown = (run.report_dir / "report.md").read_text()
    full = (run.report_dir / "report-full.md").read_text()
    assert len(markdown) < REPORT_MD_LIMIT
    assert_valid_markdown(markdown)
    head = markdown.splitlines()[:40]
    first_cause = next(line for line in head if line.startswith("### 1. "))
    assert "looks like: 'batchmean' computed as 'mean'" in first_cause
    assert any("reduction-batchmean" in line for line in head)
    assert any(line.startswith("**FAIL**: ") for line in head)
    # The diagnosis shows once, however many shapes it was seen at; the full list has all.
    diagnosed = [f for f in report["failures"] if "'batchmean' computed as 'mean'"
                 in (f["diagnosis"] or "")]
    assert len(diagnosed) > 3
    assert markdown.count("computed as 'mean'") == 1
    failure_headings = full.split("\n## Failures\n", 1)[1].count("\n### ")
    assert failure_headings == len(report["failures"])


def test_a_repeated_error_is_reported_once_with_a_count(pytester):
    module = implementation_module(pytester, "numpy_result_kl", RETURNS_NUMPY)
    run = run_suite(pytester, f"{module}:kl", "-k", "roles or batchmean")
    report = run.report
    repeated = [f for f in report["failures"]
                if "returned ndarray, expected a torch.Tensor" in " ".join(f["checks"])]
    assert len(repeated) > 5
    markdown = (run.report_dir / "report.md").read_text()
    headlines = [line for line in markdown.splitlines()
                 if line.startswith("### ") and "returned ndarray" in line]
    # klconform refused the result; the implementation itself raised nothing.
    assert headlines == ["### 1. klconform raised ImplementationResultError: the "
                         "implementation returned ndarray, expected a torch.Tensor"]
    assert f"- the same error, {len(repeated)} times" in markdown
    assert f"**{len(repeated)} tests**" in markdown
    full = (run.report_dir / "report-full.md").read_text()
    assert full.count("returned ndarray") > len(repeated)


def synthetic_report(failures=0, claims=3, deviations=0, implementation_defined=0, seed=0):
    """A report.json-shaped dict; every failure has its own message (no number in common)."""
    rng = random.Random(seed)

    def word(n=12):
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))

    claim_ids = [f"claim-{word(6)}" for _ in range(claims)]
    return {
        "implementation": {"name": "synthetic", "version": "1"},
        "verdict": "fail", "verdict_reason": f"{failures} test(s) failed or errored",
        "coverage": {"checked": claims, "applicable": claims, "unsupported": []},
        "spec_version": "1.0.0", "klconform_version": "0.1.0",
        "run": {"profile": "default", "device": "cpu", "duration_s": 1.0, "partial": []},
        "summary": {"failed": failures},
        "claims": [{"id": claim, "level": "must", "status": "fail", "counts": {"failed": 1},
                    "reasons": [], "cases": []} for claim in claim_ids],
        "deviations": [{"id": claim_ids[i % claims], "reason": word(200),
                        "link": f"https://example.org/{word()}", "source": "record"}
                       for i in range(deviations)],
        "failures": [{
            "case": f"case-{word()}", "dtype": "float32", "claims": [rng.choice(claim_ids)],
            "level": "must", "status": "failed", "nodeid": f"t[{i}]",
            "summary": f"oracle: {word(40)}", "checks": [f"oracle: {word(40)}"],
            "expected": word(500), "actual": word(500), "diagnosis": None,
            "snippet": "\n".join([word(80)] * 60),
        } for i in range(failures)],
        "implementation_defined": [{"point": word(), "dtype": "float32",
                                    "observed": {"note": word(300)}}
                                   for _ in range(implementation_defined)],
    }


def test_thousands_of_distinct_failures_stay_under_the_cap():
    report = synthetic_report(failures=3000)
    markdown = render_markdown(report)
    assert len(markdown) < REPORT_MD_LIMIT
    assert_valid_markdown(markdown)
    assert markdown.startswith("# klconform: synthetic 1 — FAIL")
    assert "## 3000 root causes of 3000 failing or warning tests" in markdown
    # Past the detail budget, root causes become rows, then a count of the rest.
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "case-" in line]
    shown = markdown.count("\n### ") + len(rows)
    assert f"... and {3000 - shown} more root causes ({3000 - shown} tests)" in markdown
    assert "## Claims" in markdown  # later sections still fit
    full = render_full_markdown(report)
    assert len(full) > 10 * REPORT_MD_LIMIT
    assert_valid_markdown(full)


def test_the_hard_cap_cuts_whole_blocks_and_says_what_it_cut():
    report = synthetic_report(failures=2000, claims=2000, deviations=2000,
                              implementation_defined=2000)
    markdown = render_markdown(report)
    assert len(markdown) < REPORT_MD_LIMIT
    assert_valid_markdown(markdown)
    notice = markdown.rstrip().splitlines()[-1]
    assert notice.startswith("**report.md was cut at 60,000 characters.** Left out: ")
    assert "report-full.md" in notice
    # The first section to lose blocks is named, with how many.
    assert "claims (" in notice, notice
    assert "- ... and 1960 more (report-full.md)" in markdown


def test_an_incomplete_run_says_why_at_the_top():
    report = synthetic_report(failures=0)
    report.update(verdict="incomplete", verdict_reason="the run was cut short")
    report["run"]["partial"] = ["the run was cut short (the stream has no footer)"]
    head = render_markdown(report).splitlines()[:8]
    assert "**INCOMPLETE**: the run was cut short." in head
    assert "- the run was cut short (the stream has no footer)" in head


def test_numbers_are_normalised_but_dtype_names_are_not():
    assert normalise("divided by 12") == normalise("divided by 4") == "divided by #"
    assert normalise("d/dinput at [0, 0, 1], got -1.5e-07") == "d/dinput at [#], got #"
    assert normalise("ScalarType BFloat16") == "ScalarType BFloat16"
    assert normalise("float16 vs float32") != normalise("float32 vs float32")
    # One wrong result dtype, whatever half precision went in; another result is another.
    upcast = "result dtype float32 != input dtype float16"
    assert normalise(upcast) == normalise(upcast.replace("float16", "bfloat16"))
    assert normalise(upcast) != normalise(upcast.replace("float32", "float64"))


def test_grouping_by_diagnosis_error_and_check():
    def failure(node, check, diagnosis=None, claims=("reduction-sum",)):
        return {"nodeid": node, "checks": [check], "diagnosis": diagnosis,
                "claims": list(claims), "status": "failed", "level": "must"}

    report = {"claims": [], "failures": [
        failure("a", "oracle: expected 1, got 2", "looks like: 'sum' divided by 12"),
        failure("b", "oracle: expected 3, got 5", "looks like: 'sum' divided by 4"),
        failure("c", "the implementation raised TypeError: bad dtype Half"),
        failure("d", "the implementation raised TypeError on the 'sum' call: bad dtype Half"),
        failure("e", "oracle: expected 1, got 2", claims=("roles",)),
        failure("f", "oracle: expected 7, got 9", claims=("reduction-mean",)),
        failure("g", "the implementation raised TypeError: bad dtype BFloat16"),
    ]}
    groups = {tuple(f["nodeid"] for f in group.failures): group.kind
              for group in root_causes(report)}
    assert groups == {("a", "b"): "diagnosis", ("c", "d"): "error", ("g",): "error",
                      ("e",): "check", ("f",): "check"}


def test_a_propertys_example_shrunk_or_not_is_no_part_of_its_root_cause():
    from klconform.constants import EXAMPLE_LABELS

    def failure(node, label, shape, claim):
        return {"nodeid": node, "checks": ["oracle: expected 1, got 2"], "claims": [claim],
                "diagnosis": f"looks like: probabilities clipped to [1e-7, 1]; {label}"
                             f"Example(shape={shape}); replay: python -m pytest {node}",
                "status": "failed", "level": "must"}

    # Claims of their own: only the mistake's name can join them.
    report = {"claims": [], "failures": [
        failure(node, label, shape, claim) for node, label, shape, claim in zip(
            "ab", reversed(EXAMPLE_LABELS), ["(5,)", "(2, 3, 5)"], ["roles", "zero-target"],
            strict=True)]}
    [group] = root_causes(report)
    assert [f["nodeid"] for f in group.failures] == ["a", "b"]
    assert group.title == "looks like: probabilities clipped to [1e-7, 1]"


def test_one_mistake_is_one_root_cause_across_claims_and_its_unnamed_checks_join_it():
    def failure(node, claims, diagnosis=None, check="oracle: expected 1, got 0"):
        return {"nodeid": node, "checks": [check], "diagnosis": diagnosis,
                "claims": list(claims), "status": "failed", "level": "must"}

    clamp = "looks like: negatives clamped to 0"
    report = {"claims": [], "failures": [
        failure("terms", ["none-negative-terms"], f"{clamp} (each pointwise term)"),
        failure("total", ["unnormalized-negative"], f"{clamp} (the result)"),
        failure("gradient", ["gradient-input", "none-negative-terms"], f"{clamp} (the terms)"),
        # Unnamed, on claims the clamp's group holds: the clamp's gradient.
        failure("unnamed", ["gradient-input"], check="d/dinput: expected 1, got 0"),
        # Its claims are held by two named groups: which one is not known.
        failure("roles-value", ["roles"], "looks like: roles swapped"),
        failure("roles-bits", ["roles"], "looks like: result in bits"),
        failure("sum", ["reduction-sum"], "looks like: 'sum' divided by 4"),
        failure("orphan", ["reduction-sum", "roles"], check="relation: expected 2, got 3"),
        # Unnamed, held by no group, in a case that shows one named mistake elsewhere.
        dict(failure("bits-value", ["worked-examples"], "looks like: result in decibels"),
             case="large"),
        dict(failure("bits-gradient", ["gradient-target"], check="d/dtarget: 2 vs 3"),
             case="large"),
    ]}
    groups = sorted(sorted(f["nodeid"] for f in group.failures)
                    for group in root_causes(report))
    assert groups == [["bits-gradient", "bits-value"], ["gradient", "terms", "total", "unnamed"],
                      ["orphan"], ["roles-bits", "roles-value"], ["sum"]]


def test_a_few_failures_another_mistake_fits_join_the_root_cause_of_the_rest():
    def failure(node, claims, diagnosis):
        return {"nodeid": node, "checks": ["oracle: expected 1, got -1"], "claims": claims,
                "diagnosis": diagnosis, "status": "failed", "level": "must", "case": node}

    flipped = "looks like: sign flipped"
    absolute = "looks like: absolute value taken"
    report = {"claims": [], "failures": [
        failure("a", ["normalized-nonnegative"], flipped),
        failure("b", ["normalized-nonnegative"], flipped),
        # On raw logits -KL and |KL| are one function: the engine names the closer.
        failure("logits", ["unnormalized-negative"], f"{absolute} (also fits: sign flipped)"),
        # Fitted by nothing else: its own root cause, however small.
        failure("clamped", ["none-negative-terms"], "looks like: negatives clamped to 0"),
    ]}
    groups = sorted(sorted(f["nodeid"] for f in group.failures)
                    for group in root_causes(report))
    assert groups == [["a", "b", "logits"], ["clamped"]]
    # The bigger group is the host: two failures of |KL| are not joined to one of -KL.
    report["failures"][0]["diagnosis"] = f"{flipped} (also fits: absolute value taken)"
    report["failures"][1]["diagnosis"] = absolute
    report["failures"][1]["claims"] = ["unnormalized-negative"]
    groups = sorted(sorted(f["nodeid"] for f in group.failures)
                    for group in root_causes(report))
    assert groups == [["a", "b", "logits"], ["clamped"]]


def test_calls_the_breaker_did_not_make_are_the_root_cause_of_the_crash_or_hang_they_name():
    def failure(node, check, claims=("reduction-sum",)):
        return {"nodeid": node, "checks": [check], "diagnosis": None, "claims": list(claims),
                "status": "errored", "level": "must"}

    def not_run(calls, on=""):
        return (f"klconform raised CallNotRun{on}: not run: the implementation hung or crashed "
                f"on 2 calls in a row with 3-d inputs ({calls}), so klconform stopped calling "
                f"it with such inputs (--kl-timeout)")

    crashed = "2x2x3 float32 reduction='none' crashed; 2x2x3 float64 reduction='none' crashed"
    hung = "4 float16 reduction='sum' hung; 4 float16 reduction='mean' hung"
    segfault = "the implementation crashed the call worker process (SIGSEGV)"
    report = {"claims": [], "failures": [
        # Listed before the crash it names: the group is still titled by the crash.
        failure("not-run", not_run(crashed), claims=("reduction-batchmean",)),
        failure("crash", f"the implementation raised WorkerCrashed: {segfault}"),
        failure("crash-in-property",
                f"the implementation raised WorkerCrashed on the 'sum' call: {segfault}"),
        failure("property-not-run", not_run(crashed, on=" on the 'sum' call")
                + "; no example was checked: the call(s) of every example were not run"),
        failure("hang", "the implementation raised CallTimeout: no result after 1 s"),
        failure("hang-not-run", not_run(hung)),
        # Stopped after a crash and a hang, which are two root causes: which one is not known.
        failure("mixed-not-run", not_run(f"{crashed.split(';')[0]}; {hung.split(';')[0]}")),
    ]}
    groups = {tuple(sorted(f["nodeid"] for f in group.failures)): group
              for group in root_causes(report)}
    assert set(groups) == {("crash", "crash-in-property", "not-run", "property-not-run"),
                           ("hang", "hang-not-run"), ("mixed-not-run",)}
    crash = groups["crash", "crash-in-property", "not-run", "property-not-run"]
    assert crash.title == f"the implementation raised WorkerCrashed: {segfault}"
    assert set(crash.claims) == {"reduction-sum", "reduction-batchmean"}
    # Without a crash to join, a call not made stays a root cause of its own.
    report["failures"] = [f for f in report["failures"] if "crash" not in f["nodeid"]]
    assert sorted(sorted(f["nodeid"] for f in group.failures)
                  for group in root_causes(report)) == [
        ["hang", "hang-not-run"], ["mixed-not-run"], ["not-run"], ["property-not-run"]]
