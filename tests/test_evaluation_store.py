"""Held-out evaluations kept by content: what the key depends on, and fetch after keep."""

import pyarrow as pa
import pyarrow.parquet as pq

from bolt_tasks.core.config import EvaluationConfig, TaskConfig
from bolt_tasks.core.shards import Shard
from bolt_tasks.core.storage import ModelRef, write_table_atomic
from bolt_tasks.stages import evaluation_store

MODEL = ModelRef(path="/runs/a/round-0/policy", digest="aaaa")
REFERENCE = ModelRef(path="/runs/reference", digest="rrrr")


def prompts(train_prompt: str = "1+1=", heldout_answer: str = "5") -> pa.Table:
    return pa.table({
        "prompt_id": ["t0", "h0", "h1"], "prompt": [train_prompt, "2+3=", "4+4="],
        "answer": ["2", heldout_answer, "8"], "split": ["train", "heldout", "heldout"]})


def key(table=None, model=MODEL, reference=REFERENCE, evaluation=EvaluationConfig(),
        task=TaskConfig(), stop=(), shard=None, verifier_code=None):
    return evaluation_store.evaluation_key(
        prompts() if table is None else table, model, reference, evaluation, task, list(stop),
        shard, verifier_code or {}, "bolt_tasks.stages.evaluation")


def test_the_key_ignores_the_training_rows_and_where_the_model_lies():
    assert key(prompts(train_prompt="9+9=")) == key()
    assert key(model=ModelRef(path="/elsewhere", digest="aaaa")) == key()
    assert key(task=TaskConfig(train_prompts=7)) == key()


def test_the_key_changes_with_everything_the_numbers_depend_on():
    base = key()
    changed = {
        "heldout answer": key(prompts(heldout_answer="6")),
        "model": key(model=ModelRef(path=MODEL.path, digest="bbbb")),
        "reference": key(reference=ModelRef(path=REFERENCE.path, digest="ssss")),
        "seed": key(evaluation=EvaluationConfig(seed=2)),
        "samples": key(evaluation=EvaluationConfig(samples_per_prompt=16)),
        "verifier": key(task=TaskConfig(verifier="exact_match")),
        "verifier code": key(verifier_code={"my.py": "def verify(): ..."}),
        "stop": key(stop=["\n"]),
        "shard": key(shard=Shard(index=0, count=2, start=0, stop=1)),
    }
    assert all(value != base for value in changed.values()), changed
    assert len(set(changed.values())) == len(changed)


def test_fetch_returns_what_keep_stored_and_nothing_before(tmp_path):
    store, round_dir = tmp_path / "evaluations", tmp_path / "round"
    round_dir.mkdir()
    out, samples = round_dir / "eval.parquet", round_dir / "samples.parquet"
    assert evaluation_store.fetch(store, key(), out, samples) is None
    assert not out.exists()

    evaluation_store.keep(store, key(), evaluated(out, samples))
    out.unlink(), samples.unlink()

    fetched = evaluation_store.fetch(store, key(), out, samples)
    assert pq.read_table(out)["accuracy"].to_pylist() == [0.25]
    assert pq.read_table(samples)["reward"].to_pylist() == [1.0]
    assert [ref.path for ref in fetched] == [str(out), str(samples)]
    assert evaluation_store.fetch(store, key(stop=["\n"]), out, samples) is None


def test_an_entry_missing_a_file_is_not_fetched(tmp_path):
    store = tmp_path / "evaluations"
    (store / key()).mkdir(parents=True)
    pq.write_table(pa.table({"accuracy": [0.25]}), store / key() / "eval.parquet")
    assert evaluation_store.fetch(store, key(), tmp_path / "e.parquet", tmp_path / "s.parquet") is None


def evaluated(out, samples):
    return (write_table_atomic(pa.table({"accuracy": [0.25]}), out),
            write_table_atomic(pa.table({"prompt_id": ["h0"], "reward": [1.0]}), samples))


def test_an_entry_whose_content_changed_is_not_fetched_and_the_log_names_the_file(tmp_path, caplog):
    store, out, samples = tmp_path / "evaluations", tmp_path / "eval.parquet", tmp_path / "samples.parquet"
    evaluation_store.keep(store, key(), evaluated(out, samples))
    stored = store / key() / "samples.parquet"
    stored.write_bytes(stored.read_bytes()[: stored.stat().st_size // 2])
    fresh = tmp_path / "round"
    with caplog.at_level("WARNING"):
        assert evaluation_store.fetch(store, key(), fresh / "eval.parquet", fresh / "samples.parquet") is None
    assert f"{stored} changed since it was stored" in caplog.text
    assert not fresh.exists() or list(fresh.iterdir()) == []  # not even the intact eval.parquet

    evaluation_store.keep(store, key(), evaluated(out, samples))  # evaluated again: whole again
    assert evaluation_store.fetch(store, key(), out, samples) is not None
    (store / key() / "digests.json").unlink()
    assert evaluation_store.fetch(store, key(), out, samples) is None
