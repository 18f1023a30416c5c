"""--impl resolution: built-ins, entry points, MODULE:ATTR, MODULE, and one-line errors."""

import os
import sys
import textwrap

import pytest

from klconform.adapters import ENTRY_POINT_GROUP, load_adapter
from klconform.adapters.torch_adapter import capabilities_from_signature
from klconform.errors import ImplementationLoadError
from klconform.spec.claims import load_spec
from tests.suite_runner import implementation_module, run_suite


@pytest.mark.parametrize("name", ["torch", "torch-module", "numpy"])
def test_builtins_resolve(name):
    adapter = load_adapter(name)
    assert adapter.name == name
    assert adapter.version()


@pytest.mark.parametrize(("spec", "expected"), [
    ("no-such-impl", "unknown implementation"),
    ("klconform_no_such_module:kl", "cannot import module 'klconform_no_such_module'"),
    ("json:no_such_attribute", "has no attribute 'no_such_attribute'"),
    ("math:pi", "neither an Adapter nor callable"),
    ("json", "defines no KLCONFORM_ADAPTER"),
    ("", "--impl is empty"),
])
def test_bad_impl_is_one_line_error(spec, expected):
    with pytest.raises(ImplementationLoadError) as error:
        load_adapter(spec)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message
    assert spec in message


def test_a_module_in_the_working_directory_off_sys_path_says_how_to_reach_it(tmp_path,
                                                                            monkeypatch):
    package = tmp_path / "klconform_trial_losses"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "kd.py").write_text("def kl(input, target, reduction='mean'):\n    return input\n")
    monkeypatch.chdir(tmp_path)
    # As under the `pytest` command, which does not put the working directory on sys.path.
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path
                                      if os.path.abspath(entry or os.curdir) != os.getcwd()])
    with pytest.raises(ImplementationLoadError) as error:
        load_adapter("klconform_trial_losses.kd:kl")
    assert ("'klconform_trial_losses' is in the working directory, which is not on sys.path: "
            "run `python -m pytest`") in str(error.value)
    monkeypatch.syspath_prepend(str(tmp_path))   # as under `python -m pytest`
    assert load_adapter("klconform_trial_losses.kd:kl").name == "klconform_trial_losses.kd:kl"


def test_module_exposing_adapter(tmp_path, monkeypatch):
    (tmp_path / "kl_module_impl.py").write_text(textwrap.dedent("""
        import torch.nn.functional as F
        KLCONFORM_ADAPTER = F.kl_div
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    adapter = load_adapter("kl_module_impl")
    assert adapter.name == "kl_module_impl"
    assert adapter.capabilities.legacy_args


def test_module_raising_on_import(tmp_path, monkeypatch):
    (tmp_path / "kl_broken_impl.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImplementationLoadError, match="RuntimeError: boom at import"):
        load_adapter("kl_broken_impl:kl")


def _install_entry_point(tmp_path, monkeypatch, name, value):
    dist = tmp_path / "klfake-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: klfake\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {value}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_entry_point_adapter(tmp_path, monkeypatch):
    (tmp_path / "klfake_adapter.py").write_text(textwrap.dedent("""
        from klconform.adapters.numpy_adapter import NumpyAdapter

        class FakeAdapter(NumpyAdapter):
            name = "fake"
    """))
    _install_entry_point(tmp_path, monkeypatch, "fakelib", "klfake_adapter:FakeAdapter")
    adapter = load_adapter("fakelib")
    assert type(adapter).__name__ == "FakeAdapter"
    assert adapter.name == "fake"


def test_entry_point_that_is_not_an_adapter(tmp_path, monkeypatch):
    _install_entry_point(tmp_path, monkeypatch, "notadapter", "os.path:join")
    with pytest.raises(ImplementationLoadError, match="not a klconform Adapter"):
        load_adapter("notadapter")
    sys.modules.pop("klfake_adapter", None)


def test_capabilities_follow_the_signature():
    def no_log_target(input, target, reduction="mean"):
        return input

    def reduction_required(input, target, reduction):
        return input

    def legacy(input, target, size_average=None, reduce=None, reduction="mean",
               log_target=False):
        return input

    assert not capabilities_from_signature(no_log_target).log_target
    assert capabilities_from_signature(no_log_target).default_reduction
    assert not capabilities_from_signature(reduction_required).default_reduction
    assert capabilities_from_signature(legacy).legacy_args
    assert not capabilities_from_signature(no_log_target).legacy_args


def test_pytest_reports_bad_impl_without_traceback(pytester):
    run = run_suite(pytester, "klconform_no_such_module:kl")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    assert "cannot import module 'klconform_no_such_module'" in run.output
    assert "Traceback" not in run.output


def test_plain_function_without_legacy_or_warning_passes_every_must(pytester):
    # A correct function of the plain signature: no size_average/reduce, never warns.
    # Must-level cases all pass; the should-level 'mean' warning is reported as warned.
    module = implementation_module(pytester, "quiet_kl", """
        import torch

        def kl(input, target, reduction="mean", log_target=False):
            if reduction not in ("none", "sum", "mean", "batchmean"):
                raise ValueError(f"bad reduction {reduction!r}")
            if log_target:
                terms = torch.exp(target) * (target - input)
            else:
                terms = torch.xlogy(target, target) - target * input
            if reduction == "none":
                return terms
            total = terms.sum()
            if reduction == "sum":
                return total
            if reduction == "mean":
                return total / terms.numel()
            return total / (input.shape[0] if input.dim() else 1)
    """)
    run = run_suite(pytester, f"{module}:kl",
                    suites=("test_cases.py", "test_gradients.py", "test_layouts.py"))
    report = run.report
    assert run.result.ret == 0, run.output[-3000:]
    # Two of the three suites ran: nothing failed, and the verdict says what was not run.
    assert report["verdict"] == "incomplete"
    assert "test_properties.py" not in report["verdict_reason"]
    assert "named only" in report["verdict_reason"]
    assert report["summary"]["failed"] == report["summary"]["errored"] == 0
    assert report["summary"]["warned"] == 2  # explicit and default 'mean' do not warn
    statuses = {claim["id"]: claim["status"] for claim in report["claims"]}
    assert statuses["mean-warns"] == "warn"
    # A plain KL declares no temperature, mask, token mean or logits: those claims are n/a.
    families = {claim.id: claim.family for claim in load_spec().claims.values()}
    for claim in report["claims"]:
        if claim["level"] == "must":
            wanted = ("unsupported",) if families[claim["id"]] == "distillation" \
                else ("pass", "recorded")
            assert claim["status"] in wanted, (claim["id"], claim["status"])


@pytest.mark.parametrize("arrays, words", [
    ("torch", "jit: true needs arrays that klconform can compile (jax), not 'torch'"),
    ("numpy", "jit: true needs arrays that klconform can compile (jax), not 'numpy'"),
])
def test_jit_is_refused_for_arrays_klconform_cannot_compile(tmp_path, arrays, words):
    from klconform.errors import SpecError
    from klconform.spec.conventions import load_record

    record = tmp_path / "compiled.yaml"
    record.write_text("name: compiled\ndescription: asks for a compiler its arrays lack\n"
                      f"function: numpy:add\narrays: {arrays}\n"
                      "arguments: [prediction, target]\n"
                      "spaces: {prediction: log-probabilities, target: probabilities}\n"
                      "output: elementwise\ndtypes: {cpu: [float32, float64]}\n"
                      "autograd: none\njit: true\n")
    with pytest.raises(SpecError) as raised:
        load_record(record)
    message = str(raised.value)
    assert words in message and "compiled.yaml" in message and "jit" in message
    assert "\n" not in message


def test_jit_is_refused_for_an_adapter_class(tmp_path):
    from klconform.errors import SpecError
    from klconform.spec.conventions import load_record

    record = tmp_path / "own-class.yaml"
    record.write_text("name: own-class\ndescription: an adapter class asking for jit\n"
                      "adapter: klconform.adapters.numpy_adapter:NumpyAdapter\njit: true\n")
    with pytest.raises(SpecError, match="jit applies to a function or a loss class; an "
                                        "adapter class makes its own calls"):
        load_record(record)


@pytest.mark.parametrize(("impl", "libraries"), [
    ("torchmetrics", ("torch", "torchmetrics")),
    # An adapter class that takes describe_only (klconform.adapters.torch_adapter's).
    ("torch", ("torch",)),
    ("torch-module", ("torch",)),
])
def test_a_builtin_record_only_described_imports_nothing_of_its_library(impl, libraries):
    import json

    import numpy as np

    from klconform.adapters.base import Call

    for library in libraries:
        pytest.importorskip(library)
    code = ("import json, sys\nimport numpy as np\n"
            "from klconform.adapters import load_adapter\n"
            "from klconform.adapters.base import Call\n"
            f"adapter = load_adapter({impl!r}, describe_only=True)\n"
            "call = Call(np.zeros((2, 3)), np.ones((2, 3)) / 3, dtype='float32', "
            "reduction='sum')\n"
            "print(json.dumps([adapter.capabilities.as_dict(), adapter.version(), "
            "adapter.describe(), adapter.snippet(call)]))\n"
            f"print(sorted(name for name in {libraries!r} if name in sys.modules))\n")
    completed = subprocess_run(code)
    assert completed.returncode == 0, completed.stderr
    described, imported = completed.stdout.splitlines()
    assert imported == "[]"
    # What it says of itself is what the adapter that makes the calls says.
    full = load_adapter(impl)
    call = Call(np.zeros((2, 3)), np.ones((2, 3)) / 3, dtype="float32", reduction="sum")
    assert json.loads(described) == json.loads(json.dumps(
        [full.capabilities.as_dict(), full.version(), full.describe(), full.snippet(call)]))


@pytest.mark.parametrize(("version_py", "built_for_a_gpu"), [
    ("__version__ = '2.13.0+cpu'\ncuda: Optional[str] = None\nhip: Optional[str] = None\n",
     False),
    ("cuda: Optional[str] = '12.8'\nhip: Optional[str] = None\n", True),
    ("cuda = None\nhip = '6.3.42131'\n", True),
    # What it does not state plainly is found out by importing torch.
    ("cuda = None\n", True),
    ("cuda = _read_cuda()\nhip = None\n", True),
    ("cuda = None\nhip = None\ndef broken(:\n", True),
])
def test_the_torch_build_is_read_without_importing_it(tmp_path, monkeypatch, version_py,
                                                      built_for_a_gpu):
    import importlib.util
    from importlib.machinery import ModuleSpec

    from klconform.adapters import torch_adapter

    (tmp_path / "version.py").write_text(version_py)
    spec = ModuleSpec("torch", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: spec if name == "torch" else None)
    assert torch_adapter._built_for_a_gpu() is built_for_a_gpu


def test_the_installed_torch_build_is_read_as_torch_reports_it():
    torch = pytest.importorskip("torch")
    from klconform.adapters import torch_adapter

    assert torch_adapter._built_for_a_gpu() is (torch.version.cuda is not None
                                                 or torch.version.hip is not None)


def test_a_described_record_whose_library_is_missing_fails_as_its_import_would(tmp_path):
    from klconform.adapters.convention import ConventionAdapter
    from klconform.spec.conventions import load_record

    record = tmp_path / "missing.yaml"
    record.write_text("name: missing\ndescription: a library that is not installed\n"
                      "library: no-such-library\nfunction: no_such_library.losses:kl\n"
                      "arrays: numpy\narguments: [prediction, target]\n"
                      "spaces: {prediction: log-probabilities, target: probabilities}\n"
                      "output: elementwise\ndtypes: {cpu: [float64]}\nautograd: none\n")
    with pytest.raises(ModuleNotFoundError, match="No module named 'no_such_library'"):
        ConventionAdapter(load_record(record), describe_only=True)


def test_a_builtin_whose_library_is_not_installed_is_a_one_line_error_unimported():
    from importlib.util import find_spec

    if find_spec("jax") is not None:
        pytest.skip("jax is installed here")
    with pytest.raises(ImplementationLoadError) as raised:
        load_adapter("jax", describe_only=True)
    assert str(raised.value) == (
        "--impl jax: built-in adapter needs a library that does not import "
        "(ModuleNotFoundError: No module named 'jax'); pip install \"klconform[jax]\"")


def subprocess_run(code):
    import subprocess

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("impl", ["scipy", "torch", "torch-module"])
def test_an_adapter_loaded_only_to_describe_refuses_to_make_a_call(impl):
    import numpy as np

    from klconform.adapters.base import Call

    described = load_adapter(impl, describe_only=True)
    with pytest.raises(RuntimeError, match="loaded only to describe it"):
        described.run(Call(np.log([[0.5, 0.5]]), [[0.25, 0.75]], dtype="float64",
                           reduction="sum"))


def _install_distribution(site, name, version, files):
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("".join(f"{file},,\n" for file in files))


@pytest.mark.parametrize(("files", "found"), [
    (["klshaped/__init__.py"], "1.5"),
    (["klshaped.py"], "1.5"),
    # Named like the module but installing others: the version is the installer's.
    (["klshaped_helpers/__init__.py", "klshapedx.py"], "2.0"),
])
def test_the_version_is_the_distribution_that_installs_the_module(tmp_path, monkeypatch, files,
                                                                  found):
    from klconform.adapters import base

    _install_distribution(tmp_path, "klshaped", "1.5", files)
    if found == "2.0":
        _install_distribution(tmp_path, "klshapedtools", "2.0", ["klshaped/functional.py"])
    monkeypatch.syspath_prepend(str(tmp_path))
    base._distributions_by_package.cache_clear()
    assert base.distribution_version("klshaped.functional") == found
    base._distributions_by_package.cache_clear()


def test_the_version_of_a_module_from_a_distribution_named_otherwise():
    from importlib import metadata

    from klconform.adapters.base import distribution_version

    assert distribution_version("yaml.loader") == metadata.version("PyYAML")
    assert distribution_version("numpy") == metadata.version("numpy")
    assert distribution_version("no_such_module_here") is None
