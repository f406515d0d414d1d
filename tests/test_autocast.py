"""training.autocast: bf16 where it is asked for and the hardware computes it, float32 elsewhere;
under bf16 the loss stays near the float32 one, the weights stay float32, and a prompt computed
once still gives the unshared loss (within bf16 rounding)."""

import pytest
import torch

import bolt_tasks.policy.training as training
from bolt_tasks.policy.shared_prefix import group_by_prompt
from bolt_tasks.policy.training import autocasts, weighted_group_nll, weighted_nll
from test_shared_prefix import PAD, random_groups, random_llama

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.mark.parametrize("native", [True, False])
def test_which_devices_autocast(monkeypatch, native):
    monkeypatch.setattr(training, "cpu_computes_bf16", lambda: native)
    assert autocasts(CUDA, "cuda") and autocasts(CUDA, "native") and not autocasts(CUDA, "never")
    assert not autocasts(CPU, "cuda") and not autocasts(CPU, "never")
    assert autocasts(CPU, "native") == native


def test_cpuinfo_flags_decide(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    real_path = training.Path
    monkeypatch.setattr(training, "Path", lambda name: cpuinfo if name == "/proc/cpuinfo" else real_path(name))
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert not training.cpu_computes_bf16()
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert training.cpu_computes_bf16()
    cpuinfo.unlink()
    assert not training.cpu_computes_bf16()


def test_a_bf16_loss_is_near_the_float32_one_and_the_weights_stay_float32(monkeypatch):
    monkeypatch.setattr(training, "cpu_computes_bf16", lambda: True)
    model = random_llama(hidden=128)
    prompts, responses = random_groups(3)
    weights = torch.linspace(0.1, 2.0, len(prompts))
    exact = weighted_nll(model, prompts, responses, weights, PAD, autocast="never")
    bf16 = weighted_nll(model, prompts, responses, weights, PAD, autocast="native")
    groups = group_by_prompt(prompts, responses)
    shared = weighted_group_nll(model, groups, [weights[i].item() for g in groups for i in g.indices],
                                PAD, len(prompts), autocast="native")
    assert bf16.dtype == torch.float32 and bf16.item() != exact.item()  # it did run in bf16
    assert bf16.item() == pytest.approx(exact.item(), rel=2e-2)
    assert shared.item() == pytest.approx(bf16.item(), rel=2e-2)
    shared.backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("share", [True, False])
def test_fit_runs_in_the_precision_it_is_configured_for(monkeypatch, share):
    from bolt_tasks.core.config import TrainingConfig

    monkeypatch.setattr(training, "cpu_computes_bf16", lambda: True)
    prompts, responses = random_groups(4)
    examples = [(p, r, 1.0) for p, r in zip(prompts, responses)]
    losses = {}
    for setting in ("never", "native"):
        config = TrainingConfig(epochs=1, batch_size=len(examples), warmup_steps=0, autocast=setting,
                                share_prompt_prefix=share)
        losses[setting] = training.fit(random_llama(hidden=128), PAD, examples, config)["loss"][0]
    assert losses["native"] != losses["never"]
    assert losses["native"] == pytest.approx(losses["never"], rel=2e-2)
