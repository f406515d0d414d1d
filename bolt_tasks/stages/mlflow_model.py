"""A policy as an MLflow model: a logged model of its round's run (MLflow 3), registered as a
version of the pipeline's model, which is what `mlflow.pyfunc.load_model("models:/bolt-<pipeline>@newest")`
and `mlflow.transformers.load_model` load."""

from __future__ import annotations


def log_policy_model(client, tracking_uri: str, run_id: str, policy_dir: str, max_new_tokens: int) -> str:
    """The policy as the run's logged model `policy`: transformers flavor, task text-generation, a
    string-in string-out signature and the tokenizer, so that mlflow.pyfunc.load_model and
    mlflow.transformers.load_model give a generator; its URI (models:/<model id>). Requirements
    are pinned from what runs here rather than inferred (the inference imports every optional
    torch package)."""
    import gc
    import logging

    import mlflow.transformers
    import torch
    import transformers
    from mlflow.models import Model, infer_signature
    # The flavors log into "the active run" of the fluent API; Model.log takes the run explicitly
    # and this context the store, so no process-wide MLflow state is left behind.
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from bolt_tasks.policy.modeling import load_policy

    model, tokenizer = load_policy(policy_dir, torch.device("cpu"))
    quiet = logging.getLogger("mlflow.transformers")
    level = quiet.level
    # Its warnings are about hub model cards and licences, which a local policy has none of.
    quiet.setLevel(logging.ERROR)
    # Made here in the run's experiment: left to Model.log, it would go to the fluent API's
    # current experiment (the store's deleted "Default").
    logged = client.create_logged_model(client.get_run(run_id).info.experiment_id, name="policy",
                                        source_run_id=run_id)
    try:
        with _use_tracking_uri(tracking_uri):
            info = Model.log(
                artifact_path=None, name="policy", flavor=mlflow.transformers, run_id=run_id,
                model_id=logged.model_id,
                transformers_model={"model": model, "tokenizer": tokenizer}, task="text-generation",
                signature=infer_signature(["prompt"], ["prompt and response"]),
                model_config={"max_new_tokens": max_new_tokens},
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}",
                                  f"transformers=={transformers.__version__}"],
            )
    finally:
        quiet.setLevel(level)
    # Model.log leaves the model in reference cycles (21 modules measured here): without a
    # collection they outlive the stage, and the flow process holds a model (core/memory.py).
    del model, tokenizer
    gc.collect()
    return info.model_uri
