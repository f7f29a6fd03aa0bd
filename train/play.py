"""`worldsim play`: steer through a trained world model's dream, by keyboard or from an action list.

A :class:`PlaySession` holds a DreamEnv (and, with ``real=True``, the real env, reset with the same
seed and stepped with the same actions). Each step gives a :class:`StepRecord`; ``compose`` draws the
dreamed egocentric view (``codec.render`` of the dreamed tokens) and, beside it, the real env's view
drawn the same way from its encoded observation, so the two panels are directly comparable, under a
strip naming them ("dream", "real") and over a caption strip (step, action, rewards, per-cell
agreement).

- headless (``--actions``): the actions come from a list (names, ints or ``random:N``); a per-step
  table and a summary are printed; ``--record`` writes the frames as an animated GIF.
- interactive (no ``--actions``): a pygame window, keys as in ``minigrid.manual_control``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

import numpy as np

ACTION_NAMES = ("left", "right", "forward", "pickup", "drop", "toggle", "done")   # MiniGrid's Actions
KEY_TO_ACTION = {"left": 0, "right": 1, "up": 2, "space": 5, "pageup": 3, "p": 3, "pagedown": 4, "d": 4,
                 "tab": 3, "left shift": 4, "enter": 6, "return": 6}
GAP = 4                # pixels between the dream and real panels
CAPTION_HEIGHT = 14    # pixels of the caption strip under the panels
LABEL_HEIGHT = 14      # pixels of the strip over the panels that names them ("dream", "real")
DEFAULT_TILE = 32


# ---------------------------------------------------------------------------------------- actions


def action_name(a: int) -> str:
    return ACTION_NAMES[a] if 0 <= a < len(ACTION_NAMES) else str(a)


def parse_actions(spec: str, seed: int | None = 0, num_actions: int | None = None) -> list[int]:
    """'forward,left,2' (MiniGrid names or ints) or 'random:N' -> action ids.
    Range is checked against `num_actions` when given; raises ValueError with the offending item."""
    spec = spec.strip()
    if spec.lower().startswith("random:"):
        n_text = spec.split(":", 1)[1].strip()
        try:
            n = int(n_text)
        except ValueError:
            raise ValueError(f"--actions random:N needs an integer N; got {n_text!r}") from None
        if n < 0:
            raise ValueError(f"--actions random:N needs N >= 0; got {n}")
        if num_actions is None:         # only checking the spec: the range is not known yet
            return [0] * n
        return [int(a) for a in np.random.default_rng(seed).integers(0, num_actions, size=n)]
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.lstrip("-").isdigit():
            a = int(item)
        elif item.lower() in ACTION_NAMES:
            a = ACTION_NAMES.index(item.lower())
        else:
            raise ValueError(f"unknown action {item!r}; use integers or MiniGrid action names "
                             f"({', '.join(ACTION_NAMES)}), or random:N")
        if a < 0 or (num_actions is not None and a >= num_actions):
            hi = f"0..{num_actions - 1}" if num_actions is not None else ">= 0"
            raise ValueError(f"action {item!r} is out of range (the env's actions are {hi})")
        out.append(a)
    if not out:
        raise ValueError(f"--actions {spec!r} names no action; give names or integers such as 'forward,left,2', "
                         "or random:N (leave --actions out to play by keyboard)")
    return out


# ---------------------------------------------------------------------------------------- session


@dataclass
class StepRecord:
    step: int
    action: int | None
    dream_tokens: np.ndarray            # [H, W]
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    real_tokens: np.ndarray | None = None
    real_reward: float | None = None
    real_terminated: bool | None = None
    real_truncated: bool | None = None

    @property
    def agreement(self) -> float | None:
        """Fraction of cells where the dreamed tokens equal the real env's (None without --real)."""
        if self.real_tokens is None:
            return None
        return float(np.mean(self.dream_tokens == self.real_tokens))

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


@dataclass
class PlaySession:
    """A DreamEnv and optionally the real env, stepped together. See the module docstring."""

    checkpoint: str
    real: bool = False
    seed: int | None = 0
    temperature: float | None = None
    max_steps: int | None = None
    device: str = "auto"
    tile_size: int = DEFAULT_TILE
    history: list[StepRecord] = field(default_factory=list)

    def __post_init__(self):
        from worldsim.dream_env import DreamEnv, observed_real_env

        self.env = DreamEnv(self.checkpoint, device=self.device, temperature=self.temperature,
                            max_episode_steps=self.max_steps, render_mode="rgb_array")
        self.codec = self.env.codec
        if self.env.simulator.action_box is not None:
            raise ValueError(f"play steps a dream by keys, one per Discrete action; this model acts in "
                             f"{self.env.action_space}")
        self.num_actions = int(self.env.action_space.n)
        self.real_env = observed_real_env(self.codec, self.env.setup.real_env_id) if self.real else None
        self._real_over = False

    @property
    def env_id(self) -> str:
        return self.env.setup.real_env_id

    def _real_tokens(self, obs) -> np.ndarray:
        from worldsim.codecs import real_frame

        return real_frame(self.codec, obs, self.real_env).numpy()

    def reset(self) -> StepRecord:
        self.env.reset(seed=self.seed)
        rec = StepRecord(0, None, self.env.frame.cpu().numpy().copy())
        if self.real_env is not None:
            obs, _ = self.real_env.reset(seed=self.seed)
            rec.real_tokens = self._real_tokens(obs)
            rec.real_reward, rec.real_terminated, rec.real_truncated = 0.0, False, False
            self._real_over = False
        self.history = [rec]
        return rec

    def step(self, action: int) -> StepRecord:
        if not self.history:
            raise RuntimeError("call reset() first")
        if not 0 <= int(action) < self.num_actions:
            raise ValueError(f"action {action!r} is out of range (the env's actions are 0..{self.num_actions - 1})")
        prev = self.history[-1]
        _, reward, term, trunc, _ = self.env.step(int(action))
        rec = StepRecord(prev.step + 1, int(action), self.env.frame.cpu().numpy().copy(),
                         float(reward), bool(term), bool(trunc))
        if self.real_env is not None:
            if self._real_over:          # the real episode ended: its last frame stays, nothing more happens
                rec.real_tokens, rec.real_reward = prev.real_tokens, 0.0
                rec.real_terminated, rec.real_truncated = prev.real_terminated, prev.real_truncated
            else:
                obs, r, rt, rtr, _ = self.real_env.step(int(action))
                rec.real_tokens = self._real_tokens(obs)
                rec.real_reward, rec.real_terminated = float(r), bool(rt)
                rec.real_truncated = bool(rtr) or (self.max_steps is not None and rec.step >= self.max_steps
                                                   and not rt)
                self._real_over = rec.real_terminated or rec.real_truncated
        self.history.append(rec)
        return rec

    # ------------------------------------------------------------------------------------ pictures

    def compose(self, rec: StepRecord, caption: bool = True) -> np.ndarray:
        """RGB uint8 [h, w, 3]: dream panel (| gap | real panel); with `caption`, a strip over them
        naming each panel and a caption strip under them."""
        panels = [("dream", self.codec.render(rec.dream_tokens, tile_size=self.tile_size))]
        if rec.real_tokens is not None:
            panels.append(("real", self.codec.render(rec.real_tokens, tile_size=self.tile_size)))
        h = panels[0][1].shape[0]
        top = LABEL_HEIGHT if caption else 0
        w = sum(p.shape[1] for _, p in panels) + GAP * (len(panels) - 1)
        out = np.full((top + h + (CAPTION_HEIGHT if caption else 0), w, 3), 255, dtype=np.uint8)
        lefts, x = [], 0
        for _, p in panels:
            out[top:top + h, x:x + p.shape[1]] = p
            lefts.append(x)
            x += p.shape[1] + GAP
        if caption:
            from PIL import Image, ImageDraw

            img = Image.fromarray(out)
            draw = ImageDraw.Draw(img)
            for (name, p), left in zip(panels, lefts):
                draw.text((left + max(0, (p.shape[1] - draw.textlength(name)) // 2), 1), name, fill=(0, 0, 0))
            draw.text((2, top + h + 1), caption_text(rec), fill=(0, 0, 0))
            out = np.asarray(img)
        return out

    def close(self) -> None:
        self.env.close()
        if self.real_env is not None:
            self.real_env.close()


def caption_text(rec: StepRecord) -> str:
    text = f"{rec.step} {action_name(rec.action) if rec.action is not None else 'reset'} r={rec.reward:z.2f}"
    if rec.done:
        text += " T" if rec.terminated else " trunc"
    if rec.real_tokens is not None:
        text += f" | real r={rec.real_reward:z.2f} agree={rec.agreement:.0%}"
    return text


def write_gif(path: str, frames: list[np.ndarray], fps: float) -> None:
    """Animated GIF of `frames`, written atomically (a temp file in the same folder, then renamed)."""
    from PIL import Image

    from worldsim.checkpoint import atomic_write

    if not frames:
        raise ValueError("no frames to record")
    images = [Image.fromarray(f) for f in frames]
    atomic_write(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                  duration=max(1, round(1000 / fps)), loop=0, optimize=False,
                                                  disposal=1))


# ---------------------------------------------------------------------------------------- modes


def _row(rec: StepRecord) -> str:
    done = "term" if rec.terminated else "trunc" if rec.truncated else ""
    row = f"{rec.step:>5} {action_name(rec.action) if rec.action is not None else 'reset':>8} " \
          f"{rec.reward:>8.3f} {done:>6}"
    if rec.real_tokens is not None:
        rdone = "term" if rec.real_terminated else "trunc" if rec.real_truncated else ""
        row += f" {rec.real_reward:>8.3f} {rdone:>6} {rec.agreement:>6.1%}"
    return row


def _header(real: bool) -> str:
    head = f"{'step':>5} {'action':>8} {'reward':>8} {'done':>6}"
    if real:
        head += f" {'real_r':>8} {'r_done':>6} {'agree':>6}"
    return head


def run_headless(session: PlaySession, actions: list[int], record: str | None = None, fps: float = 5.0,
                 verbose: bool = True) -> dict:
    """Play `actions` from a reset (stopping early if the dream episode ends); returns a summary."""
    rec = session.reset()
    frames = [session.compose(rec)] if record else []
    if verbose:
        print(_header(session.real_env is not None))
        print(_row(rec))
    for a in actions:
        rec = session.step(a)
        if record:
            frames.append(session.compose(rec))
        if verbose:
            print(_row(rec))
        if rec.done:
            break
    hist = session.history
    steps = len(hist) - 1
    summary = {"steps": steps, "unused_actions": len(actions) - steps,
               "dream_reward": sum(r.reward for r in hist[1:]),
               "terminated": hist[-1].terminated, "truncated": hist[-1].truncated, "frames": len(frames)}
    if session.real_env is not None:
        summary["real_reward"] = sum(r.real_reward for r in hist[1:])
        summary["real_terminated"] = bool(hist[-1].real_terminated)
        summary["agreement"] = float(np.mean([r.agreement for r in hist[1:]])) if steps else hist[0].agreement
        summary["start_agreement"] = hist[0].agreement
    if record:
        write_gif(record, frames, fps)
        summary["record"] = record
    return summary


def format_summary(s: dict) -> str:
    end = "terminated" if s["terminated"] else "truncated" if s["truncated"] else "still running"
    text = f"{s['steps']} steps, dream {end}, dreamed reward {s['dream_reward']:z.3f}"
    if "real_reward" in s:
        text += (f", real reward {s['real_reward']:z.3f}" + (" (real terminated)" if s["real_terminated"] else "")
                 + f", per-cell agreement {s['agreement']:.1%} (mean over steps)")
    if s["unused_actions"]:
        text += f"; the dream episode ended with {s['unused_actions']} actions unused"
    if "record" in s:
        text += f"; wrote {s['frames']} frames to {s['record']}"
    return text


class NoDisplayError(RuntimeError):
    """No screen for the interactive window."""


HEADLESS_HINT = ("to play headless, give the actions with --actions (e.g. --actions forward,left,forward or "
                 "random:20) and --record FILE.gif to watch the episode")


def require_display_server() -> None:
    """NoDisplayError on Linux without X11 or Wayland (unless SDL_VIDEODRIVER names a real driver):
    checked from the environment, before loading the model or opening a window."""
    from worldsim.dream_env import no_display_server

    if no_display_server() and os.environ.get("SDL_VIDEODRIVER", "") in ("", "offscreen", "dummy"):
        raise NoDisplayError(f"no display to open the play window on (DISPLAY and WAYLAND_DISPLAY are unset); "
                             f"{HEADLESS_HINT}")


def run_interactive(session: PlaySession, record: str | None = None, fps: float = 5.0, scale: int = 2,
                    events=None) -> int:
    """A pygame window; keys as in minigrid.manual_control. `events` (tests): an iterable of pygame
    events replacing the event queue, which then needs no screen. Without `events` and without a
    screen, NoDisplayError (waiting for keys that can never come would hang)."""
    if events is None:
        require_display_server()
    import pygame

    from worldsim.dream_env import init_display

    init_display()
    try:
        driver = pygame.display.get_driver()
        if events is None and driver in ("offscreen", "dummy"):
            raise NoDisplayError(f"no display to open the play window on (SDL's video driver is {driver!r}); "
                                 f"{HEADLESS_HINT}")
        rec = session.reset()
        frames = [session.compose(rec)] if record else []
        first = session.compose(rec)
        size = (first.shape[1] * scale, first.shape[0] * scale)
        screen = pygame.display.set_mode(size)
        pygame.display.set_caption(f"worldsim play: {session.env_id}" + (" (dream | real)" if session.real else ""))
        print(_header(session.real_env is not None))
        print(_row(rec))

        def show(rec):
            img = session.compose(rec)
            surf = pygame.surfarray.make_surface(np.ascontiguousarray(img.transpose(1, 0, 2)))
            screen.blit(pygame.transform.scale(surf, size), (0, 0))
            pygame.display.flip()

        show(rec)
        clock = pygame.time.Clock()
        source = iter(events) if events is not None else None
        while True:
            batch = ([next(source, pygame.event.Event(pygame.QUIT))] if source is not None
                     else [pygame.event.wait()])
            for event in batch:
                if event.type == pygame.QUIT:
                    return _finish(record, frames, fps)
                if event.type != pygame.KEYDOWN:
                    continue
                key = pygame.key.name(int(event.key))
                if key == "escape":
                    return _finish(record, frames, fps)
                if key == "backspace":
                    rec = session.reset()
                    print("reset")
                elif key in KEY_TO_ACTION and KEY_TO_ACTION[key] < session.num_actions:
                    rec = session.step(KEY_TO_ACTION[key])
                    print(_row(rec))
                    if rec.done:
                        if record:
                            frames.append(session.compose(rec))
                        show(rec)
                        print("episode over; reset")
                        rec = session.reset()
                else:
                    continue
                if record:
                    frames.append(session.compose(rec))
                show(rec)
            if source is None:
                clock.tick(60)
    finally:
        pygame.display.quit()


def _finish(record, frames, fps) -> int:
    if record:
        write_gif(record, frames, fps)
        print(f"wrote {len(frames)} frames to {record}")
    return 0


# ---------------------------------------------------------------------------------------- command line


def _run(args: argparse.Namespace) -> int:
    try:
        if args.fps <= 0:
            raise ValueError(f"--fps must be > 0; got {args.fps}")
        if args.steps is not None and args.steps < 1:
            raise ValueError(f"--steps must be >= 1; got {args.steps}")
        if args.record is not None:
            folder = os.path.dirname(os.path.abspath(args.record))
            if not os.path.isdir(folder):
                raise ValueError(f"--record {args.record!r}: folder {folder!r} does not exist")
        if args.actions is not None:                    # names, signs and N checked before loading the model
            parse_actions(args.actions, args.seed, num_actions=None)
        else:
            require_display_server()
        session = PlaySession(args.checkpoint, real=args.real, seed=args.seed, temperature=args.temperature,
                              max_steps=args.steps, device=args.device, tile_size=args.tile_size)
    except (ValueError, OSError, NoDisplayError) as e:  # CheckpointError is a ValueError
        print(f"worldsim play: error: {e}", file=sys.stderr)
        return 1
    try:
        if args.actions is None:
            return run_interactive(session, args.record, args.fps, scale=args.scale)
        actions = parse_actions(args.actions, args.seed, session.num_actions)
        summary = run_headless(session, actions, args.record, args.fps, verbose=not args.quiet)
        print(format_summary(summary))
        return 0
    except (ValueError, OSError, NoDisplayError) as e:
        print(f"worldsim play: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        session.close()


def add_play_parser(subparsers, help: str | None = None) -> argparse.ArgumentParser:
    """Register `play` on the `worldsim` command's subparsers."""
    p = subparsers.add_parser(
        "play", help=help,
        description="Reset the dream from the real env's start (seed --seed) and step it with actions: "
        "from the keyboard in a pygame window (arrows left/right/up: turn left/right/forward, space: toggle, "
        "pageup or p: pickup, pagedown or d: drop, enter: done, backspace: reset, escape: quit), or, with "
        "--actions, headless. --real steps the real env with the same actions and shows its view beside the "
        "dream's (both drawn by the codec from tokens), with per-cell agreement.",
    )
    p.add_argument("--checkpoint", required=True,
                   help="a world model: the model/ folder of a `worldsim train` run, or a shipped model's id, e.g. "
                   "MiniGrid-DoorKey-8x8-v0 (`worldsim models`)")
    p.add_argument("--real", action="store_true", help="step the real env alongside and show it beside the dream")
    p.add_argument("--actions", metavar="SPEC",
                   help="headless: comma-separated MiniGrid action names (left,right,forward,pickup,drop,toggle,"
                   "done) or ints, or random:N for N uniformly random actions seeded by --seed")
    p.add_argument("--record", metavar="OUT.gif", help="save the frames as an animated GIF")
    p.add_argument("--seed", type=int, default=0, help="reset seed of the real start (and random:N) (default: 0)")
    p.add_argument("--steps", type=int, default=None,
                   help="episode step limit (truncation) replacing the env's own (default: the env's)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature of dreamed frames; 0 takes the most likely tokens (default: the "
                   "dream's own: 0 for a world-view model, 1 for one of the agent's view)")
    p.add_argument("--fps", type=float, default=5.0, help="frames per second of the GIF (default: 5)")
    p.add_argument("--tile-size", type=int, default=DEFAULT_TILE, help="pixels per cell of each panel (default: 32)")
    p.add_argument("--scale", type=int, default=2, help="interactive: window scale factor (default: 2)")
    p.add_argument("--device", default="auto", help="torch device of the model (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="headless: print the summary only, not each step")
    p.set_defaults(run=_run, play_parser=p)
    return p
