"""Malformed and hostile case files: each becomes one SpecError line, and nothing runs.

Every test copies the bundled cases, adds or corrupts one file, and loads the copy, so the
error must be found among real files, as it would be in a user's --kl-only-cases directory.
"""

import os
import shutil
import time

import pytest

from klconform import resources
from klconform.errors import SpecError
from klconform.spec.cases import load_cases
from klconform.spec.yaml_loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES

# A valid case; tests corrupt one line of it. Line numbers of its fields, used in the
# assertions: id 2, claims 3, description 4, provenance source 6, inputs 7, input 8,
# target 9, call 10, expect 11.
VALID_FILE = """\
cases:
  - id: hostile-probe
    claims: [roles]
    description: a valid case the tests corrupt
    provenance:
      - {source: seed-002, part: "In [30]-[31]"}
    inputs:
      input: [[-1.0, -2.0]]
      target: [[0.25, 0.75]]
    call: {reduction: sum}
    expect: {oracle: true}
"""
# Sorted first, so that most errors stop the load before the (slower) real files are built.
BAD_FILE_NAME = "00_hostile.yaml"


@pytest.fixture
def cases_copy(tmp_path):
    copy = tmp_path / "cases"
    shutil.copytree(resources.cases_dir(), copy)
    return copy


def write_bad(cases_dir, content):
    path = cases_dir / BAD_FILE_NAME
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def corrupted(old, new):
    assert old in VALID_FILE, old
    return VALID_FILE.replace(old, new, 1)


def load_error(cases_dir) -> SpecError:
    with pytest.raises(SpecError) as raised:
        load_cases(cases_dir)
    message = str(raised.value)
    assert "\n" not in message and "\r" not in message, message
    assert "Traceback" not in message
    return raised.value


def assert_names(error, *, file=BAD_FILE_NAME, line=None, case_id=None, field=None):
    message = str(error)
    assert os.path.basename(error.file) == file, message
    if line is not None:
        assert f"{file}:{line}:" in message, message
        assert error.line == line
    if case_id is not None:
        assert f"case {case_id!r}" in message, message
    if field is not None:
        assert f"field {field!r}" in message, message


def test_the_valid_template_loads(cases_copy):
    write_bad(cases_copy, VALID_FILE)
    assert "hostile-probe" in {case.id for case in load_cases(cases_copy)}


# --- YAML that does not parse -------------------------------------------------------------


def test_yaml_syntax_error_names_the_line(cases_copy):
    write_bad(cases_copy, corrupted("claims: [roles]", "claims: [roles"))
    error = load_error(cases_copy)
    assert_names(error, line=4)
    assert "YAML error" in str(error) and "flow sequence" in str(error)


def test_tab_indentation_is_a_yaml_error(cases_copy):
    write_bad(cases_copy, "cases:\n\t- 1\n")
    error = load_error(cases_copy)
    assert_names(error, line=2)
    assert "'\\t'" in str(error)


def test_two_documents_in_one_file(cases_copy):
    write_bad(cases_copy, VALID_FILE + "---\n" + VALID_FILE)
    assert "single document" in str(load_error(cases_copy))


# --- wrong types, missing fields ------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "line", "field", "words"), [
    ("call: {reduction: sum}", "call: {reduction: sum}\n    dtypes: float32", 11, "dtypes",
     "'float32' is not of type 'array'"),
    ("claims: [roles]", "claims: 5", 3, "claims", "5 is not of type 'array'"),
    ("description: a valid case the tests corrupt", "description: 2020-01-01", 4,
     "description", "is not of type 'string'"),
    ("call: {reduction: sum}", "call: {reduction: sum, log_target: yes please}", 10,
     "call.log_target", "is not of type 'boolean'"),
    ("input: [[-1.0, -2.0]]", "input: [[-1.0, true]]", 8, "inputs.input[0][1]",
     "booleans are not tensor values"),
    ("input: [[-1.0, -2.0]]", 'input: [[-1.0, "two"]]', 8, "inputs.input[0][1]",
     "string 'two' is not a number"),
])
def test_wrong_types(cases_copy, old, new, line, field, words):
    write_bad(cases_copy, corrupted(old, new))
    error = load_error(cases_copy)
    assert_names(error, line=line, case_id="hostile-probe", field=field)
    assert words in str(error)


def test_a_case_without_a_string_id_is_named_by_position(cases_copy):
    write_bad(cases_copy, corrupted("id: hostile-probe", "id: 17"))
    error = load_error(cases_copy)
    assert_names(error, line=2, case_id="#0 (no id)", field="id")


@pytest.mark.parametrize(("removed", "line", "field", "missing"), [
    ("    description: a valid case the tests corrupt\n", 2, None, "'description'"),
    ("      target: [[0.25, 0.75]]\n", 7, "inputs", "'target'"),
    ("    expect: {oracle: true}\n", 2, None, "'expect'"),
])
def test_missing_required_fields(cases_copy, removed, line, field, missing):
    write_bad(cases_copy, corrupted(removed, ""))
    error = load_error(cases_copy)
    assert_names(error, line=line, case_id="hostile-probe", field=field)
    assert f"{missing} is a required property" in str(error)


def test_unknown_field_is_refused(cases_copy):
    write_bad(cases_copy, corrupted("call: {reduction: sum}", "call: {reduction: sum}\n"
                                                              "    colour: red"))
    error = load_error(cases_copy)
    assert_names(error, case_id="hostile-probe")
    assert "'colour' was unexpected" in str(error)


# --- duplicates, unknown names ----------------------------------------------------------------


def test_duplicate_id_within_one_file(cases_copy):
    second = VALID_FILE.split("cases:\n", 1)[1]
    write_bad(cases_copy, VALID_FILE + second)
    error = load_error(cases_copy)
    assert_names(error, line=12, case_id="hostile-probe", field="id")
    assert f"first defined in {BAD_FILE_NAME}:2" in str(error)


def test_duplicate_id_across_two_files(cases_copy):
    write_bad(cases_copy, corrupted("id: hostile-probe", "id: worked-uniform-vs-9-12-4"))
    error = load_error(cases_copy)
    # Files load in name order, so the real file holds the second definition.
    assert_names(error, file="worked_examples.yaml", line=5,
                 case_id="worked-uniform-vs-9-12-4", field="id")
    assert f"first defined in {BAD_FILE_NAME}:2" in str(error)


def test_unknown_claim(cases_copy):
    write_bad(cases_copy, corrupted("claims: [roles]", "claims: [roles, no-such-claim]"))
    error = load_error(cases_copy)
    assert_names(error, line=3, case_id="hostile-probe", field="claims[1]")
    assert "unknown claim 'no-such-claim'" in str(error)


def test_unknown_provenance_source(cases_copy):
    write_bad(cases_copy, corrupted("source: seed-002", "source: a-blog-post"))
    error = load_error(cases_copy)
    assert_names(error, line=6, case_id="hostile-probe", field="provenance[0].source")
    assert "unknown source 'a-blog-post'" in str(error)


def test_unknown_dtype(cases_copy):
    write_bad(cases_copy, corrupted("call: {reduction: sum}",
                                    "call: {reduction: sum}\n    dtypes: [float32, float8]"))
    error = load_error(cases_copy)
    assert_names(error, line=11, case_id="hostile-probe", field="dtypes[1]")
    assert "'float8' is not one of" in str(error)


# --- arrays ------------------------------------------------------------------------------------


def test_ragged_lists_name_the_row(cases_copy):
    write_bad(cases_copy, corrupted("input: [[-1.0, -2.0]]", "input: [[-1.0, -2.0], [-3.0]]"))
    error = load_error(cases_copy)
    assert_names(error, line=8, case_id="hostile-probe", field="inputs.input[1]")
    assert "ragged nested lists: this row has shape (1,)" in str(error)


def test_ragged_lists_inside_a_constructor(cases_copy):
    write_bad(cases_copy, corrupted("target: [[0.25, 0.75]]",
                                    "target: {softmax_of: [[0.1, 0.2], [0.3, [0.4]]]}"))
    error = load_error(cases_copy)
    assert_names(error, line=9, case_id="hostile-probe",
                 field="inputs.target.softmax_of[1][1]")


def test_input_and_target_shapes_differ(cases_copy):
    write_bad(cases_copy, corrupted("input: [[-1.0, -2.0]]", "input: [[-1.0, -2.0, -3.0]]"))
    error = load_error(cases_copy)
    assert_names(error, line=7, case_id="hostile-probe", field="inputs")
    assert "input shape (1, 3) and target shape (1, 2) differ" in str(error)


@pytest.mark.parametrize(("new", "field"), [
    ("input: {full: {shape: [100000, 100000, 100000], value: -1.0}}", "inputs.input.full.shape"),
    ("input: {seeded_normal: {shape: [65536, 65536], seed: 1}}",
     "inputs.input.seeded_normal.shape"),
    ("input: {log_of: {one_hot: {indices: [0, 1], classes: 100000000000}}}",
     "inputs.input.log_of.one_hot"),
])
def test_constructors_refuse_huge_shapes_before_allocating(cases_copy, new, field):
    write_bad(cases_copy, corrupted("input: [[-1.0, -2.0]]", new))
    error = load_error(cases_copy)
    assert_names(error, line=8, case_id="hostile-probe", field=field)
    assert "elements; the limit is" in str(error)


def test_integers_too_large_for_float64(cases_copy):
    write_bad(cases_copy, corrupted("input: [[-1.0, -2.0]]", f"input: [[-1.0, {'9' * 400}]]"))
    error = load_error(cases_copy)
    assert_names(error, line=8, case_id="hostile-probe", field="inputs.input[0][1]")
    assert "400-digit integer is too large" in str(error)


def test_integers_too_long_for_python_to_read(cases_copy):
    # Python's int() refuses over 4300 digits with a ValueError PyYAML does not mark.
    write_bad(cases_copy, corrupted("input: [[-1.0, -2.0]]", f"input: [[-1.0, {'9' * 5000}]]"))
    error = load_error(cases_copy)
    assert_names(error, line=8)
    assert "an integer of 5000 characters is too long" in str(error)


# --- size and shape of the document ---------------------------------------------------------


def test_file_over_the_size_limit(cases_copy):
    write_bad(cases_copy, VALID_FILE + "# " + "x" * MAX_FILE_BYTES + "\n")
    error = load_error(cases_copy)
    assert_names(error)
    assert f"over the limit of {MAX_FILE_BYTES} bytes" in str(error)


def test_too_many_values_is_refused_quickly(cases_copy):
    many = ", ".join(["-1.5"] * (MAX_NODES + 10))
    write_bad(cases_copy, corrupted("input: [[-1.0, -2.0]]", f"input: [{many}]"))
    started = time.perf_counter()
    error = load_error(cases_copy)
    assert time.perf_counter() - started < 60
    assert_names(error, line=8)
    assert f"more than {MAX_NODES} values" in str(error)


@pytest.mark.parametrize("style", ["flow", "block"])
def test_ten_thousand_nested_lists(cases_copy, style):
    depth = 10_000
    if style == "flow":
        nested = "[" * depth + "]" * depth
        write_bad(cases_copy, corrupted("input: [[-1.0, -2.0]]", f"input: {nested}"))
    else:
        # Block lists nest on one line too: "- - - 1" is [[[1]]].
        write_bad(cases_copy, "cases:\n  " + "- " * depth + "1\n")
    error = load_error(cases_copy)  # a RecursionError would escape as a traceback
    assert_names(error)
    assert f"nesting deeper than {MAX_DEPTH} levels" in str(error)


def test_billion_laughs(cases_copy):
    laughs = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        laughs.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    write_bad(cases_copy, "\n".join(laughs) + "\n")
    started = time.perf_counter()
    error = load_error(cases_copy)
    assert time.perf_counter() - started < 10
    assert_names(error, line=2)
    assert "aliases (*name) are not allowed" in str(error)


def test_a_single_alias_is_refused_too(cases_copy):
    write_bad(cases_copy, corrupted("target: [[0.25, 0.75]]", "target: *whatever"))
    assert_names(load_error(cases_copy), line=9)


# --- YAML that would build Python objects ----------------------------------------------------


@pytest.fixture
def calls_to_os_system(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda command: calls.append(command) or 0)
    return calls


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system",
                                 "!!python/object/new:os.system"])
def test_python_object_tags_run_nothing(cases_copy, tmp_path, calls_to_os_system, tag):
    marker = tmp_path / "PWNED"
    write_bad(cases_copy, f'{tag} ["touch {marker}"]\n')
    error = load_error(cases_copy)
    assert_names(error, line=1)
    assert "could not determine a constructor" in str(error)
    assert not marker.exists()
    assert calls_to_os_system == []


def test_python_object_tag_inside_a_case_runs_nothing(cases_copy, tmp_path,
                                                      calls_to_os_system):
    marker = tmp_path / "PWNED"
    write_bad(cases_copy, corrupted("target: [[0.25, 0.75]]",
                                    f'target: !!python/object/apply:os.system ["touch {marker}"]'))
    assert_names(load_error(cases_copy), line=9)
    assert not marker.exists()
    assert calls_to_os_system == []


def test_python_name_tag_is_refused(cases_copy):
    write_bad(cases_copy, corrupted("description: a valid case the tests corrupt",
                                    "description: !!python/name:os.system"))
    error = load_error(cases_copy)
    assert_names(error, line=4)
    assert "python/name:os.system" in str(error)


def test_unknown_local_tag_is_refused(cases_copy):
    write_bad(cases_copy, corrupted("target: [[0.25, 0.75]]", "target: !numpy [[0.25, 0.75]]"))
    assert_names(load_error(cases_copy), line=9)


# --- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "line", "key"), [
    ("    call: {reduction: sum}\n",
     "    call: {reduction: sum}\n    call: {reduction: mean}\n", 11, "call"),
    ("{reduction: sum}", "{reduction: sum, reduction: mean}", 10, "reduction"),
])
def test_duplicate_mapping_keys(cases_copy, old, new, line, key):
    write_bad(cases_copy, corrupted(old, new))
    error = load_error(cases_copy)
    assert_names(error, line=line)
    assert f"duplicate key {key!r}" in str(error)


@pytest.mark.parametrize("text", ["? [1, 2]\n: 3\ncases: []\n", "{a: 1}: 2\n"])
def test_keys_that_are_lists_or_mappings(cases_copy, text):
    write_bad(cases_copy, text)
    error = load_error(cases_copy)
    assert_names(error, line=1)
    assert "mapping keys must be plain names" in str(error)


# --- bytes and top-level shape ---------------------------------------------------------------


def test_non_utf8_bytes(cases_copy):
    text = corrupted("a valid case the tests corrupt", "caf\N{LATIN SMALL LETTER E WITH ACUTE}")
    write_bad(cases_copy, text.encode("latin-1"))
    error = load_error(cases_copy)
    assert_names(error, line=4)
    assert "not UTF-8 text" in str(error)


def test_nul_character(cases_copy):
    write_bad(cases_copy, VALID_FILE + "\x00\n")
    error = load_error(cases_copy)
    assert_names(error, line=12)
    assert "U+0000 is not allowed" in str(error)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- 1\n- 2\n", "just text\n"],
                         ids=["empty", "comment-only", "top-level-list", "top-level-scalar"])
def test_not_a_mapping(cases_copy, text):
    write_bad(cases_copy, text)
    error = load_error(cases_copy)
    assert_names(error, line=1)
    assert "a case file is a mapping with a 'cases' list" in str(error)


def test_cases_key_without_a_list(cases_copy):
    write_bad(cases_copy, "cases:\n")
    error = load_error(cases_copy)
    assert_names(error, line=1, field="cases")


def test_directory_named_like_a_case_file_is_not_read(cases_copy):
    (cases_copy / "nested.yaml").mkdir()
    assert load_cases(cases_copy)


# --- end to end: pytest stops before running anything -----------------------------------------


def test_malformed_case_stops_the_pytest_run_with_one_line(pytester, cases_copy, tmp_path):
    write_bad(cases_copy, corrupted("claims: [roles]", "claims: [roles, no-such-claim]"))
    result = pytester.runpytest_inprocess(
        str(resources.suites_dir()), f"--kl-only-cases={cases_copy}", "--impl=numpy",
        f"--report-dir={tmp_path / 'report'}", "-p", "no:cacheprovider")
    output = result.stdout.str() + result.stderr.str()
    expected = (f"{BAD_FILE_NAME}:3: case 'hostile-probe': field 'claims[1]': "
                "unknown claim 'no-such-claim'")
    assert expected in output
    assert result.ret != 0
    outcomes = result.parseoutcomes()
    assert not any(outcomes.get(kind) for kind in ("passed", "failed", "skipped", "xfailed"))
    assert "Traceback" not in output
