"""Training against the model's own errors: corrupted and self-forced input frames, and a model told
the corruption level of its inputs."""

import pytest
import torch

from conftest import random_episode, randomized, tiny_config, tiny_minigrid_model
from train.config import TrainConfig, TrainError
from train.own_errors import corrupt_frames, self_forced_frames, self_forcing_probability
from train.windows import Window
from worldsim import WorldModel

torch.set_num_threads(1)


def legal_mask(h=5, w=6, v=23, seed=0):
    gen = torch.Generator().manual_seed(seed)
    legal = torch.rand(h, w, v, generator=gen) < 0.3
    legal[..., 0] = True                                  # every cell allows at least one token
    return legal


def test_corruption_replaces_about_its_level_of_cells_with_legal_tokens():
    torch.manual_seed(0)
    legal = legal_mask()
    frames = torch.zeros(64, 8, 5, 6, dtype=torch.long)           # token 0 everywhere (legal)
    corrupted, level = corrupt_frames(frames, 0.5, legal)
    assert level.shape == (64, 8) and float(level.min()) >= 0 and float(level.max()) <= 0.5
    h_idx, w_idx = torch.meshgrid(torch.arange(5), torch.arange(6), indexing="ij")
    assert legal[h_idx, w_idx, corrupted].all()                   # every token legal in its cell
    changed = (corrupted != frames).float().mean(dim=(2, 3))
    # A replacement may draw the true token back, so the changed fraction is a bit under the level.
    expected = level * (1 - 1 / legal.sum(-1).float().mean())
    assert abs(float(changed.mean() - expected.mean())) < 0.02
    assert float(torch.corrcoef(torch.stack([changed.flatten(), level.flatten()]))[0, 1]) > 0.7   # per frame, with 30 cells of binomial noise
    unchanged, zero = corrupt_frames(frames, 0.0, legal)
    assert torch.equal(unchanged, frames) and not zero.any()


def window_of(frames, actions, resets):
    b, length = actions.shape
    has_target = torch.ones(b, length, dtype=torch.bool)
    has_target[:, :-1] &= ~resets[:, 1:]                          # the next frame starts another episode
    return Window(frames=frames, actions=actions, targets=frames, target_gap=torch.zeros_like(frames),
                  rewards=torch.zeros(b, length), terminated=torch.zeros(b, length, dtype=torch.bool),
                  has_target=has_target, resets=resets, starts=None)


def test_self_forcing_swaps_in_the_models_samples_but_never_an_episodes_first_frame():
    torch.manual_seed(0)
    config = tiny_config()
    model = randomized(WorldModel(config), scale=0.5).train()
    frames, actions = random_episode(config, 3, 12, seed=1)
    resets = torch.zeros(3, 12, dtype=torch.bool)
    resets[1, 5] = True
    win = window_of(frames, actions, resets)
    legal = torch.ones(*config.frame_shape, config.vocab_size, dtype=torch.bool)
    forced = self_forced_frames(model, win, 1.0, legal, _no_autocast)
    assert torch.equal(forced[:, 0], frames[:, 0])                # nothing predicts a window's first frame
    assert torch.equal(forced[1, 5], frames[1, 5])                # nor an episode's
    assert not torch.equal(forced[:, 1:], frames[:, 1:])          # a random model's samples differ
    kept = self_forced_frames(model, win, 0.0, legal, _no_autocast)
    assert torch.equal(kept, frames)
    assert model.training                                         # the no-grad pass leaves the mode alone
    # At temperature 0 (a world view's dream decodes by argmax) the swapped-in frames are the argmax.
    argmax = self_forced_frames(model, win, 1.0, legal, _no_autocast, temperature=0.0)
    with torch.no_grad():
        best = model.eval()(frames, actions, resets=resets).frame_logits.argmax(-1)
    model.train()
    assert torch.equal(argmax[0, 1:], best[0, :-1])


def test_self_forcing_decodes_as_the_dream_of_the_models_frames():
    import gymnasium as gym

    from envs.minigrid.world_view import MiniGridWorldCodec
    from train.evaluation import dream_temperature
    env = gym.make("MiniGrid-DoorKey-5x5-v0")
    assert dream_temperature(tiny_minigrid_model("MiniGrid-DoorKey-5x5-v0",
                                                 codec=MiniGridWorldCodec.for_env(env))) == 0.0
    assert dream_temperature(tiny_minigrid_model()) == 1.0                    # the agent's view
    assert dream_temperature(WorldModel(tiny_config())) == 1.0                # no codec


def _no_autocast():
    return torch.autocast("cpu", enabled=False)


def test_self_forcing_ramps_up_linearly():
    assert self_forcing_probability(0, 0.4, 100) == 0
    assert self_forcing_probability(50, 0.4, 100) == pytest.approx(0.2)
    assert self_forcing_probability(500, 0.4, 100) == pytest.approx(0.4)
    assert self_forcing_probability(0, 0.4, 0) == pytest.approx(0.4)


def test_a_noise_conditioned_model_reads_the_level_and_steps_at_level_zero():
    torch.manual_seed(0)
    config = tiny_config(noise_conditioning=True)
    model = randomized(WorldModel(config), scale=0.5).eval()
    frames, actions = random_episode(config, 2, 9, seed=3)
    with torch.no_grad():
        clean = model(frames, actions)
        zero = model(frames, actions, noise_level=torch.zeros(2, 9))
        noisy = model(frames, actions, noise_level=torch.full((2, 9), 0.3))
        state = model.initial_state(2)
        stepped = torch.stack([model.step(state, frames[:, t], actions[:, t])[0].frame_logits for t in range(9)], 1)
    torch.testing.assert_close(zero.frame_logits, clean.frame_logits)
    assert not torch.allclose(noisy.frame_logits, clean.frame_logits, atol=1e-4)
    # step == forward at level 0 (relative error: the large random weights amplify float rounding)
    assert float((stepped - clean.frame_logits).norm() / clean.frame_logits.norm()) < 1e-4
    plain = WorldModel(tiny_config())
    with pytest.raises(ValueError, match="noise_conditioning"):
        plain(frames, actions, noise_level=torch.zeros(2, 9))
    with pytest.raises(ValueError, match="noise_level must have shape"):
        model(frames, actions, noise_level=torch.zeros(2, 8))


def test_attention_frame_dropout_hides_earlier_frames_in_training_only():
    torch.manual_seed(0)
    config = tiny_config()
    model = randomized(WorldModel(config), scale=0.5).eval()
    frames, actions = random_episode(config, 2, 9, seed=3)
    with torch.no_grad():
        clean = model(frames, actions).frame_logits
        model.attention_frame_dropout = 0.5
        assert all(layer.attn.frame_dropout == 0.5 for layer in model.layers)
        torch.testing.assert_close(model(frames, actions).frame_logits, clean, rtol=0, atol=0)   # not in eval
        dropped = model.train()(frames, actions).frame_logits
    # An episode's first frame has no earlier frame to hide; every later one loses some of its window.
    torch.testing.assert_close(dropped[:, 0], clean[:, 0])
    assert not torch.allclose(dropped[:, 1:], clean[:, 1:], atol=1e-3)
    # Each earlier key frame is hidden with the switch's probability, the query's own frame never.
    attn = model.layers[0].attn
    kept = attn._hide_earlier_frames(torch.ones(256, 16, 4, dtype=torch.bool))
    assert kept[..., -1].all()
    assert abs(float(kept[..., :-1].float().mean()) - 0.5) < 0.02


@pytest.mark.parametrize("field,value", [("input_noise", 1.5), ("input_noise", -0.1), ("self_forcing", 2.0),
                                         ("self_forcing_ramp", -3), ("attention_frame_dropout", 1.0),
                                         ("attention_frame_dropout", -0.2)])
def test_bad_switch_values_are_refused_by_name(field, value):
    with pytest.raises(TrainError, match=field):
        TrainConfig(**{field: value})
