"""The package's shape: imports flow one way through the stages, and a report is a pure
function of its run stream."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import klconform
from tests.suite_runner import implementation_module, run_suite

PACKAGE = Path(klconform.__file__).resolve().parent
LEAVES = {"constants", "errors", "resources", "short_text", "dtypes", "statuses", "machine",
          "program_store", "files", "__version__"}
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


def module_files(package=PACKAGE):
    """Module name -> file, for every module of the package (a package by its __init__)."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph(modules):
    """Module -> the modules it imports, at top level or inside functions: a cycle hidden in
    a function is a cycle all the same (it is how the collector and the plugin had one)."""
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module in modules:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    edges.add(submodule if submodule in modules else node.module)
        graph[name] = edges - {name}
    return graph


def import_cycles(graph):
    """Each set of modules that import one another in a ring (Tarjan's components)."""
    order, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(module):
        order[module] = low[module] = len(order)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph[module]):
            if imported not in order:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], order[imported])
        if low[module] == order[module]:
            component = set()
            while module not in component:
                component.add(stack.pop())
            on_stack.difference_update(component)
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return cycles


def test_no_module_imports_itself_back_through_others():
    assert import_cycles(import_graph(module_files())) == []


def test_the_cycle_check_catches_a_cycle_inside_a_function(tmp_path):
    package = tmp_path / "klconform"
    (package / "harness").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "harness" / "__init__.py").write_text("")
    (package / "harness" / "plugin.py").write_text("from klconform.harness.collector import C\n")
    (package / "harness" / "collector.py").write_text(
        "def header():\n    from klconform.harness import plugin\n")
    assert import_cycles(import_graph(module_files(package))) == [
        ["klconform.harness.collector", "klconform.harness.plugin"]]


# String operations that take a pytest node id apart. The report is built from what the run
# stream's events say (case, dtype, claims, kind, test); a node id is only ever a key there.
TAKING_APART = {"split", "rsplit", "partition", "rpartition", "index", "rindex", "find",
                "rfind", "startswith", "endswith", "strip", "rstrip", "lstrip", "replace"}


def _reads_nodeid(node, tainted):
    """Whether the expression is a node id: `x["nodeid"]`, `x.get("nodeid")`, `x.nodeid`, a
    variable named nodeid, or a variable assigned from one of those."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return node.slice.value == "nodeid"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr == "get" and node.args \
            and isinstance(node.args[0], ast.Constant):
        return node.args[0].value == "nodeid"
    if isinstance(node, ast.Attribute):
        return node.attr == "nodeid"
    if isinstance(node, ast.Name):
        return node.id == "nodeid" or node.id in tainted
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id == "str" and node.args:
        return _reads_nodeid(node.args[0], tainted)
    return False


def nodeid_parsing(source):
    """The lines of `source` that take a node id apart (method, `in`, slice, regex)."""
    tree = ast.parse(source)
    tainted = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _reads_nodeid(node.value, tainted):
            tainted |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in TAKING_APART \
                and _reads_nodeid(node.value, tainted):
            found.append(node.lineno)
        elif isinstance(node, ast.Compare) and any(
                isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) \
                and any(_reads_nodeid(each, tainted) for each in node.comparators):
            found.append(node.lineno)
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice) \
                and _reads_nodeid(node.value, tainted):
            found.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re" \
                and any(_reads_nodeid(each, tainted) for each in node.args):
            found.append(node.lineno)
    return sorted(set(found))


def test_nothing_in_the_report_stage_takes_a_node_id_apart():
    found = {path.name: lines for path in sorted((PACKAGE / "report").rglob("*.py"))
             if (lines := nodeid_parsing(path.read_text(encoding="utf-8")))}
    assert found == {}


@pytest.mark.parametrize("source", [
    'param = record["nodeid"].rsplit("[", 1)[1]',
    'gradient = "test_gradient" in record["nodeid"]',
    'nodeid = entry.get("nodeid")\ncase = nodeid.split("[")[-1]',
    'text = str(report.nodeid)\nhead = text[:10]',
    'match = re.search(r"\\[(.*)\\]", failure.get("nodeid"))',
])
def test_the_node_id_check_catches_each_way_of_taking_one_apart(source):
    assert nodeid_parsing(source) == [len(source.splitlines())]


def test_the_node_id_check_lets_a_node_id_be_a_key():
    assert nodeid_parsing('by_test[entry.get("nodeid") or id(entry)] = entry\n'
                          'row = {"nodeid": record.get("nodeid")}') == []


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


@pytest.mark.parametrize(("module", "kept_out"), [
    # Loaded by pytest in every run of every project where klconform is installed.
    ("klconform.harness.plugin", ("numpy", "jsonschema", "yaml", "hypothesis",
                                  "klconform.adapters")),
    # Runs before it starts pytest: the run waits for nothing it imports.
    ("klconform.cli.main", ("numpy", "pytest", "jsonschema", "klconform.adapters")),
    # What the run imports before it starts the call worker.
    ("klconform.engine.isolation", ("jsonschema", "yaml", "klconform.spec",
                                    "klconform.adapters.registry")),
    # What the ahead child imports after its fork, while the run waits for its first answers:
    # it replays stored examples, which needs no Hypothesis.
    ("klconform.engine.planned_calls", ("hypothesis", "klconform.engine.strategies")),
])
def test_entry_points_import_nothing_they_do_not_need(module, kept_out):
    code = (f"import sys\nimport {module}\n"
            f"print(sorted(name for name in {kept_out!r} if name in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
