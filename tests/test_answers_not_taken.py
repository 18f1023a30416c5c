"""What a run keeps of the answers made ahead that it did not take: per implementation,
written whole, and read as nothing where it cannot be read."""

import json

from klconform.engine import answers_not_taken

IDENTITY = ("jax", None, "cpu", 25)


def test_kept_per_implementation_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert answers_not_taken.load(IDENTITY) == frozenset()
    answers_not_taken.save(IDENTITY, {"b" * 32, "a" * 32})
    assert answers_not_taken.load(IDENTITY) == {"a" * 32, "b" * 32}
    assert answers_not_taken.load(("optax", None, "cpu", 25)) == frozenset()
    assert answers_not_taken.load(IDENTITY[:3] + (None,)) == frozenset()
    folder = tmp_path / "klconform" / answers_not_taken.FOLDER
    assert [path.suffix for path in folder.iterdir()] == [".json"]   # no partial file left


def test_a_file_it_cannot_read_is_no_answer_left_out(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = answers_not_taken.path_for(IDENTITY)
    answers_not_taken.save(IDENTITY, {"a" * 32})
    for text in ("not json", json.dumps({"format": 0, "keys": ["a"]}), json.dumps(["a"])):
        with open(path, "w") as handle:
            handle.write(text)
        assert answers_not_taken.load(IDENTITY) == frozenset(), text


def test_a_home_it_cannot_write_keeps_nothing_and_says_nothing(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    answers_not_taken.save(IDENTITY, {"a" * 32})
    assert answers_not_taken.load(IDENTITY) == frozenset()


def test_what_a_run_did_not_take_replaces_what_it_needed():
    previous = {"needed", "taken", "unreached"}
    assert answers_not_taken.updated(previous, received={"taken", "passed by"},
                                     taken={"taken"}, made_by_the_run={"needed"}) == {
        "unreached", "passed by"}
