"""A policy as an MLflow model: what `mlflow.pyfunc.load_model("models:/bolt-<pipeline>@newest")`
and `mlflow.transformers.load_model` load."""

from __future__ import annotations


def log_policy_model(client, run_id: str, policy_dir: str, max_new_tokens: int) -> None:
    """The policy as the run's `policy` model: transformers flavor, task text-generation, a
    string-in string-out signature and the tokenizer, so that mlflow.pyfunc.load_model and
    mlflow.transformers.load_model give a generator. Requirements are pinned from what runs
    here rather than inferred (the inference imports every optional torch package)."""
    import logging
    import tempfile

    import mlflow.transformers
    import torch
    import transformers
    from mlflow.models import infer_signature

    from bolt_tasks.policy.modeling import load_policy

    model, tokenizer = load_policy(policy_dir, torch.device("cpu"))
    quiet = logging.getLogger("mlflow.transformers")
    level = quiet.level
    # Its warnings are about hub model cards and licences, which a local policy has none of.
    quiet.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            mlflow.transformers.save_model(
                transformers_model={"model": model, "tokenizer": tokenizer},
                path=f"{scratch}/policy", task="text-generation",
                signature=infer_signature(["prompt"], ["prompt and response"]),
                model_config={"max_new_tokens": max_new_tokens},
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}",
                                  f"transformers=={transformers.__version__}"],
            )
            client.log_artifacts(run_id, f"{scratch}/policy", "policy")
    finally:
        quiet.setLevel(level)
