"""Baselines as config switches: same budget, and each one's parallel and recurrent paths agree."""

import pytest
import torch

from worldsim import WorldModel
from worldsim.baselines import BASELINES, BUDGET_TOLERANCE, baseline_config, parameter_count

from conftest import random_episode, randomized, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", BASELINES)
def test_same_parameter_budget(name):
    base = tiny_config()
    assert abs(parameter_count(baseline_config(name, base)) / parameter_count(base) - 1) <= BUDGET_TOLERANCE


def test_what_each_baseline_switches():
    base = tiny_config()
    assert baseline_config("ours", base) == base
    assert baseline_config("mamba2", base).block_sizes == [base.frame_shape] * base.n_layers
    local = baseline_config("local", base)
    assert not local.ssm and local.d_model > base.d_model
    state = WorldModel(local).initial_state(2)
    assert all(layer.ssm.numel() == 0 and layer.conv.numel() == 0 for layer in state.layers)
    with pytest.raises(ValueError, match="unknown baseline 'transformer'"):
        baseline_config("transformer", base)


@pytest.mark.parametrize("name", BASELINES)
def test_parallel_and_recurrent_agree(name):
    torch.manual_seed(0)
    model = randomized(WorldModel(baseline_config(name, tiny_config())))
    frames, actions = random_episode(model.config, 2, 12, seed=2)      # 4x the attention window
    with torch.no_grad():
        parallel = model(frames, actions)
        state = model.initial_state(2)
        for t in range(frames.shape[1]):
            out, state = model.step(state, frames[:, t], actions[:, t])
            torch.testing.assert_close(out.frame_logits, parallel.frame_logits[:, t], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out.reward, parallel.reward[:, t], atol=1e-4, rtol=1e-4)
