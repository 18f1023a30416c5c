"""The folder of compiled programs runs keep (klconform.program_store), and what a run
keeps in it (klconform.engine.compile_ahead): only whole entries, never a killed worker's."""

import os
import time

import pytest

from klconform import program_store
from klconform.engine import compile_ahead


def _entry(folder, name, text="program"):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w") as handle:
        handle.write(text)
    return path


def test_a_process_reads_the_shared_entries_through_links_and_adds_only_its_own(tmp_path):
    shared, own = str(tmp_path / "shared"), str(tmp_path / "own")
    _entry(shared, "earlier")
    assert program_store.link_into(shared, own) == {"earlier"}
    assert os.path.samefile(os.path.join(own, "earlier"), os.path.join(shared, "earlier"))
    _entry(own, "compiled-here")
    _entry(shared, "compiled-ahead", "whole")
    _entry(own, "compiled-ahead", "the same program, written here too")
    assert program_store.publish(own, shared) == {"compiled-here"}
    assert sorted(os.listdir(shared)) == ["compiled-ahead", "compiled-here", "earlier"]
    with open(os.path.join(shared, "compiled-ahead")) as handle:
        assert handle.read() == "whole"   # an entry already shared is never replaced
    assert not os.path.exists(os.path.join(own, "compiled-here"))   # moved, not copied


def test_linked_names_stay_where_they_are(tmp_path):
    shared, own = str(tmp_path / "shared"), str(tmp_path / "own")
    _entry(shared, "linked")
    with program_store.Mirror(shared, own):
        pass   # a call that loaded the linked program and compiled nothing
    assert os.listdir(shared) == ["linked"] and os.listdir(own) == ["linked"]
    assert program_store.publish(own, shared) == set()   # the run's end moves nothing either
    assert os.listdir(own) == ["linked"]


def test_a_mirror_links_what_others_shared_since_and_stats_only_otherwise(tmp_path,
                                                                          monkeypatch):
    shared, own = str(tmp_path / "shared"), str(tmp_path / "own")
    mirror = program_store.Mirror(shared, own)
    assert os.listdir(own) == []
    _entry(str(tmp_path / "staging"), "compiled-ahead")
    program_store.publish(str(tmp_path / "staging"), shared)
    # The rename changed the shared folder's time stamp: the next refresh links it.
    os.utime(shared, ns=(0, os.stat(shared).st_mtime_ns + 1))
    mirror.refresh()
    assert os.listdir(own) == ["compiled-ahead"]
    listed = []
    monkeypatch.setattr(program_store, "_entries", lambda folder: listed.append(folder) or [])
    mirror.refresh()
    assert listed == []   # unchanged: one stat, no listing


def test_what_a_call_compiled_is_shared_when_it_returns_and_nothing_written_before(tmp_path):
    shared, own = str(tmp_path / "shared"), str(tmp_path / "own")
    _entry(own, "half-written")   # by a process of the same worker, killed while writing
    mirror = program_store.Mirror(shared, own)
    mirror.before_call()
    _bump(own)
    _entry(own, "compiled-by-this-call")
    assert os.listdir(shared) == []   # not while the call runs
    mirror.after_call()
    assert sorted(os.listdir(shared)) == ["compiled-by-this-call"]
    assert os.path.samefile(os.path.join(shared, "compiled-by-this-call"),
                            os.path.join(own, "compiled-by-this-call"))
    mirror.before_call()
    mirror.after_call()   # a call that compiled nothing
    assert sorted(os.listdir(shared)) == ["compiled-by-this-call"]


def test_a_call_sees_what_another_process_shared_since_the_last(tmp_path):
    shared, own = str(tmp_path / "shared"), str(tmp_path / "own")
    mirror = program_store.Mirror(shared, own)
    other = program_store.Mirror(shared, str(tmp_path / "other"))
    other.before_call()
    _bump(other.own)
    _entry(other.own, "compiled-by-the-other")
    other.after_call()
    _bump(shared)
    mirror.before_call()
    assert os.listdir(own) == ["compiled-by-the-other"]


def _bump(folder):
    """Move a folder's time stamp on, as a new entry would on a coarse clock."""
    stamp = os.stat(folder).st_mtime_ns
    os.utime(folder, ns=(stamp, stamp + 1_000_000))


def test_programs_are_kept_apart_by_library_build_and_cpu(monkeypatch):
    build = program_store.scope("jax", "0.10.2", "0.10.2", [("_jax.so", 1, 2)])
    assert build == program_store.scope("jax", "0.10.2", "0.10.2", [("_jax.so", 1, 2)])
    assert build != program_store.scope("jax", "0.10.2", "0.10.2", [("_jax.so", 1, 3)])
    monkeypatch.setattr(program_store, "_cpu_features", lambda: "flags: fpu avx2")
    assert build != program_store.scope("jax", "0.10.2", "0.10.2", [("_jax.so", 1, 2)])


def test_entries_unused_for_a_month_are_removed(tmp_path):
    shared = str(tmp_path / "shared")
    old = _entry(shared, "old")
    _entry(shared, "recent")
    month_ago = time.time() - program_store.UNUSED_FOR_S - 60
    os.utime(old, (month_ago, month_ago))
    program_store.remove_unused(shared)
    assert os.listdir(shared) == ["recent"]


@pytest.fixture
def kept_in(tmp_path, monkeypatch):
    """compile_ahead's process-wide state, fresh and pointed at `tmp_path / cache`."""
    state = compile_ahead._CompiledAhead()
    monkeypatch.setattr(compile_ahead, "_compiled_ahead", state)
    compile_ahead.keep_in(str(tmp_path / "cache"))
    return state


SCOPE = "a-library-build"


def _worker_compiled(name):
    """The programs folder of SCOPE, after a call worker compiled `name` there."""
    environment = compile_ahead.worker_environment({})
    programs = os.path.join(environment[compile_ahead.COMPILED_AHEAD_VARIABLE], SCOPE)
    own = os.path.join(environment[compile_ahead.COMPILED_HERE_VARIABLE], SCOPE)
    program_store.link_into(programs, own)
    _entry(own, name)
    return programs


def test_a_run_keeps_what_its_worker_compiled_and_removes_its_own_folder(kept_in):
    programs = _worker_compiled("compiled-by-the-worker")
    compile_ahead.worker_ended(whole=True)
    compile_ahead.stop()
    assert os.listdir(programs) == ["compiled-by-the-worker"]
    cache = os.path.dirname(os.path.dirname(programs))
    assert os.listdir(os.path.join(cache, compile_ahead.RUNS)) == []


def test_a_run_whose_worker_was_killed_at_work_keeps_nothing_it_wrote(kept_in):
    programs = _worker_compiled("perhaps-half-written")
    compile_ahead.worker_ended(whole=False)
    compile_ahead.stop()
    assert os.listdir(programs) == []


def test_off_keeps_nothing_past_the_run(kept_in, tmp_path):
    kept_in.folder = None
    compile_ahead.keep_in(compile_ahead.OFF)
    programs = _worker_compiled("compiled-by-the-worker")
    assert not programs.startswith(str(tmp_path))
    compile_ahead.worker_ended(whole=True)
    compile_ahead.stop()
    assert not os.path.exists(os.path.dirname(os.path.dirname(programs)))


def test_a_call_that_crashed_or_hung_leaves_the_worker_not_whole(monkeypatch):
    from klconform.engine import isolation

    ended = []
    monkeypatch.setattr(compile_ahead, "worker_ended", lambda whole: ended.append(whole))
    monkeypatch.setattr(isolation, "CallWorker", _Stub)
    pool = isolation._Pool()
    pool.worker = _Stub()
    pool.shutdown()
    pool.worker = _Stub()
    pool.replace()     # what a crash or a timeout does
    pool.shutdown()
    pool = isolation._Pool()
    pool.worker, pool.in_flight = _Stub(), True   # interrupted during a call
    pool.shutdown()
    assert ended == [True, False, False]


class _Stub:
    """A call worker that is there and can be ended."""

    class process:
        @staticmethod
        def poll():
            return 0

    def drop_child(self):
        return False

    def kill(self):
        pass

    def close(self):
        pass


def test_a_cache_folder_that_cannot_be_made_leaves_every_program_compiled_in_place(
        kept_in, tmp_path, monkeypatch):
    from klconform.adapters import convention
    from klconform.adapters.arrays import numpy_arrays
    from klconform.engine.worker_protocol import implementation_spec
    from klconform.spec.conventions import load_record
    from tests.test_compile_ahead import resources_records

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    kept_in.folder = None
    compile_ahead.keep_in(str(blocked / "cache"))
    environment = compile_ahead.worker_environment({})
    compile_ahead.start(implementation_spec("numpy"), {"tests": [], "device": "cpu",
                                                       "max_examples": None}, dict(os.environ))
    assert kept_in.process is None   # no second child, and no error
    # The call worker's side: no folder of its own, no sharing asked of the library.
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(convention, "compiles_ahead", lambda record, bridge: True)
    monkeypatch.setattr(convention, "_shared_programs", None)
    shared = []
    monkeypatch.setattr(numpy_arrays.BRIDGE, "share_compilations",
                        lambda *arguments: shared.append(arguments), raising=False)
    monkeypatch.setattr(numpy_arrays.BRIDGE, "compilation_scope", lambda: SCOPE,
                        raising=False)
    # scipy's record: numpy arrays, a library that is installed wherever klconform is tested.
    convention.prepare_libraries(load_record(resources_records() / "scipy.yaml"))
    assert shared == [] and convention._shared_programs is None
    compile_ahead.stop()
