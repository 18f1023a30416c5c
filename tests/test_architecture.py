"""The package's shape: imports flow one way through the stages, and a report is a pure
function of its run stream."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import klconform
from tests.suite_runner import implementation_module, run_suite

PACKAGE = Path(klconform.__file__).resolve().parent
LEAVES = {"constants", "errors", "resources", "short_text", "dtypes", "__version__"}
# klconform/__init__.py is the public facade: it re-exports from any stage.
FACADE = "klconform.__init__"
# stage -> the stages its modules may import (besides the leaves and itself)
ALLOWED = {
    "spec": set(),
    "oracle": {"spec"},
    "adapters": {"spec"},
    "engine": {"spec", "oracle", "adapters"},
    "report": {"spec"},
    # adapters: `diagnose` calls the function under diagnosis through the array bridges.
    "authoring": {"spec", "oracle", "engine", "adapters"},
    "harness": {"spec", "oracle", "adapters", "engine", "report"},
    "cli": {"spec", "oracle", "adapters", "engine", "report", "harness", "authoring"},
}


def stage_of(module):
    """'klconform.engine.evaluate' -> 'engine'; leaves -> 'leaf'."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in LEAVES:
        return "leaf"
    return parts[1]


def imports_of(path):
    """Every klconform module a file imports, at top level or inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("klconform")}
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith("klconform"):
            if node.module == "klconform":
                found |= {f"klconform.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
    return found


def violations():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts)
        if module == FACADE:
            continue
        stage = stage_of(module)
        if stage == "leaf":
            allowed = {"leaf"}
        else:
            allowed = ALLOWED[stage] | {stage, "leaf"}
        for imported in imports_of(path):
            if stage_of(imported) not in allowed:
                found.append(f"{module} imports {imported}")
    return found


def test_imports_flow_one_way_through_the_stages():
    assert violations() == []


def test_the_import_check_catches_a_backward_import(tmp_path, monkeypatch):
    # The walk must see imports inside functions too: that is where a shortcut hides.
    bad = tmp_path / "klconform" / "report" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from klconform.adapters import load_adapter\n")
    assert imports_of(bad) == {"klconform.adapters"}
    assert stage_of("klconform.adapters") not in ALLOWED["report"]


def test_report_stage_never_imports_implementations_engine_or_cases():
    for path in (PACKAGE / "report").rglob("*.py"):
        for imported in imports_of(path):
            assert not imported.startswith(("klconform.adapters", "klconform.engine",
                                            "klconform.spec.cases", "klconform.harness")), \
                f"{path.name} imports {imported}"


BUGGY = """
    import torch.nn.functional as F

    def kl(input, target, reduction="mean", log_target=False):
        if reduction == "batchmean":
            return F.kl_div(input, target, reduction="sum", log_target=log_target) / input.numel()
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)
"""


def test_report_is_rebuilt_from_the_stream_where_the_implementation_cannot_import(
        pytester, tmp_path):
    module = implementation_module(pytester, "rebuilt_kl", BUGGY)
    run = run_suite(pytester, f"{module}:kl", "-k", "batchmean or roles")
    assert run.report["verdict"] == "fail"
    stream = run.report_dir / "run.jsonl"
    assert stream.exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    code = ("import sys\n"
            "from klconform.cli.main import main\n"
            f"try:\n    import {module}\nexcept ImportError:\n    pass\n"
            f"else:\n    sys.exit('the implementation must not be importable here')\n"
            f"sys.exit(main(['report', {str(stream)!r}, '--out', 'rebuilt']))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rebuilt = json.loads((elsewhere / "rebuilt" / "report.json").read_text())
    assert rebuilt == run.report
    assert (elsewhere / "rebuilt" / "report.md").read_text() == \
        (run.report_dir / "report.md").read_text()


def test_every_stream_event_matches_the_stream_schema(pytester):
    import jsonschema

    from klconform import resources

    schema = json.loads((resources.spec_dir() / "run-stream.schema.json").read_text())
    run = run_suite(pytester, "numpy", "-k", "roles")
    events = [json.loads(line) for line in
              (run.report_dir / "run.jsonl").read_text().splitlines()]
    assert [events[0]["event"], events[-1]["event"]] == ["header", "footer"]
    for event in events:
        jsonschema.validate(event, schema)
    assert any(event["event"] == "record" for event in events)
    try:
        jsonschema.validate({"event": "record"}, schema)  # no nodeid, no status
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the stream schema accepted a record without nodeid and status")


def test_every_expectation_key_of_the_case_schema_has_one_check():
    from klconform import resources
    from klconform.engine.evaluate import EXPECTATION_CHECKS, NOT_VALUE_CHECKS

    schema = json.loads((resources.spec_dir() / "case.schema.json").read_text())
    keys = set(schema["$defs"]["expect"]["properties"])
    assert keys == set(EXPECTATION_CHECKS) | set(NOT_VALUE_CHECKS)
    assert not set(EXPECTATION_CHECKS) & set(NOT_VALUE_CHECKS)
