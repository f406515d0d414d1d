"""A round with nothing to learn says so and stops, after scoring and before training.

A prompt whose weights are all equal (every reward alike, sampled from pi_ref) only refits the
sampler on its own samples. When no training prompt has unequal weights, or fewer than
weighting.min_informative_share of them, training would spend its compute to move nowhere
useful; the round stops with one sentence instead: what share was informative and rewarded,
the coverage, and what to try. weighting.train_without_information trains anyway.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.core.errors import NothingToLearn
from bolt_tasks.stages.weights import summarize_prompt_stats


def nothing_to_learn(summary: dict, weighting: WeightingConfig) -> str | None:
    """The sentence a round with nothing to learn stops with, or None when it has something
    (or the scheme ignores rewards, or the user asked to train anyway)."""
    if weighting.train_without_information or weighting.scheme == "sft":
        return None
    share = summary["informative_share"] or 0.0
    if share > 0 and share >= weighting.min_informative_share:
        return None
    floor = (f" (below weighting.min_informative_share={weighting.min_informative_share:g})"
             if share > 0 else "")
    return (
        f"nothing to learn: {share:.1%} of the {summary['train_prompts']} training prompts have "
        f"unequal rewards{floor}, {summary['rewarded_share'] or 0:.1%} of the responses are "
        f"rewarded and the coverage is {summary['coverage'] or 0:.3f}, so the round stops before "
        "training (its samples and rewards are kept); try more new tokens "
        "(sampling.max_new_tokens), a system prompt that asks for the answer format "
        "(task.system_prompt), a stronger reference model (reference.model), or the lenient "
        "verifier (task.verifier=math_lenient) if an answer stated anywhere should count; "
        "weighting.train_without_information=true trains anyway"
    )


def nothing_kept(summary: dict, weights: pa.Table | str, weighting: WeightingConfig) -> str | None:
    """The sentence a round stops with when zero-information subsampling dropped every training
    prompt (possible when every prompt is flat and the user trains anyway), or None."""
    kept = (weights if isinstance(weights, pa.Table) else pq.read_table(weights, columns=["kept"]))["kept"]
    if pc.any(kept).as_py():
        return None
    return (
        f"nothing to train on: every one of the {summary['train_prompts']} training prompts has "
        "equal weights and "
        f"weighting.zero_information_keep={weighting.zero_information_keep:g} dropped them all, so "
        "the round stops before training; weighting.zero_information_keep=1 trains on every prompt"
    )


def require_information(prompt_stats: pa.Table | str, weighting: WeightingConfig,
                        weights: pa.Table | str | None = None) -> None:
    """Raise NothingToLearn with its sentence when the round has nothing to learn, or (given
    the weights) nothing kept to train on."""
    summary = summarize_prompt_stats(prompt_stats)
    sentence = nothing_to_learn(summary, weighting)
    if sentence is None and weights is not None:
        sentence = nothing_kept(summary, weights, weighting)
    if sentence is not None:
        raise NothingToLearn(sentence)
