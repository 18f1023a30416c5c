"""The loader's parts: tensor constructors, line numbers and field paths, Case levels."""

import math
import textwrap

import numpy as np
import pytest

from klconform.engine import gradients
from klconform.errors import SpecError
from klconform.harness.identity import identities
from klconform.spec import tensors
from klconform.spec.cases import _split, load_cases
from klconform.spec.claims import load_spec
from klconform.spec.yaml_loader import read_yaml

# --- tensors.build ------------------------------------------------------------------------


def test_explicit_data_and_non_finite_strings():
    built = tensors.build([[1, -2.5], ["inf", "-inf"], ["+inf", "nan"]])
    assert built.dtype == np.float64 and built.shape == (3, 2)
    assert built[0].tolist() == [1.0, -2.5]
    assert built[1].tolist() == [math.inf, -math.inf] and built[2, 0] == math.inf
    assert math.isnan(built[2, 1])


def test_a_scalar_is_0d():
    assert tensors.build(0.5).shape == ()


@pytest.mark.parametrize(("data", "path", "words"), [
    ([1.0, "one"], "[1]", "string 'one' is not a number"),
    ([[1.0], [True]], "[1][0]", "booleans are not tensor values"),
    ([1.0, None], "[1]", "unexpected NoneType"),
    ([1.0, 10**400], "[1]", "401-digit integer is too large for float64"),
])
def test_bad_explicit_values_name_their_position(data, path, words):
    with pytest.raises(tensors.TensorSpecError) as raised:
        tensors.build(data)
    assert raised.value.path == path
    assert words in str(raised.value)


def test_ragged_rows_are_named():
    with pytest.raises(tensors.TensorSpecError) as raised:
        tensors.build([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0]]])
    assert raised.value.path == "[1][1]"
    assert "this row has shape (1,) but the first row beside it has shape (2,)" \
        in str(raised.value)


def test_a_number_among_rows_is_ragged():
    with pytest.raises(tensors.TensorSpecError) as raised:
        tensors.build([[1.0, 2.0], 3.0])
    assert raised.value.path == "[1]"


LOGITS = [[0.5, -1.0, 0.2], [0.3, 0.3, 0.9]]


def reference_log_softmax(logits, dim):
    logits = np.asarray(logits, dtype=np.float64)
    return logits - np.log(np.sum(np.exp(logits), axis=dim, keepdims=True))


@pytest.mark.parametrize("dim", [None, -1, 1, 0, -2])
def test_log_softmax_of_along_dim(dim):
    description = {"log_softmax_of": LOGITS} if dim is None else {"log_softmax_of": LOGITS,
                                                                  "dim": dim}
    expected = reference_log_softmax(LOGITS, -1 if dim is None else dim)
    np.testing.assert_allclose(tensors.build(description), expected, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("dim", [0, 1])
def test_softmax_of_sums_to_one_along_dim(dim):
    probabilities = tensors.build({"softmax_of": LOGITS, "dim": dim})
    np.testing.assert_allclose(probabilities.sum(axis=dim), 1.0, rtol=1e-15)


def test_softmax_of_survives_large_logits():
    probabilities = tensors.build({"softmax_of": [1000.0, 1000.0]})
    assert probabilities.tolist() == [0.5, 0.5]


@pytest.mark.parametrize("dim", [2, -3])
def test_dim_out_of_range(dim):
    with pytest.raises(tensors.TensorSpecError) as raised:
        tensors.build({"log_of": {"softmax_of": LOGITS, "dim": dim}})
    assert raised.value.path == "log_of.dim"
    assert f"dim {dim} out of range for 2-d data" in str(raised.value)


def test_log_of_and_exp_of_compose():
    built = tensors.build({"exp_of": {"log_of": [0.25, 0.0, 1.0]}})
    np.testing.assert_allclose(built, [0.25, 0.0, 1.0], rtol=1e-15)
    assert tensors.build({"log_of": [0.0]}).tolist() == [-math.inf]


def test_one_hot():
    built = tensors.build({"one_hot": {"indices": [2, 0, 2], "classes": 3}})
    assert built.tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 1]]
    assert built.dtype == np.float64


def test_one_hot_index_out_of_range():
    with pytest.raises(tensors.TensorSpecError) as raised:
        tensors.build({"one_hot": {"indices": [0, 3], "classes": 3}})
    assert raised.value.path == "one_hot.indices[1]"
    assert "index 3 out of range for 3 classes" in str(raised.value)


@pytest.mark.parametrize(("value", "check"), [
    (0.5, lambda built: np.all(built == 0.5)),
    ("-inf", lambda built: np.all(built == -math.inf)),
    ("nan", lambda built: np.all(np.isnan(built))),
])
def test_full(value, check):
    built = tensors.build({"full": {"shape": [2, 3], "value": value}})
    assert built.shape == (2, 3) and check(built)


def test_full_with_an_empty_dimension():
    assert tensors.build({"full": {"shape": [0, 4], "value": 1.0}}).shape == (0, 4)


def test_seeded_normal_is_reproducible_and_scaled():
    description = {"seeded_normal": {"shape": [4, 5], "seed": 7, "scale": 2.0, "loc": -1.0}}
    first, second = tensors.build(description), tensors.build(description)
    np.testing.assert_array_equal(first, second)
    draws = np.random.Generator(np.random.PCG64(7)).standard_normal((4, 5))
    np.testing.assert_array_equal(first, draws * 2.0 - 1.0)


def test_shapes_over_the_element_limit_are_refused():
    with pytest.raises(tensors.TensorSpecError) as raised:
        tensors.build({"full": {"shape": [tensors.MAX_ELEMENTS + 1], "value": 0.0}})
    assert raised.value.path == "full.shape"


def test_unknown_or_two_constructors():
    for description in ({"log_off": [1.0]}, {"log_of": [1.0], "exp_of": [1.0]}):
        with pytest.raises(tensors.TensorSpecError, match="exactly one constructor"):
            tensors.build(description)


# --- tensors.shape_of and tensors.finite: a case checked without building its arrays ------

BAD_DESCRIPTIONS = [
    [1.0, "one"],
    [[1.0, 2.0], [3.0]],
    {"log_off": [1.0]},
    {"one_hot": {"classes": 3, "indices": [0, 3]}},
    {"log_softmax_of": [[0.5, 1.0]], "dim": 2},
    {"softmax_of": 0.5},
    {"full": {"shape": [tensors.MAX_ELEMENTS + 1], "value": 0.0}},
    {"seeded_normal": {"shape": [2], "seed": 1, "scale": "big"}},
    {"log_of": {"softmax_of": [[1.0], ["x"]]}},
]


@pytest.mark.parametrize("description", BAD_DESCRIPTIONS)
def test_shape_of_refuses_what_build_refuses_with_the_same_words(description):
    with pytest.raises(tensors.TensorSpecError) as built:
        tensors.build(description)
    with pytest.raises(tensors.TensorSpecError) as shaped:
        tensors.shape_of(description)
    assert (shaped.value.path, str(shaped.value)) == (built.value.path, str(built.value))


def _bundled_descriptions():
    for case in load_cases():
        yield case.inputs["input"]
        yield case.inputs["target"]
        relation = case.expect.get("relation")
        yield from (relation or {}).get("other", {}).get("inputs", {}).values()
        if "cross_entropy" in case.expect:
            yield case.expect["cross_entropy"]["logits"]


def test_shape_of_and_finite_say_what_building_says_of_every_bundled_description():
    for description in _bundled_descriptions():
        built = tensors.build(description)
        assert tensors.shape_of(description) == built.shape, description
        assert tensors.finite(description) == bool(np.all(np.isfinite(built))), description


@pytest.mark.parametrize(("description", "finite"), [
    ({"full": {"shape": [2], "value": "inf"}}, False),
    ({"exp_of": [1.0, 1000.0]}, False),
    ({"log_of": [0.5, 0.0]}, False),
    ({"log_softmax_of": {"seeded_normal": {"shape": [2, 3], "seed": 1, "scale": 1e308}}},
     False),
    ({"seeded_normal": {"shape": [3], "seed": 1, "loc": "-inf"}}, False),
    ({"softmax_of": [[1.0, "nan"]]}, False),
    ({"log_softmax_of": {"seeded_normal": {"shape": [2, 3], "seed": 1, "scale": 4.0}}}, True),
])
@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_finite_is_what_the_built_values_say(description, finite):
    assert tensors.finite(description) is finite
    assert bool(np.all(np.isfinite(tensors.build(description)))) is finite


def test_a_generated_array_is_not_built_to_check_or_load_it(monkeypatch):
    large = {"log_softmax_of": {"seeded_normal": {"shape": [32, 128000], "seed": 5}}}
    construct = tensors._construct

    def small_only(description, path):
        assert "seeded_normal" not in description, "a generated array was built"
        return construct(description, path)

    with monkeypatch.context() as patched:
        patched.setattr(tensors, "_construct", small_only)
        assert tensors.shape_of(large) == (32, 128000)
        assert tensors.finite(large)
        cases = load_cases()
        identities(cases)  # what collection asks of every case: gradient eligibility too
    assert not any("arrays" in case.__dict__ for case in cases)
    thorough = next(case for case in cases if case.profile == "thorough")
    assert thorough.arrays[0].shape == tensors.shape_of(thorough.inputs["input"])


def test_gradient_eligibility_is_what_the_built_arrays_say():
    for case in load_cases():
        if case.kind != "value":
            assert not gradients.eligible(case), case.id
            continue
        prediction, target = case.arrays
        built = bool(prediction.size and np.all(np.isfinite(prediction))
                     and np.all(np.isfinite(target)))
        assert gradients.eligible(case) is built, case.id


@pytest.mark.parametrize(("text", "parts"), [
    ("", []),
    (".dim", ["dim"]),
    ("[2]", [2]),
    ("log_of[1][0]", ["log_of", 1, 0]),
    ("log_of.softmax_of.dim", ["log_of", "softmax_of", "dim"]),
    ("one_hot.indices[3]", ["one_hot", "indices", 3]),
])
def test_tensor_error_paths_become_data_paths(text, parts):
    assert _split(text) == parts


# --- line numbers and field paths ----------------------------------------------------------


def test_line_of_points_at_keys_and_list_items(tmp_path):
    path = tmp_path / "lines.yaml"
    path.write_text(textwrap.dedent("""\
        top:
          nested:
            - first
            - [a, b]
          block:
            inner: 1
        """), encoding="utf-8")
    document = read_yaml(path)
    assert document.line_of([]) == 1
    assert document.line_of(["top", "nested", 0]) == 3
    assert document.line_of(["top", "nested", 1, 1]) == 4
    # The key's own line, not the line below where the block value starts.
    assert document.line_of(["top", "block"]) == 5
    # A path that goes past the data stops at the deepest line found.
    assert document.line_of(["top", "missing", 3]) == 1
    assert document.line_of(["top", "nested", 9]) == 2


CASE_TEMPLATE = """\
  - id: {id}
    claims: {claims}
    description: a loader test case
    provenance:
      - {{source: seed-002, part: "a part"}}
    inputs:
      input: [[-1.0, -2.0]]
      target: [[0.25, 0.75]]
    call: {{reduction: {reduction}}}
    expect: {expect}
"""


def write_cases(directory, *cases):
    """One file: two header lines, then ten lines per case (id on lines 3, 13, ...)."""
    directory.mkdir(exist_ok=True)
    text = "description: loader tests\ncases:\n" + "".join(
        CASE_TEMPLATE.format(**{"claims": "[roles]", "reduction": "sum",
                                "expect": "{oracle: true}", **case}) for case in cases)
    (directory / "loader.yaml").write_text(text, encoding="utf-8")
    return directory


def load_error(directory):
    with pytest.raises(SpecError) as raised:
        load_cases(directory)
    return raised.value


def test_errors_in_a_later_case_name_its_lines(tmp_path):
    cases_dir = write_cases(tmp_path / "cases", {"id": "first-ok"},
                            {"id": "second-bad", "claims": "[roles, not-a-claim]"})
    error = load_error(cases_dir)
    assert (error.line, error.case_id, error.field) == (14, "second-bad", "claims[1]")
    assert str(error).endswith("loader.yaml:14: case 'second-bad': field 'claims[1]': "
                               "unknown claim 'not-a-claim'")


def test_a_ragged_published_array_names_the_row(tmp_path):
    expect = "\n      published: {array: [[0.1, 0.2], [0.3]], decimals: 1}"
    cases_dir = write_cases(tmp_path / "cases", {"id": "ragged-published", "reduction": "none",
                                                 "expect": expect})
    error = load_error(cases_dir)
    assert error.field == "expect.published.array[1]"
    assert error.line == 13


def test_a_bad_relation_input_names_its_path(tmp_path):
    expect = ("\n      relation:\n        op: equal\n        other:\n          inputs:\n"
              "            input: {log_softmax_of: [[1.0, 2.0]], dim: 5}")
    cases_dir = write_cases(tmp_path / "cases", {"id": "bad-relation", "expect": expect})
    error = load_error(cases_dir)
    assert error.field == "expect.relation.other.inputs.input.dim"
    assert error.line == 17
    assert "dim 5 out of range" in str(error)


def test_a_bad_nested_constructor_names_its_line(tmp_path):
    cases_dir = write_cases(tmp_path / "cases", {"id": "bad-one-hot"})
    path = cases_dir / "loader.yaml"
    path.write_text(path.read_text().replace(
        "target: [[0.25, 0.75]]",
        "target:\n        log_of:\n          one_hot: {indices: [0, 9], classes: 2}"))
    error = load_error(cases_dir)
    assert error.field == "inputs.target.log_of.one_hot.indices[1]"
    assert error.line == 12


# --- Case objects -------------------------------------------------------------------------


@pytest.mark.parametrize(("claims", "level"), [
    ("[mean-warns]", "should"),
    ("[mean-warns, roles]", "must"),
    ("[impl-mean-warning]", "implementation-defined"),
    ("[impl-mean-warning, mean-warns]", "should"),
])
def test_a_case_carries_the_strictest_level_of_its_claims(tmp_path, claims, level):
    cases_dir = write_cases(tmp_path / "cases", {"id": "levels", "claims": claims})
    (case,) = load_cases(cases_dir)
    assert case.level == level


def test_every_bundled_case_has_the_strictest_level_of_its_claims():
    spec = load_spec()
    order = {"must": 0, "should": 1, "implementation-defined": 2}
    for case in load_cases(spec=spec):
        levels = [spec.claims[claim].level for claim in case.claims]
        assert case.level == min(levels, key=order.__getitem__), case.id


def test_case_defaults_and_location(tmp_path):
    cases_dir = write_cases(tmp_path / "cases", {"id": "defaults"})
    (case,) = load_cases(cases_dir)
    assert case.dtypes == ("float32", "float64")
    assert case.profile == "default"
    assert case.kind == "value"
    assert case.file.name == "loader.yaml" and case.line == 3
    input_array, target_array = case.arrays
    assert input_array.shape == target_array.shape == (1, 2)
