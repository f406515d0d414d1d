"""How the new policy is fitted: the weighted maximum likelihood fit, its adapters, and the
processes it runs in (configuration)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bolt_tasks.core.config_task import _Frozen


class LoraConfig(_Frozen):
    """Low-rank adapters (peft) instead of full fine-tuning; the saved policy is the base model
    with the adapters merged in, an ordinary folder that vLLM and the next round load."""

    rank: int = Field(16, ge=1, description="Rank r of each adapter.")
    alpha: float = Field(32.0, gt=0, description="Scale numerator: the update is (alpha / r) B A.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapters' input.")
    target_modules: list[str] | None = Field(
        None, description="Module names to adapt, e.g. ['q_proj', 'v_proj']. Empty: peft's "
        "default for the architecture.",
    )


class TrainingConfig(_Frozen):
    """Weighted maximum likelihood fit of the new policy, starting from pi_ref."""

    epochs: int = Field(2, ge=1, description="Passes over the weighted rollouts.")
    batch_size: int = Field(64, ge=1, description="Rollouts per optimizer step.")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate after warm-up.")
    warmup_steps: int = Field(10, ge=0, description="Linear warm-up steps.")
    schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="Learning rate after warm-up: constant, or cosine decay to 0 by the last "
        "step (lands a long fit on its optimum instead of a noisy last iterate).",
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    seed: int = Field(0, description="Seed of the data order.")
    batch_order: Literal["prompt_groups", "rollouts"] = Field(
        "prompt_groups",
        description="prompt_groups: each epoch shuffles the prompts and takes each prompt's "
        "rollouts together, so a batch holds whole groups (a group may straddle two batches); "
        "rollouts: each epoch shuffles the rollouts one by one.",
    )
    share_prompt_prefix: bool = Field(
        True,
        description="Compute a prompt once for all of its rollouts in a batch (a packed row with a "
        "4D attention mask; the loss and gradients equal the unshared ones within float rounding). "
        "Models whose attention cannot take the mask (flash-attention, a narrow sliding window) "
        "train unshared.",
    )
    max_tokens_per_micro_batch: int | None = Field(
        None, ge=1,
        description="Memory bound: each optimizer step's batch_size rollouts are run in "
        "micro-batches of at most this many (padded) tokens and their gradients accumulated; the "
        "loss is always normalised by batch_size, so the fit does not depend on it. Empty: on a "
        "GPU, as many tokens as half the card's memory beside the training state holds the "
        "activations of (policy/micro_batch_budget.py); on a CPU, one micro-batch per step.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass (less memory, more time).",
    )
    autocast: Literal["cuda", "native", "never"] = Field(
        "cuda",
        description="bf16 autocast of the forward pass (log-softmax stays float32): cuda, on a "
        "CUDA GPU only; native, also on a CPU whose instructions compute bf16 (AVX512-BF16 or "
        "AMX; without them bf16 is slower than float32 on a CPU, hence not the default); never, "
        "float32 everywhere.",
    )
    checkpoint_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="dtype of the saved policy: float32 (reloads exactly), or bfloat16 "
        "(half the disk, the reload and the MLflow copy; the next round then samples from the "
        "bf16-rounded weights, which are then its policy).",
    )
    lora: LoraConfig | None = Field(
        None, description="Train low-rank adapters (merged into the saved policy). Empty: full "
        "fine-tuning.",
    )
    launcher: Literal["inline", "torchrun", "ray"] = Field(
        "inline",
        description="inline: train in the stage's own process. torchrun: nproc_per_node processes "
        "on this machine (torch.distributed.run). ray: `workers` Ray Train workers on the Ray "
        "cluster (execution.executor=ray), placed by Ray across its nodes. Each process fits its "
        "slice of every batch and the loss is normalised over the whole batch, so the fit does not "
        "depend on the process count.",
    )
    parallelism: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="torchrun and ray: ddp (every process holds the whole model and optimizer) or "
        "fsdp (FSDP2 fully_shard: parameters, gradients and optimizer state sharded over the "
        "processes; bf16 compute on CUDA).",
    )
    nproc_per_node: int = Field(1, ge=1, description="torchrun: processes on this machine (one per GPU).")
    workers: int = Field(
        1, ge=1,
        description="ray: training processes (Ray Train workers), one per GPU, or per CPU slot on a "
        "CPU cluster, on as many nodes as they need (execution.training_* sets what each asks for).",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_node_per_torchrun(cls, data):
        """torchrun launches on this machine only: a multi-node fit is Ray's (launcher=ray), which
        starts every rank itself. Saved configurations that state the old defaults still load."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        nodes, endpoint = data.pop("nnodes", 1), data.pop("rdzv_endpoint", None)
        if nodes != 1 or endpoint is not None:
            raise ValueError(
                "training.nnodes and training.rdzv_endpoint are gone: torchrun trains on this "
                "machine; to train across nodes set training.launcher=ray and training.workers "
                "(Ray Train starts every rank on the cluster, with nothing to run by hand)")
        return data

    @model_validator(mode="after")
    def _launch_is_complete(self):
        if self.nproc_per_node > 1 and self.launcher != "torchrun":
            raise ValueError("training.nproc_per_node needs training.launcher=torchrun")
        if self.workers > 1 and self.launcher != "ray":
            raise ValueError("training.workers needs training.launcher=ray")
        processes = self.processes
        if self.batch_size < processes:
            raise ValueError(
                f"training.batch_size {self.batch_size} is below the {processes} training processes "
                f"(training.nproc_per_node or training.workers): {processes - self.batch_size} of "
                "them would fit only zero-weight filler; raise batch_size to at least the process count")
        if self.parallelism == "fsdp" and self.lora is not None:
            raise ValueError("training.lora is trained with parallelism=ddp (adapters are small); "
                             "fsdp shards full fine-tuning")
        return self

    @property
    def processes(self) -> int:
        """Training processes: nproc_per_node under torchrun, workers on Ray, else 1."""
        return {"torchrun": self.nproc_per_node, "ray": self.workers}.get(self.launcher, 1)
