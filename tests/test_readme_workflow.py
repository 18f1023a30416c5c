"""The CI workflow shown in docs/ci.md is the one in examples/, and it is well formed."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "github-actions" / "klconform.yml"


def test_the_ci_guide_shows_the_example_workflow_verbatim():
    guide = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    assert f"```yaml\n{EXAMPLE.read_text(encoding='utf-8')}```" in guide


def test_workflow_installs_runs_summarizes_uploads_and_diffs():
    workflow = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    steps = workflow["jobs"]["conformance"]["steps"]
    scripts = "\n".join(step.get("run", "") for step in steps)
    assert "download.pytorch.org/whl/cpu" in scripts and 'pip install "$KLCONFORM"' in scripts
    assert 'pytest --impl="$IMPL" --report-dir=klconform-report' in scripts
    assert "GITHUB_STEP_SUMMARY" in scripts
    assert "klconform diff --format markdown" in scripts
    assert any(step.get("uses", "").startswith("actions/upload-artifact") for step in steps)


def test_the_cache_the_guide_keeps_holds_what_runs_keep(tmp_path, monkeypatch):
    # The guide's actions/cache step for compiling libraries: the folder it keeps must be
    # the one compiled programs and answers not taken are written under.
    from klconform.engine import answers_not_taken, compile_ahead

    guide = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    section = guide[guide.index("### A library that compiles each shape"):]
    snippet = section[section.index("```yaml\n") + len("```yaml\n"):section.index("```\n\n")]
    (step,) = yaml.safe_load(snippet)
    assert step["uses"].startswith("actions/cache")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    kept = Path(step["with"]["path"].replace("~", str(tmp_path), 1))
    assert Path(compile_ahead.default_cache()).is_relative_to(kept)
    assert Path(answers_not_taken.path_for(("mylib:kl",))).is_relative_to(kept)
