"""Baselines as config switches: same budget, and each one's parallel and recurrent paths agree."""

import pytest
import torch

from worldsim import WorldModel
from worldsim.baselines import BASELINES, BUDGET_TOLERANCE, baseline_config, parameter_count

from conftest import random_episode, randomized, tiny_config



def config_of(name, base, context=80):
    return baseline_config(name, base, context=context if name == "causal" else None)


@pytest.mark.parametrize("name", BASELINES)
def test_same_parameter_budget(name):
    base = tiny_config()
    assert abs(parameter_count(config_of(name, base)) / parameter_count(base) - 1) <= BUDGET_TOLERANCE


def test_what_each_baseline_switches():
    base = tiny_config()
    assert baseline_config("ours", base) == base
    assert baseline_config("mamba2", base).block_sizes == [base.frame_shape] * base.n_layers
    local = baseline_config("local", base)
    assert not local.ssm and local.d_model > base.d_model
    state = WorldModel(local).initial_state(2)
    assert all(layer.ssm.numel() == 0 and layer.conv.numel() == 0 for layer in state.layers)
    causal = baseline_config("causal", base, context=500)
    assert not causal.ssm and causal.attn_window == 500 and causal.d_model == local.d_model
    with pytest.raises(ValueError, match="unknown baseline 'transformer'"):
        baseline_config("transformer", base)
    with pytest.raises(ValueError, match="needs context=C"):
        baseline_config("causal", base)
    with pytest.raises(ValueError, match="positive number of frames"):
        baseline_config("causal", base, context=0)


@pytest.mark.parametrize("name, context", [(n, None) for n in BASELINES if n != "causal"]
                         + [("causal", 5), ("causal", 80)])
def test_parallel_and_recurrent_agree(name, context):
    # causal 5: a full ring wraps within the episode; causal 80: a long cache, attended as it fills.
    torch.manual_seed(0)
    model = randomized(WorldModel(baseline_config(name, tiny_config(), context=context)))
    frames, actions = random_episode(model.config, 2, 12, seed=2)      # 4x the model's attention window
    with torch.no_grad():
        parallel = model(frames, actions)
        state = model.initial_state(2)
        for t in range(frames.shape[1]):
            out, state = model.step(state, frames[:, t], actions[:, t])
            torch.testing.assert_close(out.frame_logits, parallel.frame_logits[:, t], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out.reward, parallel.reward[:, t], atol=1e-4, rtol=1e-4)


def test_causal_cache_is_attended_only_where_filled():
    """A long causal ring costs what the frames so far need: attending a 400-frame ring at frame 3
    reads 4 slots (the answer is the same as reading all of them, masked)."""
    torch.manual_seed(0)
    model = randomized(WorldModel(baseline_config("causal", tiny_config(), context=400)))
    frames, actions = random_episode(model.config, 1, 4, seed=3)
    attn = model.layers[0].attn
    seen = []
    original = attn._attend
    attn._attend = lambda q, k, v, valid: seen.append(k.shape[2]) or original(q, k, v, valid)   # [B, 1, slots, ...]
    state = model.initial_state(1)
    with torch.no_grad():
        for t in range(4):
            model.step(state, frames[:, t], actions[:, t])
    assert seen == [1, 2, 3, 4]


def test_widened_baselines_keep_head_sizes_fused_attention_takes():
    from worldsim.config import WorldModelConfig

    base = WorldModelConfig(vocab_size=138, frame_shape=(7, 7), num_actions=7)     # the MiniGrid default
    for config in (baseline_config("local", base), baseline_config("causal", base, context=256)):
        assert config.d_model > base.d_model and (config.d_model // config.n_heads) % 8 == 0
