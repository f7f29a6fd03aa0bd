"""`worldsim play`: headless runs through the parser, GIF recording, action parsing, errors, and the
interactive loop driven by injected key events on SDL's dummy video driver."""

import argparse
import os

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_minigrid_model
from train.play import (CAPTION_HEIGHT, GAP, LABEL_HEIGHT, PlaySession, add_play_parser, parse_actions,
                        run_headless, run_interactive)

TILE = 8


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("play") / "ckpt"
    tiny_minigrid_model(done_bias=-20).save_pretrained(path)      # never terminates: frame counts are exact
    return str(path)




def play(*argv) -> int:
    parser = argparse.ArgumentParser()
    add_play_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["play", "--device", "cpu", "--tile-size", str(TILE), *map(str, argv)])
    return args.run(args)


def gif_info(path):
    with Image.open(path) as im:
        return im.n_frames, im.size


@pytest.mark.parametrize("real", [False, True])
def test_headless_names_record_gif(checkpoint, tmp_path, capsys, real):
    out = tmp_path / "ep.gif"
    rc = play("--checkpoint", checkpoint, "--actions", "forward,left,right,toggle,2", "--record", out,
              *(["--real"] if real else []))
    assert rc == 0
    n, (w, h) = gif_info(out)
    side = 7 * TILE
    assert n == 6                                          # the reset frame + 5 steps
    assert w == (2 * side + GAP if real else side)
    assert h == LABEL_HEIGHT + side + CAPTION_HEIGHT
    text = capsys.readouterr().out
    assert "5 steps" in text and "dreamed reward" in text
    assert ("real reward" in text and "agreement" in text) == real
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".play-")]   # no temp file left


def test_headless_random_is_seeded(checkpoint, tmp_path, capsys):
    for name in ("a.gif", "b.gif"):
        assert play("--checkpoint", checkpoint, "--actions", "random:7", "--seed", 3, "--real",
                    "--record", tmp_path / name, "--quiet") == 0
    assert gif_info(tmp_path / "a.gif")[0] == 8
    with Image.open(tmp_path / "a.gif") as a, Image.open(tmp_path / "b.gif") as b:
        for i in range(8):
            a.seek(i), b.seek(i)
            assert np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("7 steps")     # --quiet: the summary only


def test_steps_truncates(checkpoint, tmp_path, capsys):
    out = tmp_path / "t.gif"
    assert play("--checkpoint", checkpoint, "--actions", "random:9", "--steps", 4, "--record", out) == 0
    assert gif_info(out)[0] == 5
    text = capsys.readouterr().out
    assert "truncated" in text and "5 actions unused" in text


def ink_columns(strip: np.ndarray) -> np.ndarray:
    """Columns of an RGB strip holding dark (text) pixels."""
    return np.flatnonzero((strip.max(axis=-1) < 128).any(axis=0))


@pytest.mark.parametrize("tile", [TILE, 32])          # the tests' tile and the default
def test_panels_are_labelled(checkpoint, tile):
    from PIL import ImageDraw

    s = PlaySession(checkpoint, real=True, seed=0, device="cpu", tile_size=tile)
    img = s.compose(s.reset())
    s.close()
    side = 7 * tile
    assert img.shape[:2] == (LABEL_HEIGHT + side + CAPTION_HEIGHT, 2 * side + GAP)
    header = img[:LABEL_HEIGHT]
    for name, left in (("dream", 0), ("real", side + GAP)):
        ink = ink_columns(header[:, left:left + side])
        assert ink.size, f"no label over the {name} panel"
        word = Image.new("RGB", (side, LABEL_HEIGHT), "white")
        ImageDraw.Draw(word).text((0, 1), name, fill=(0, 0, 0))
        expected = ink_columns(np.asarray(word))
        assert ink[-1] - ink[0] == expected[-1] - expected[0]   # the word's width: 'dream' and 'real' differ
    assert not ink_columns(header[:, side:side + GAP]).size   # each label stays over its own panel
    assert s.compose(s.history[0], caption=False).shape[0] == side         # no strips without caption


def test_session_real_start_agrees(checkpoint):
    s = PlaySession(checkpoint, real=True, seed=5, device="cpu", tile_size=TILE)
    rec = s.reset()
    assert rec.agreement == 1.0                            # the dream starts from the real start
    rec = s.step(2)
    assert 0.0 <= rec.agreement <= 1.0 and rec.real_reward == 0.0
    summary = run_headless(s, [0, 1], verbose=False)
    assert summary["steps"] == 2 and summary["start_agreement"] == 1.0 and summary["frames"] == 0
    s.close()


def test_parse_actions():
    assert parse_actions("left, right,FORWARD,pickup,drop,toggle,done,3") == [0, 1, 2, 3, 4, 5, 6, 3]
    assert parse_actions("random:5", seed=1, num_actions=7) == parse_actions("random:5", seed=1, num_actions=7)
    assert len(parse_actions("random:50", seed=1, num_actions=3)) == 50
    assert set(parse_actions("random:50", seed=1, num_actions=3)) <= {0, 1, 2}
    with pytest.raises(ValueError, match="unknown action 'jump'"):
        parse_actions("forward,jump")
    with pytest.raises(ValueError, match="out of range"):
        parse_actions("7", num_actions=7)
    with pytest.raises(ValueError, match="out of range"):
        parse_actions("-1")
    with pytest.raises(ValueError, match="random:N"):
        parse_actions("random:x")


@pytest.mark.parametrize("argv, message", [
    (["--actions", "forward,jump"], "unknown action 'jump'"),
    (["--actions", "forward,9"], "out of range"),
    (["--actions", "left", "--record", "no/such/folder/x.gif"], "does not exist"),
    (["--actions", "random:z"], "random:N"),
])
def test_errors(checkpoint, tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a.startswith("no/") else a for a in argv]
    assert play("--checkpoint", checkpoint, *argv) == 1
    err = capsys.readouterr().err
    assert "worldsim play: error:" in err and message in err


def test_missing_checkpoint(tmp_path, capsys):
    assert play("--checkpoint", tmp_path / "nope", "--actions", "left") == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "nope" in err


def test_cli_registers_play():
    from train.cli import build_parser

    args = build_parser().parse_args(["play", "--checkpoint", "x", "--actions", "left"])
    assert args.command == "play" and args.actions == "left"


def test_interactive_with_injected_keys(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    pygame = pytest.importorskip("pygame")

    def key(k):
        return pygame.event.Event(pygame.KEYDOWN, key=k)

    s = PlaySession(checkpoint, real=True, seed=0, device="cpu", tile_size=TILE)
    out = tmp_path / "i.gif"
    events = [key(pygame.K_UP), key(pygame.K_LEFT), key(pygame.K_a),          # 'a' is ignored
              key(pygame.K_p), key(pygame.K_BACKSPACE), key(pygame.K_SPACE), key(pygame.K_ESCAPE)]
    assert run_interactive(s, record=str(out), events=events) == 0
    s.close()
    n, (w, _) = gif_info(out)
    assert n == 6 and w == 2 * 7 * TILE + GAP             # reset + 3 steps + reset + 1 step
    text = capsys.readouterr().out
    assert "forward" in text and "pickup" in text and "toggle" in text and "reset" in text


def headless(monkeypatch, pygame):
    """A Linux machine without a screen; waiting for events fails instead of hanging the test."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)

    def wait(*args, **kwargs):
        raise AssertionError("play waited for keyboard events that cannot come")

    monkeypatch.setattr(pygame.event, "wait", wait)


@pytest.mark.skipif(not os.sys.platform.startswith("linux"), reason="display detection by environment is Linux's")
def test_interactive_without_a_display_fails_at_once(checkpoint, tmp_path, monkeypatch, capsys):
    pygame = pytest.importorskip("pygame")
    headless(monkeypatch, pygame)
    assert play("--checkpoint", checkpoint, "--record", tmp_path / "x.gif") == 1
    err = capsys.readouterr().err
    assert "worldsim play: error: no display" in err and "--actions" in err and "--record" in err
    s = PlaySession(checkpoint, seed=0, device="cpu", tile_size=TILE)
    with pytest.raises(RuntimeError, match="no display"):
        run_interactive(s)
    s.close()
    assert not pygame.display.get_init()


def test_interactive_on_a_screenless_video_driver_fails(checkpoint, monkeypatch):
    pygame = pytest.importorskip("pygame")
    headless(monkeypatch, pygame)
    monkeypatch.setenv("DISPLAY", ":0")                     # the variables say yes, SDL's driver says no
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    s = PlaySession(checkpoint, seed=0, device="cpu", tile_size=TILE)
    with pytest.raises(RuntimeError, match="no display.*'dummy'.*--actions"):
        run_interactive(s)
    s.close()
    assert not pygame.display.get_init()


def test_interactive_initialises_only_the_display(checkpoint, monkeypatch, capfd):
    pygame = pytest.importorskip("pygame")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.delenv("SDL_AUDIODRIVER", raising=False)

    def init():
        raise AssertionError("pygame.init() also opens audio (ALSA errors on machines without a sound card)")

    monkeypatch.setattr(pygame, "init", init)
    s = PlaySession(checkpoint, seed=0, device="cpu", tile_size=TILE)
    assert run_interactive(s, events=[pygame.event.Event(pygame.KEYDOWN, key=pygame.K_UP)]) == 0
    s.close()
    printed = "".join(capfd.readouterr())
    assert "ALSA" not in printed and "XDG_RUNTIME_DIR" not in printed
