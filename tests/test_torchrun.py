"""Weighted SFT in torchrun's processes (gloo on CPU) fits the policy the inline trainer fits,
and a training process that dies fails the stage, leaves no policy, and a rerun completes."""

import logging
import threading
import time

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from bolt_tasks.core.config import TrainingConfig
from bolt_tasks.policy.torchrun import TrainingProcessesFailed, train_with_torchrun
from bolt_tasks.policy.training import train_policy

# The default learning rate, 6 steps. Batches of 16 over 42 rollouts: the last batch (10) splits 5/5, and micro-batches of at most
# 40 tokens give the two processes different micro-batch counts (the zero-weight padding).
SETTINGS = dict(epochs=2, batch_size=16, learning_rate=1e-4, warmup_steps=2,
                max_tokens_per_micro_batch=40)


@pytest.fixture(scope="module")
def weighted_rollouts(tmp_path_factory):
    generator = torch.Generator().manual_seed(5)
    rows = 42
    prompts = [torch.randint(3, 40, (int(torch.randint(3, 7, (1,), generator=generator)),),
                             generator=generator).tolist() for _ in range(rows)]
    responses = [torch.randint(3, 40, (int(torch.randint(1, 6, (1,), generator=generator)),),
                               generator=generator).tolist() + [2] for _ in range(rows)]
    keys = {"prompt_id": [f"p{i // 3}" for i in range(rows)], "sample_idx": [i % 3 for i in range(rows)]}
    directory = tmp_path_factory.mktemp("weighted")
    pq.write_table(pa.table(keys | {"prompt_token_ids": prompts, "response_token_ids": responses}),
                   directory / "rollouts.parquet")
    weights = (torch.rand(rows, generator=generator) * 3).tolist()
    pq.write_table(pa.table(keys | {"weight": weights}), directory / "weights.parquet")
    return directory


def fitted(directory) -> dict[str, torch.Tensor]:
    return load_file(f"{directory}/model.safetensors")


def largest_difference(first: dict, second: dict) -> float:
    assert first.keys() == second.keys()
    return max((first[name] - second[name]).abs().max().item() for name in first)


@pytest.mark.slow
def test_ddp_and_fsdp_in_two_processes_fit_the_inline_policy(weighted_rollouts, tiny_model_dir, tmp_path):
    rollouts, weights = weighted_rollouts / "rollouts.parquet", weighted_rollouts / "weights.parquet"
    train_policy(pq.read_table(rollouts), pq.read_table(weights), tiny_model_dir,
                 TrainingConfig(**SETTINGS), tmp_path / "inline", tmp_path / "inline.parquet")
    inline = fitted(tmp_path / "inline")
    start = fitted(tiny_model_dir)
    assert largest_difference(inline, start) > 3e-4  # the fit moved: a mismatch would show
    for parallelism in ("ddp", "fsdp"):
        training = TrainingConfig(**SETTINGS, launcher="torchrun", nproc_per_node=2, parallelism=parallelism)
        train_with_torchrun(str(rollouts), str(weights), tiny_model_dir, training,
                            str(tmp_path / parallelism), str(tmp_path / f"{parallelism}.parquet"))
        difference = largest_difference(fitted(tmp_path / parallelism), inline)
        print(f"{parallelism}, 2 processes: largest parameter difference to inline {difference:.2e}")
        assert difference < 1e-5, parallelism
        losses = pq.read_table(tmp_path / f"{parallelism}.parquet")["loss"].to_numpy()
        inline_losses = pq.read_table(tmp_path / "inline.parquet")["loss"].to_numpy()
        assert len(losses) == len(inline_losses) == 6
        assert abs(losses - inline_losses).max() < 1e-4


@pytest.mark.slow
def test_a_killed_training_process_fails_the_stage_and_a_rerun_completes(
        weighted_rollouts, tiny_model_dir, tmp_path, no_process_left):
    rollouts, weights = str(weighted_rollouts / "rollouts.parquet"), str(weighted_rollouts / "weights.parquet")
    policy, log = str(tmp_path / "policy"), str(tmp_path / "log.parquet")
    long_fit = TrainingConfig(**(SETTINGS | {"epochs": 200}), launcher="torchrun", nproc_per_node=2)
    training_started, outcome = threading.Event(), {}

    class Watch(logging.Handler):
        def emit(self, record):
            if "weighted SFT" in record.getMessage():
                training_started.set()

    watch, logger = Watch(), logging.getLogger("bolt_tasks")  # where the stage relays rank 0's lines
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(watch)

    def train():
        try:
            train_with_torchrun(rollouts, weights, tiny_model_dir, long_fit, policy, log)
        except TrainingProcessesFailed as error:
            outcome["error"] = error

    thread = threading.Thread(target=train)
    thread.start()
    try:
        assert training_started.wait(120), "training never reported progress"
        # process_iter with attrs skips processes that exit while listed and reads zombies as None
        commands = {p: " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])}
        ranks = [p for p, command in commands.items() if "bolt_tasks.policy.distributed" in command
                 and str(tmp_path) in command and "torch.distributed.run" not in command]
        assert len(ranks) == 2
        ranks[1].kill()
        thread.join(120)
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)
    assert not thread.is_alive()
    message = str(outcome["error"])
    assert "failed with exit code" in message and "nothing was saved" in message
    assert "weighted SFT" in message or "SIGKILL" in message or "exitcode" in message  # its output
    assert not (tmp_path / "policy").exists()
    time.sleep(0.5)
    train_with_torchrun(rollouts, weights, tiny_model_dir, long_fit.model_copy(update={"epochs": 1}),
                        policy, log)
    assert (tmp_path / "policy" / "model.safetensors").is_file()
    assert pq.read_table(log).num_rows == 3


def unequal_groups(tmp_path, widths=(3, 5, 9, 14), samples=8):
    """4 prompt groups of 8 samples whose responses differ in width from group to group."""
    generator = torch.Generator().manual_seed(11)
    prompts, responses, keys = [], [], {"prompt_id": [], "sample_idx": []}
    for group, width in enumerate(widths):
        prompt = torch.randint(3, 40, (4 + group,), generator=generator).tolist()
        for sample in range(samples):
            prompts.append(prompt)
            length = width + int(torch.randint(0, 3, (1,), generator=generator))
            responses.append(torch.randint(3, 40, (length,), generator=generator).tolist() + [2])
            keys["prompt_id"].append(f"g{group}")
            keys["sample_idx"].append(sample)
    weights = (torch.rand(len(prompts), generator=generator) * 3).tolist()
    pq.write_table(pa.table(keys | {"prompt_token_ids": prompts, "response_token_ids": responses}),
                   tmp_path / "groups.parquet")
    pq.write_table(pa.table(keys | {"weight": weights}), tmp_path / "group_weights.parquet")
    return tmp_path / "groups.parquet", tmp_path / "group_weights.parquet"


@pytest.mark.slow
def test_four_processes_share_four_unequal_groups_evenly_and_fit_the_inline_policy(tiny_model_dir, tmp_path):
    """A batch of 4 prompt groups on 4 processes: dealt whole, one group each, the busiest rank
    carries the widest group (over 1.5x the mean); dealt by token count, every rank is within
    25% of the mean, and the fit is the one-process fit."""
    rollouts, weights = unequal_groups(tmp_path)
    table = pq.read_table(rollouts)
    by_group = {}
    for prompt, response in zip(table["prompt_token_ids"].to_pylist(), table["response_token_ids"].to_pylist()):
        by_group.setdefault(tuple(prompt), []).append(len(response))
    whole = [len(prompt) + sum(lengths) for prompt, lengths in by_group.items()]
    assert max(whole) / (sum(whole) / 4) > 1.5
    settings = dict(epochs=2, batch_size=32, learning_rate=1e-4, warmup_steps=1)
    train_policy(pq.read_table(rollouts), pq.read_table(weights), tiny_model_dir,
                 TrainingConfig(**settings), tmp_path / "inline", tmp_path / "inline.parquet")
    training = TrainingConfig(**settings, launcher="torchrun", nproc_per_node=4)
    train_with_torchrun(str(rollouts), str(weights), tiny_model_dir, training,
                        str(tmp_path / "four"), str(tmp_path / "four.parquet"))
    log = pq.read_table(tmp_path / "four.parquet")
    print("rank balance (busiest / mean positions) per step:", log["rank_balance"].to_pylist())
    assert log.num_rows == 2 and max(log["rank_balance"].to_pylist()) <= 1.25
    assert pq.read_table(tmp_path / "inline.parquet")["rank_balance"].to_pylist() == [1.0, 1.0]
    difference = largest_difference(fitted(tmp_path / "four"), fitted(tmp_path / "inline"))
    print(f"4 processes: largest parameter difference to inline {difference:.2e}")
    assert difference < 1e-5
