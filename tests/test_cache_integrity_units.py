"""The pieces of an honest cache hit: a result's files checked by stamp then by content, paths
re-rooted when the runs directory moved, and the MLflow store's paths moved with it."""

import os
import shutil
import sqlite3

import pyarrow as pa
import pytest

from bolt_tasks.core.intact import Damaged, intact
from bolt_tasks.core.relocation import rebased, recorded_root, runs_relative
from bolt_tasks.core.storage import ModelRef, write_table_atomic
from bolt_tasks.core.tracking_relocation import relocate_store


def table(tmp_path, name="weights.parquet", rows=3):
    return write_table_atomic(pa.table({"w": [0.5] * rows}), tmp_path / name)


def model(tmp_path):
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\x00" * 1000)
    return ModelRef.of_directory(folder)


def test_an_untouched_result_is_intact_and_unchanged(tmp_path):
    result = (table(tmp_path), model(tmp_path))
    assert intact(result) == result


def test_a_file_touched_but_not_changed_is_intact_with_its_new_stamp(tmp_path):
    ref = table(tmp_path)
    os.utime(ref.path, ns=(1, 1))
    checked = intact(ref)
    assert checked.digest == ref.digest and checked.mtime_ns == 1 and checked != ref


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "changed since the stage wrote it"),
    (lambda p: p.unlink(), "is missing"),
])
def test_a_truncated_or_deleted_table_is_damaged_and_named(tmp_path, damage, message):
    ref = table(tmp_path)
    damage(tmp_path / "weights.parquet")
    with pytest.raises(Damaged, match=f"{tmp_path / 'weights.parquet'} {message}"):
        intact({"weights": ref})


def test_same_size_same_mtime_edits_are_the_one_thing_the_stamp_check_trusts(tmp_path):
    """The documented trade: size and mtime first. A same-size rewrite that also restores the
    mtime is not hashed again."""
    ref = table(tmp_path)
    path = tmp_path / "weights.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(ref.mtime_ns, ref.mtime_ns))
    assert intact(ref) == ref
    os.utime(path, ns=(ref.mtime_ns + 1, ref.mtime_ns + 1))
    with pytest.raises(Damaged, match="changed since"):
        intact(ref)


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "model.safetensors").write_bytes(b"\x01" * 1000), "model.safetensors changed"),
    (lambda f: (f / "config.json").unlink(), "config.json is missing"),
    (lambda f: (f / "extra.bin").write_bytes(b"x"), "extra.bin was not written by the stage"),
    (shutil.rmtree, "policy is missing"),
])
def test_a_model_folder_with_a_changed_missing_or_extra_file_is_damaged(tmp_path, damage, message):
    ref = model(tmp_path)
    damage(tmp_path / "policy")
    with pytest.raises(Damaged, match=message):
        intact(ref)


def test_a_copy_that_drops_mtimes_keeps_the_model_digest(tmp_path):
    ref = model(tmp_path)
    for file in (tmp_path / "policy").iterdir():
        os.utime(file, ns=(5, 5))
    assert ModelRef.of_directory(tmp_path / "policy").digest == ref.digest
    assert intact(ref).digest == ref.digest


def test_runs_relative_names_the_root_only_as_a_whole_path():
    root = "/data/runs"
    assert runs_relative("/data/runs/default/round-0/weights.parquet", root) == "<runs>/default/round-0/weights.parquet"
    assert runs_relative("sqlite:////data/runs/mlflow.db", root) == "sqlite:///<runs>/mlflow.db"
    assert runs_relative("/data/runs", root) == "<runs>"
    for elsewhere in ("/data/runs2/x", "/other/data/runs/x", "/data/run", "models/data/runs"):
        assert runs_relative(elsewhere, root) == elsewhere


def test_rebased_moves_refs_records_and_text_under_the_old_root_only(tmp_path):
    from bolt_tasks.core.storage import TableRef

    ref = TableRef("/old/runs/p/round-0/weights.parquet", "abc", size=3, mtime_ns=4)
    moved = rebased((ref, ["/old/runs/p", "/old/runsx"], {"uri": "sqlite:////old/runs/mlflow.db"}),
                    "/old/runs", "/new/place")
    assert moved[0] == TableRef("/new/place/p/round-0/weights.parquet", "abc", size=3, mtime_ns=4)
    assert moved[1] == ["/new/place/p", "/old/runsx"]
    assert moved[2] == {"uri": "sqlite:////new/place/mlflow.db"}


def test_recorded_root_is_where_the_record_was_written(tmp_path):
    record = tmp_path / "new" / "p" / "round-0" / ".prefect-cache" / "k"
    root = str(tmp_path / "new")
    assert recorded_root("/old/runs/p/round-0/.prefect-cache/k", record, root) == "/old/runs"
    assert recorded_root(str(record), record, root) is None
    assert recorded_root("/old/runs/q/round-0/.prefect-cache/k", record, root) is None


def test_a_moved_mlflow_store_has_its_paths_moved(tmp_path):
    store = tmp_path / "mlflow.db"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE experiments (experiment_id INTEGER, artifact_location VARCHAR(256))")
        db.execute("CREATE TABLE runs (run_uuid VARCHAR(32), artifact_uri VARCHAR(200))")
        db.execute("CREATE TABLE tags (key VARCHAR(250), value VARCHAR(5000))")
        db.execute("INSERT INTO experiments VALUES (1, 'file:///old/runs/mlartifacts')")
        db.execute("INSERT INTO runs VALUES ('r', 'file:///old/runs/mlartifacts/r/artifacts')")
        db.execute("INSERT INTO tags VALUES ('bolt.round_dir', '/old/runs/p/round-0'), ('other', '/old/runsx')")
    assert relocate_store(store, tmp_path) == "/old/runs"
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT artifact_uri FROM runs").fetchone()[0] == f"file://{tmp_path}/mlartifacts/r/artifacts"
        assert [v for (v,) in db.execute("SELECT value FROM tags")] == [f"{tmp_path}/p/round-0", "/old/runsx"]
    assert relocate_store(store, tmp_path) is None  # written here now: nothing to move
