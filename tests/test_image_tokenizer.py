"""The learned frame tokenizer (FSQ over patches): token ids and levels are one bijection, a tiny
tokenizer learns synthetic tiled frames it can give back exactly on frames it never saw, its files
round-trip and refuse damage, reconstruction metrics mean what they say, and bad input is named."""

import json

import numpy as np
import pytest
import torch

from envs.images import quality
from envs.images.sources import image_env, random_frames
from envs.images.tokenizer import CONFIG_NAME, WEIGHTS_NAME, FrameTokenizer, TokenizerConfig
from train.cli import main
from train.tokenizer import TokenizerTraining, reconstruction, train_tokenizer
from worldsim.checkpoint import CheckpointError

PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [128, 128, 128]], np.uint8)


def tiled_frames(n: int, seed: int) -> np.ndarray:
    """16 x 16 RGB frames of 4 x 4 tiles, each tile one of 6 colours with a white 2 x 2 dot in one of two
    corners or none: 18 tile kinds, as a grid world draws its cells."""
    rng = np.random.default_rng(seed)
    frames = PALETTE[rng.integers(0, 6, (n, 4, 4))].repeat(4, 1).repeat(4, 2)
    dots = rng.integers(0, 3, (n, 4, 4))
    for kind, corner in ((1, 0), (2, 2)):
        tiles = frames.reshape(n, 4, 4, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5)      # [n, ty, tx, y, x, c]
        tiles[..., corner:corner + 2, corner:corner + 2, :][dots == kind] = 255
        frames = tiles.transpose(0, 1, 3, 2, 4, 5).reshape(n, 16, 16, 3)
    return np.ascontiguousarray(frames)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    config = TokenizerConfig(image_shape=(16, 16, 3), patch=4, levels=(5, 5, 5), width=32, blocks=0)
    tokenizer, history = train_tokenizer(tiled_frames(2000, 0), config,
                                         TokenizerTraining(steps=1500, batch_size=32, lr=1e-2, log_every=500),
                                         progress=False)
    return tokenizer, history


def test_token_ids_and_levels_are_one_bijection():
    tokenizer = FrameTokenizer(TokenizerConfig(image_shape=(8, 8, 3), patch=4, levels=(3, 4, 2)))
    ids = torch.arange(24).reshape(1, 4, 6)
    levels = tokenizer.levels_from_tokens(ids)
    assert levels.shape == (1, 3, 4, 6)
    assert all(int(levels[:, d].max()) == n - 1 and int(levels[:, d].min()) == 0 for d, n in enumerate((3, 4, 2)))
    assert torch.equal(tokenizer.tokens_from_levels(levels), ids)


def test_a_tiny_tokenizer_gives_back_unseen_tiled_frames(trained):
    tokenizer, history = trained
    assert history[-1]["loss"] < history[0]["loss"]
    heldout = tiled_frames(200, seed=1)
    report = reconstruction(tokenizer, heldout)
    assert report["exact_frame_rate"] >= 0.95, report
    assert report["psnr_mean"] >= 60 and report["ssim_mean"] >= 0.999, report
    assert report["tokens_used"] <= report["vocab_size"] == 125
    # Encoding what it decodes gives the same tokens: the dream's frames mean what they say.
    tokens = tokenizer.encode(torch.as_tensor(heldout))
    again = tokenizer.encode(tokenizer.decode(tokens))
    assert (again == tokens).flatten(1).all(1).float().mean() >= 0.95


def test_the_patch_table_is_what_makes_tiles_exact(trained):
    tokenizer, _ = trained
    heldout = tiled_frames(200, seed=1)
    assert reconstruction(tokenizer, heldout)["patches_from_table"] > 0.99
    known = tokenizer.table_known.clone()
    try:
        tokenizer.table_known.zero_()
        without = reconstruction(tokenizer, heldout)
    finally:
        tokenizer.table_known.copy_(known)
    assert without["patches_from_table"] == 0.0
    assert without["exact_frame_rate"] < reconstruction(tokenizer, heldout)["exact_frame_rate"]


def test_a_token_gets_the_table_entry_of_the_patch_it_almost_always_stood_for():
    config = TokenizerConfig(image_shape=(8, 8, 1), patch=4, levels=(2, 2), width=4, blocks=0)
    tokenizer = FrameTokenizer(config).eval()
    with torch.no_grad():                    # an encoder blind to its input: one token for every patch
        for p in tokenizer.encoder.parameters():
            p.zero_()
    frames = torch.zeros(2, 8, 8, 1, dtype=torch.uint8)
    frames[1] = 200
    assert tokenizer.fit_patch_table(frames[:1]) == 1           # one patch kind: exact
    assert torch.equal(tokenizer.decode(tokenizer.encode(frames[:1])), frames[:1])
    assert tokenizer.fit_patch_table(frames) == 0               # two kinds, half each: no entry
    mostly_dark = torch.cat([frames[:1].repeat(19, 1, 1, 1), frames[1:]])
    assert tokenizer.fit_patch_table(mostly_dark) == 1          # 95% one kind: that kind
    assert torch.equal(tokenizer.decode(tokenizer.encode(frames[:1])), frames[:1])
    assert tokenizer.fit_patch_table(mostly_dark, purity=0.99) == 0


def test_save_and_load_round_trip_and_damage_is_refused(trained, tmp_path):
    tokenizer, _ = trained
    tokenizer.save(tmp_path / "tok")
    loaded = FrameTokenizer.load(tmp_path / "tok")
    frames = torch.as_tensor(tiled_frames(8, seed=3))
    assert torch.equal(loaded.encode(frames), tokenizer.encode(frames))
    assert torch.equal(loaded.decode(loaded.encode(frames)), tokenizer.decode(tokenizer.encode(frames)))
    weights = tmp_path / "tok" / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        FrameTokenizer.load(tmp_path / "tok")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / CONFIG_NAME).write_text(json.dumps({"format": "something-else", "format_version": 1}))
    with pytest.raises(CheckpointError, match="not a worldsim tokenizer config"):
        FrameTokenizer.load(tmp_path / "other")


def test_quality_metrics():
    a = torch.as_tensor(tiled_frames(3, seed=4))
    b = a.clone()
    b[1, 0, 0, 0] ^= 1                                   # one pixel off by one level
    b[2] = 255 - b[2]
    assert quality.exact(a, b).tolist() == [1.0, 0.0, 0.0]
    p = quality.psnr(a, b)
    assert p[0] == 100.0 and 60 < p[1] < 100 and p[2] < 10
    s = quality.ssim(a, b)
    assert s[0] == pytest.approx(1.0) and s[1] > 0.99 and s[2] < 0.5
    with pytest.raises(ValueError, match="same shape"):
        quality.psnr(a, b[:2])
    with pytest.raises(ValueError, match="11 x 11"):
        quality.ssim(a[:, :8, :8], b[:, :8, :8])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="patch"):
        TokenizerConfig(image_shape=(56, 56, 3), patch=5)
    with pytest.raises(ValueError, match="levels"):
        TokenizerConfig(image_shape=(56, 56, 3), levels=(1, 5))
    with pytest.raises(ValueError, match="vocabulary of 65536"):
        TokenizerConfig(image_shape=(56, 56, 3), levels=(16, 16, 16, 16))
    with pytest.raises(ValueError, match="image_shape"):
        TokenizerConfig.from_dict({"patch": 8})
    tokenizer = FrameTokenizer(TokenizerConfig(image_shape=(8, 8, 3), patch=4, levels=(3, 3)))
    with pytest.raises(ValueError, match=r"uint8 images \[\.\.\., 8, 8, 3\]"):
        tokenizer.encode(torch.zeros(1, 8, 8, 1, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 9\)"):
        tokenizer.decode(torch.full((1, 2, 2), 9))
    with pytest.raises(ValueError, match="frames of"):
        tokenizer.decode(torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="CartPole-v1.*image"):
        image_env("CartPole-v1")
    with pytest.raises(ValueError, match="NoSuchEnv-v0"):
        image_env("NoSuchEnv-v0")


def test_minigrid_is_read_through_its_rgb_view():
    frames = random_frames("MiniGrid-Empty-5x5-v0", 10, seed=0, num_envs=2)
    assert frames.shape == (10, 56, 56, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, random_frames("MiniGrid-Empty-5x5-v0", 10, seed=0, num_envs=2))


def test_the_command_trains_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "tok"
    args = ["tokenizer", "--env", "MiniGrid-Empty-5x5-v0", "--out", str(out), "--frames", "64", "--heldout-frames",
            "16", "--steps", "3", "--width", "8", "--blocks", "0", "--device", "cpu"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["heldout"]["frames"] == 16 and report["tokenizer"]["image_shape"] == [56, 56, 3]
    assert FrameTokenizer.load(out).config.frame_shape == (7, 7)
    assert main(args) == 1
    assert "already holds a tokenizer" in capsys.readouterr().err
    assert main([*args[:4], str(tmp_path / "bad"), *args[5:], "--patch", "5"]) == 1
    assert "patch must be a positive int dividing" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_frames_of_a_collection_policy_show_what_random_play_does_not():
    from train.tokenizer import policy_frames

    expert = policy_frames("MiniGrid-DoorKey-5x5-v0", 200, seed=0, policy="expert")
    random = policy_frames("MiniGrid-DoorKey-5x5-v0", 200, seed=0)
    assert expert.shape == random.shape == (200, 56, 56, 3)
    # The goal tile (green, lightened where in sight) is seen by the expert, which walks to it, far more than by random play.
    def green(frames):
        return int(((frames[..., 1] > 200) & (frames[..., 0] < 100) & (frames[..., 2] < 100)).sum())
    assert green(expert) > 2 * green(random)
    assert np.array_equal(expert, policy_frames("MiniGrid-DoorKey-5x5-v0", 200, seed=0, policy="expert"))
    with pytest.raises(ValueError, match="needs uint8 image observations"):
        policy_frames("CartPole-v1", 10, policy="expert")
