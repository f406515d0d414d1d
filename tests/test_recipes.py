"""The recipes in recipes/: each loads as the configuration it is, the CLI reads them as it reads
any --config file, and the small ones run."""

import json
from pathlib import Path

import pytest

from bolt_cli.main import parser
from bolt_cli.options import build_config, build_refresh_config, build_refresh_recipe
from bolt_tasks.core.config import RoundConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.recipes import RefreshRecipe, load_recipe, shipped_recipes

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def args(*words):
    return parser().parse_args(list(words))


def test_every_recipe_file_ships_and_loads():
    files = sorted(p.stem for p in RECIPES.glob("*.json"))
    assert files == shipped_recipes()
    assert {"default", "smollm2", "smollm2-lora", "refresh-nightly", "gpu-qwen2.5-1.5b"} <= set(files)
    for name in files:
        by_name, by_path = load_recipe(name), load_recipe(RECIPES / f"{name}.json")
        assert by_name == by_path
        assert isinstance(by_name, RoundConfig | RefreshRecipe)


def test_the_default_recipe_is_every_default():
    assert json.loads((RECIPES / "default.json").read_text()) == RoundConfig().model_dump(mode="json")


def test_the_lora_recipe_is_the_smollm2_recipe_with_adapters():
    full, lora = load_recipe("smollm2"), load_recipe("smollm2-lora")
    assert lora.training.lora is not None and lora.training.lora.rank == 16
    assert full.training.lora is None
    assert lora.model_copy(update={"pipeline": full.pipeline, "training": full.training}) == full


def test_the_gpu_recipe_asks_for_a_gpu_node():
    gpu = load_recipe("gpu-qwen2.5-1.5b")
    assert gpu.sampling.backend == "vllm" and gpu.training.launcher == "torchrun"
    assert gpu.training.nproc_per_node == 8 and gpu.training.parallelism == "fsdp"


def test_the_cli_reads_a_recipe_then_the_options_over_it():
    config = build_config(args("run", "--config", "smollm2", "--set", "training.epochs=3",
                               "--beta", "0.25"))
    expected = load_recipe("smollm2")
    assert config == expected.model_copy(update={
        "training": expected.training.model_copy(update={"epochs": 3}),
        "weighting": expected.weighting.model_copy(update={"beta": 0.25})})
    assert build_config(args("run", "--config", str(RECIPES / "smollm2.json"))) == expected


def test_a_refresh_recipe_gives_the_rounds_and_the_schedule():
    round_config, recipe = build_refresh_recipe(args("serve", "--config", "refresh-nightly"))
    assert round_config.pipeline == "nightly"
    assert recipe.refresh.round.pipeline == "nightly-refresh"
    assert recipe.schedule.cron == "0 3 * * *" and recipe.schedule.active is False
    _, overridden = build_refresh_recipe(args("serve", "--config", "refresh-nightly",
                                              "--refresh-cron", "30 1 * * *", "--refresh-active"))
    assert overridden.schedule.cron == "30 1 * * *" and overridden.schedule.active is True
    refresh = build_refresh_config(args("refresh", "--config", "refresh-nightly", "--add-rounds", "3"))
    assert refresh.add_rounds == 3 and refresh.round.task.train_prompts == 250


def test_bolt_run_refuses_a_refresh_recipe_and_names_the_commands():
    with pytest.raises(BoltInputError, match="refresh recipe: run it with `bolt refresh --config"):
        build_config(args("run", "--config", "refresh-nightly"))


def test_an_unknown_recipe_lists_the_shipped_ones():
    with pytest.raises(BoltInputError, match="no shipped recipe of that name.*smollm2-lora"):
        build_config(args("run", "--config", "smollm3"))


def test_the_served_refresh_deployment_takes_the_recipe():
    from deployments.serve import build_deployments

    round_config, recipe = build_refresh_recipe(args("serve", "--config", "refresh-nightly"))
    deployments = build_deployments("runs", round_config, recipe.refresh, recipe.schedule,
                                    keep_schedule_state=False)
    by_name = {d.name: d for d in deployments}
    assert by_name["bolt-round"].parameters["config"]["pipeline"] == "nightly"
    refresh = by_name["bolt-refresh"]
    assert refresh.parameters["config"]["round"]["pipeline"] == "nightly-refresh"
    [schedule] = refresh.schedules
    assert schedule.schedule.cron == "0 3 * * *" and schedule.active is False
