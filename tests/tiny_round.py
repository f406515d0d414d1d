"""A round small enough for an end-to-end test: seconds of compute on the built-in task."""

TINY_ROUND = {
    "task": {"train_prompts": 48, "heldout_prompts": 32},
    "reference": {"steps": 120, "batch_size": 64},
    "sampling": {"samples_per_prompt": 4},
    "training": {"epochs": 1, "batch_size": 32},
    "evaluation": {"samples_per_prompt": 8},
    "weighting": {"train_without_information": True},  # a tiny policy is often never right
}
