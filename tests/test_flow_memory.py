"""After every stage of a round, the flow process holds no model (core/memory.py). A model an
earlier test in the same process still holds (MLflow keeps what it loaded) is not the round's:
the checks count the models beyond those held before."""

from collections import Counter

import pytest
import torch

from bolt_tasks.core import caching
from bolt_tasks.core.memory import live_models, release_accelerator_memory
from tiny_round import TINY_ROUND


def test_live_models_sees_a_model_held_and_not_one_dropped():
    before = live_models().count("Linear")
    held = torch.nn.Linear(3, 2)
    assert live_models().count("Linear") == before + 1
    del held
    assert live_models().count("Linear") == before
    release_accelerator_memory()  # on a CPU: nothing to hand back, and no collection


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_no_stage_leaves_a_model_in_the_flow_process(tmp_path, monkeypatch):
    from bolt_tasks.core.config import validate_round_config
    from flows.round import bolt_round

    held_after: dict[str, list[str]] = {}
    real_after_stage = caching.after_stage
    held_before = Counter(live_models())

    def recording(name):
        real_after_stage(name)
        held_after.setdefault(name, []).extend((Counter(live_models()) - held_before).elements())

    monkeypatch.setattr(caching, "after_stage", recording)
    bolt_round(config=validate_round_config(TINY_ROUND | {"pipeline": "memory"}), runs_dir=str(tmp_path))
    assert {"bootstrap-reference", "sample-rollouts", "weighted-sft", "evaluate-policy",
            "logprobs-of-samples"} <= set(held_after), sorted(held_after)
    assert all(not models for models in held_after.values()), held_after
