"""The episode dataset on disk: sharded ``.npz`` files plus a ``manifest.json``, written atomically.

Layout of a dataset folder::

    manifest.json        what the data is (env, codec, vocab, frame shape, actions, policy, ...) and
                         every shard's file name, episode count, step count, seeds and sha256
    shard-00000.npz      episodes concatenated along time (np.savez_compressed, no pickled objects):
                           frames [sum(T+1), H, W] tokens, agent_pos [sum(T+1), 2] int16,
                           agent_dir [sum(T+1)] int8, actions [sum T] int64 (an env of Box actions:
                           [sum T, A] float32, its bounds in the manifest's action_box), rewards float32,
                           terminated / truncated bool, seeds [E] int64, lengths [E] int64 (T)

Every file is written under a temporary name and renamed when complete, so a crash loses at most
the shard being written and never leaves a half file under a real name; the manifest only lists
shards that were complete. Loading checks each shard's checksum and shapes and names the file on any
problem (``DatasetError``); ``np.load(..., allow_pickle=False)`` so reading data never runs code.

``DatasetWriter`` is the write side (``worldsim collect``); ``EpisodeDataset`` the read side the
trainer and the dream envs use: episodes by index, a deterministic train/test split, and ``stream``,
which lays chosen episodes end to end (a ``worldsim.data.stream.Stream``) with the per-frame flags
and the temporal ``gap`` of every cell (``worldsim.data.gap``) that next-frame training and memory
metrics need. ``verify_dataset`` checks a folder end to end.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import reprlib
import stat
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..actions import ActionBox, action_box_of
from ..checkpoint import atomic_write
from ..checks import output_folder, positive_int
from ..codecs import codec_from_config
from .gap import episode_gap
from .stream import Stream

FORMAT = "worldsim-episodes"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# What must agree between a manifest and a run that wants to add episodes to it.
HEADER_KEYS = ("env_id", "codec", "vocab_size", "frame_shape", "num_actions", "policy", "max_steps", "seed")
# ... and, for an env of Box actions (num_actions 0), its {"low": [...], "high": [...]} (worldsim.actions)
OPTIONAL_HEADER_KEYS = ("action_box",)
_PER_FRAME = ("frames", "agent_pos", "agent_dir")
_PER_STEP = ("actions", "rewards", "terminated", "truncated")
_STEP_DTYPES = {"actions": np.int64, "rewards": np.float32, "terminated": np.bool_, "truncated": np.bool_}


class DatasetError(ValueError):
    """A dataset file is missing, truncated, corrupt or inconsistent; the message names the file."""


def frame_dtype(vocab_size: int) -> np.dtype:
    """Smallest dtype holding every token id: uint8 up to 256 tokens, else int16."""
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    if vocab_size <= 32768:
        return np.dtype(np.int16)
    raise ValueError(f"vocab_size {vocab_size} does not fit int16 frames")


@dataclass
class Episode:
    """One episode of T steps: T + 1 frames (the reset observation, then one per step)."""

    frames: np.ndarray        # [T+1, H, W] uint8 / int16 tokens
    actions: np.ndarray       # [T] int64 (Box actions: [T, A] float32)
    rewards: np.ndarray       # [T] float32
    terminated: np.ndarray    # [T] bool
    truncated: np.ndarray     # [T] bool
    agent_pos: np.ndarray     # [T+1, 2] int16: world (x, y)
    agent_dir: np.ndarray     # [T+1] int8
    env_id: str
    seed: int                 # the env's reset seed

    def __len__(self) -> int:
        return len(self.actions)


# ---------------------------------------------------------------------------------------- files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(root: str | os.PathLike) -> dict:
    """The manifest of the dataset at ``root``, checked for format and required keys."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{path}: no manifest (not a worldsim dataset)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: unreadable manifest ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{path}: format version {manifest.get('format_version')!r}; "
                           f"this code reads version {FORMAT_VERSION}")
    missing = [k for k in (*HEADER_KEYS, "shards", "totals") if k not in manifest]
    if missing:
        raise DatasetError(f"{path}: manifest lacks {missing}")
    _check_manifest_kinds(path, manifest)
    for i, entry in enumerate(manifest["shards"]):
        if not isinstance(entry, dict) or not {"file", "episodes", "steps", "sha256", "seeds"} <= entry.keys():
            raise DatasetError(f"{path}: shard entry {i} is malformed: {entry!r}")
        _check_shard_entry(path, i, entry)
        if Path(entry["file"]).name != entry["file"]:
            raise DatasetError(f"{path}: shard entry {i} names {entry['file']!r}, which is not a plain file name")
    return manifest


def _count(where: str, value, allow_zero: bool = False) -> None:
    """positive_int's check and wording, as a DatasetError."""
    try:
        positive_int(where, value, allow_zero=allow_zero)
    except ValueError as e:
        raise DatasetError(str(e)) from None


def _check_manifest_kinds(path: Path, manifest: dict) -> None:
    """The manifest's values are of the kinds the readers index and count with (a hand-edited
    ``"shards": 5`` fails here, naming the key, not as a TypeError deep inside a reader)."""
    def need(ok: bool, key: str, allowed: str) -> None:
        if not ok:
            raise DatasetError(f"{path}: {key} must be {allowed}; got {reprlib.repr(manifest[key])}")

    need(isinstance(manifest["shards"], list), "shards", "a list of shard entries")
    need(isinstance(manifest["totals"], dict), "totals", "an object of episode, step and frame counts")
    _count(f"{path}: vocab_size", manifest["vocab_size"])
    box = manifest.get("action_box")
    _count(f"{path}: num_actions", manifest["num_actions"], allow_zero=box is not None)
    if box is not None:
        try:
            ActionBox.from_json(box, str(path))
        except ValueError as e:
            raise DatasetError(str(e)) from None
        need(manifest["num_actions"] == 0, "num_actions", "0 beside an action_box (a Box of actions)")
    shape = manifest["frame_shape"]
    need(isinstance(shape, list) and len(shape) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape),
        "frame_shape", "a list of two positive integers [H, W]")


def _check_shard_entry(path: Path, i: int, entry: dict) -> None:
    for key in ("episodes", "steps"):
        _count(f"{path}: shard entry {i}: {key}", entry[key], allow_zero=True)
    for key in ("file", "sha256"):
        if not isinstance(entry[key], str):
            raise DatasetError(f"{path}: shard entry {i}: {key} must be a string; got {reprlib.repr(entry[key])}")
    if not isinstance(entry["seeds"], list):
        raise DatasetError(f"{path}: shard entry {i}: seeds must be a list of integers; got "
                           f"{reprlib.repr(entry['seeds'])}")
    for seed in entry["seeds"]:
        _count(f"{path}: shard entry {i}: seed", seed, allow_zero=True)


def _load_shard(root: Path, entry: dict, manifest: dict) -> dict[str, np.ndarray]:
    """Read one shard, checking checksum, keys, dtypes and shapes against its manifest entry."""
    path = root / entry["file"]
    limit = _max_shard_bytes(entry, manifest)
    try:
        info = os.stat(path)
        # Only a regular file of plausible size is read: a FIFO would block for ever, and a link to
        # /dev/zero would be read until memory runs out.
        if not stat.S_ISREG(info.st_mode):
            raise DatasetError(f"{path}: not a regular file (a pipe, device or folder); a shard must be a file")
        if info.st_size > limit:
            raise DatasetError(f"{path}: {info.st_size:,} bytes, more than a shard of {entry['steps']} steps can "
                               f"hold ({limit:,})")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise DatasetError(f"{path}: shard listed in the manifest is missing") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read shard ({e})") from e
    if _sha256(data) != entry["sha256"]:
        raise DatasetError(f"{path}: checksum mismatch (truncated or corrupt shard)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DatasetError(f"{path}: cannot load shard ({e})") from e
    _check_shard(path, arrays, entry, manifest)
    for array in arrays.values():               # episodes are views into cached shards: keep them intact
        array.flags.writeable = False
    return arrays


def _max_shard_bytes(entry: dict, manifest: dict) -> int:
    """A generous bound on a shard's size: every array at 8 bytes an element, plus a megabyte."""
    try:
        frames = int(entry["steps"]) + int(entry["episodes"])
        cells = int(np.prod(manifest["frame_shape"])) + len((manifest.get("action_box") or {}).get("low", []))
    except (TypeError, ValueError, KeyError):
        raise DatasetError(f"shard entry {entry!r}: steps, episodes and the manifest's frame_shape must be numbers") \
            from None
    return 8 * frames * (cells + 3) + 8 * 8 * frames + (1 << 20)


def _check_shard(path: Path, a: dict[str, np.ndarray], entry: dict, manifest: dict) -> None:
    def fail(why: str):
        raise DatasetError(f"{path}: {why}")

    missing = [k for k in (*_PER_FRAME, *_PER_STEP, "seeds", "lengths") if k not in a]
    if missing:
        fail(f"lacks arrays {missing}")
    lengths, seeds = a["lengths"], a["seeds"]
    if lengths.ndim != 1 or lengths.shape != seeds.shape or lengths.dtype.kind != "i" or seeds.dtype.kind != "i":
        fail(f"lengths {lengths.shape} {lengths.dtype} / seeds {seeds.shape} {seeds.dtype} "
             "are not matching int vectors")
    if (lengths < 1).any():
        fail("holds an episode with no steps")
    if len(lengths) != entry["episodes"] or seeds.tolist() != list(entry["seeds"]):
        fail(f"holds {len(lengths)} episodes with seeds {seeds.tolist()[:8]}..., the manifest says "
             f"{entry['episodes']} with seeds {list(entry['seeds'])[:8]}...")
    steps = int(lengths.sum())
    if steps != entry["steps"]:
        fail(f"holds {steps} steps, the manifest says {entry['steps']}")
    frames_n = steps + len(lengths)
    expect = {
        "frames": ((frames_n, *manifest["frame_shape"]), frame_dtype(manifest["vocab_size"])),
        "agent_pos": ((frames_n, 2), np.dtype(np.int16)),
        "agent_dir": ((frames_n,), np.dtype(np.int8)),
        **{k: ((steps,), np.dtype(t)) for k, t in _STEP_DTYPES.items()},
    }
    box = action_box_of(manifest)
    if box is not None:
        expect["actions"] = ((steps, box.dim), np.dtype(np.float32))
    for key, (shape, dtype) in expect.items():
        if a[key].shape != shape or a[key].dtype != dtype:
            fail(f"array {key!r} is {a[key].dtype} {a[key].shape}; expected {dtype} {shape}")
    if not np.isfinite(a["rewards"]).all():
        fail(f"{int((~np.isfinite(a['rewards'])).sum())} rewards are not finite (NaN or infinite); a world model "
             "cannot learn from them")


# ---------------------------------------------------------------------------------------- write


class DatasetWriter:
    """Appends shards to a dataset folder, creating it or continuing the one already there.

    ``header`` holds the ``HEADER_KEYS``; an existing manifest must agree on all of them (a dataset is
    one env, codec, policy, step limit and seed sequence), otherwise ``DatasetError`` says which differ.
    """

    def __init__(self, root: str | os.PathLike, header: dict):
        self.root = Path(root)
        missing = [k for k in HEADER_KEYS if k not in header]
        if missing:
            raise ValueError(f"header lacks {missing}")
        header = json.loads(json.dumps({k: header[k] for k in (*HEADER_KEYS, *OPTIONAL_HEADER_KEYS)
                                        if header.get(k) is not None or k in HEADER_KEYS}))  # JSON-normal
        output_folder(self.root, "dataset folder", DatasetError)
        if (self.root / MANIFEST).exists():
            self.manifest = read_manifest(self.root)
            differ = {k: (self.manifest.get(k), header.get(k)) for k in (*HEADER_KEYS, *OPTIONAL_HEADER_KEYS)
                      if self.manifest.get(k) != header.get(k)}
            if differ:
                lines = "; ".join(f"{k}: dataset has {old!r}, this run {new!r}" for k, (old, new) in differ.items())
                raise DatasetError(f"{self.root / MANIFEST}: this dataset was collected differently ({lines}). "
                                   "Use another --out folder, or the same settings to continue it.")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self.manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **header,
                             "frame_dtype": frame_dtype(header["vocab_size"]).name, "shards": [],
                             "totals": {"episodes": 0, "steps": 0, "frames": 0}}
            self._write_manifest()
        for stale in [*self.root.glob(".shard-*.npz*.tmp"), *self.root.glob(f".{MANIFEST}*.tmp")]:
            stale.unlink()                                       # a previous run's file in flight

    @property
    def seeds_done(self) -> set[int]:
        return {int(s) for entry in self.manifest["shards"] for s in entry["seeds"]}

    def _write_manifest(self) -> None:
        data = (json.dumps(self.manifest, indent=1) + "\n").encode()
        atomic_write(self.root / MANIFEST, lambda tmp: Path(tmp).write_bytes(data))

    def write_shard(self, episodes: list[Episode]) -> dict:
        """Write ``episodes`` as the next shard, then list it in the manifest; returns its entry."""
        if not episodes:
            raise ValueError("a shard needs at least one episode")
        dtype = frame_dtype(self.manifest["vocab_size"])
        shape = tuple(self.manifest["frame_shape"])
        for ep in episodes:
            if ep.env_id != self.manifest["env_id"]:
                raise ValueError(f"episode of {ep.env_id!r} in a dataset of {self.manifest['env_id']!r}")
            if ep.frames.shape[1:] != shape or ep.frames.shape[0] != len(ep.actions) + 1:
                raise ValueError(f"episode frames {ep.frames.shape} do not fit {len(ep.actions)} steps "
                                 f"of {shape} frames")
        arrays = {key: np.concatenate([getattr(ep, key) for ep in episodes]) for key in (*_PER_FRAME, *_PER_STEP)}
        arrays["frames"] = arrays["frames"].astype(dtype, copy=False)
        arrays["agent_pos"] = arrays["agent_pos"].astype(np.int16, copy=False)
        arrays["agent_dir"] = arrays["agent_dir"].astype(np.int8, copy=False)
        for key, t in _STEP_DTYPES.items():
            arrays[key] = arrays[key].astype(t, copy=False)
        if "action_box" in self.manifest:
            arrays["actions"] = np.concatenate([ep.actions for ep in episodes]).astype(np.float32, copy=False)
        arrays["seeds"] = np.array([ep.seed for ep in episodes], dtype=np.int64)
        arrays["lengths"] = np.array([len(ep) for ep in episodes], dtype=np.int64)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        data = buffer.getvalue()
        name = f"shard-{len(self.manifest['shards']):05d}.npz"  # a stray file of that name is a lost shard
        atomic_write(self.root / name, lambda tmp: Path(tmp).write_bytes(data))
        entry = {"file": name, "episodes": len(episodes), "steps": int(arrays["lengths"].sum()),
                 "sha256": _sha256(data), "seeds": arrays["seeds"].tolist()}
        self.manifest["shards"].append(entry)
        totals = self.manifest["totals"]
        totals["episodes"] += entry["episodes"]
        totals["steps"] += entry["steps"]
        totals["frames"] += entry["steps"] + entry["episodes"]
        self._write_manifest()
        return entry


# ---------------------------------------------------------------------------------------- read


class EpisodeDataset:
    """Read side of a dataset folder. Shards load lazily (checksummed) and a few stay cached."""

    def __init__(self, root: str | os.PathLike, cache_shards: int = 4):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        for entry in self.manifest["shards"]:
            path = self.root / entry["file"]
            if not path.is_file():      # a FIFO or a link to a device is there, but is no shard
                raise DatasetError(f"{path}: not a regular file (a pipe, device or folder); a shard must be a file"
                                   if path.exists() else f"{path}: shard listed in the manifest is missing")
        try:
            self.codec = codec_from_config(self.manifest["codec"], files=self.root)
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"{self.root / MANIFEST}: codec {self.manifest['codec']!r} "
                               f"cannot be rebuilt ({e})") from e
        counts = [entry["episodes"] for entry in self.manifest["shards"]]
        self._shard_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._cache: OrderedDict[int, tuple[dict, np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = max(1, cache_shards)

    @property
    def num_episodes(self) -> int:
        return int(self._shard_start[-1])

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return tuple(self.manifest["frame_shape"])

    @property
    def num_actions(self) -> int:
        return int(self.manifest["num_actions"])

    @property
    def action_box(self) -> ActionBox | None:
        """The bounds of an env of Box actions (None: Discrete, num_actions of them)."""
        return action_box_of(self.manifest)

    @property
    def env_id(self) -> str:
        return self.manifest["env_id"]

    def __len__(self) -> int:
        return self.num_episodes

    def _shard(self, s: int):
        """(arrays, frame offsets, step offsets) of shard s, from the cache when there."""
        if s in self._cache:
            self._cache.move_to_end(s)
            return self._cache[s]
        arrays = _load_shard(self.root, self.manifest["shards"][s], self.manifest)
        lengths = arrays["lengths"]
        step_off = np.concatenate([[0], np.cumsum(lengths)])
        frame_off = step_off + np.arange(len(lengths) + 1)
        self._cache[s] = (arrays, frame_off, step_off)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return self._cache[s]

    def episode(self, i: int) -> Episode:
        """Episode ``i`` (0 <= i < num_episodes, in manifest order)."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"episode index must be an integer; got {type(i).__name__}")
        if not 0 <= i < self.num_episodes:
            raise IndexError(f"episode {i} out of range: the dataset has {self.num_episodes}")
        s = self._shard_of(i)
        j = int(i - self._shard_start[s])
        arrays, frame_off, step_off = self._shard(s)
        f, st = slice(frame_off[j], frame_off[j + 1]), slice(step_off[j], step_off[j + 1])
        return Episode(frames=arrays["frames"][f], actions=arrays["actions"][st], rewards=arrays["rewards"][st],
                       terminated=arrays["terminated"][st], truncated=arrays["truncated"][st],
                       agent_pos=arrays["agent_pos"][f], agent_dir=arrays["agent_dir"][f],
                       env_id=self.env_id, seed=int(arrays["seeds"][j]))

    def split(self, holdout_fraction: float = 0.1, seed: int = 0) -> tuple[list[int], list[int]]:
        """Disjoint (train_ids, test_ids), sorted; the same for the same dataset, fraction and seed.
        The test part holds round(fraction * n) episodes, at least one when n >= 2, never all."""
        if not 0.0 < holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1); got {holdout_fraction}")
        n = self.num_episodes
        n_test = min(max(1, round(holdout_fraction * n)), n - 1) if n >= 2 else 0
        order = np.random.default_rng(seed).permutation(n)
        return sorted(order[n_test:].tolist()), sorted(order[:n_test].tolist())

    def stream(self, episode_ids) -> Stream:
        """The chosen episodes laid end to end in the given order, with per-frame flags and gaps."""
        ids = [int(i) for i in episode_ids]
        if not ids:
            raise ValueError("stream needs at least one episode id")
        episodes = {i: self.episode(i) for i in sorted(set(ids), key=self._shard_of)}  # each shard loaded once
        chosen = [episodes[i] for i in ids]
        ends = np.cumsum([len(ep) + 1 for ep in chosen])
        n = int(ends[-1])
        starts = np.concatenate([[0], ends[:-1]])
        last = ends - 1
        box = self.action_box
        actions = np.zeros(n, dtype=np.int64) if box is None else np.zeros((n, box.dim), dtype=np.float32)
        rewards = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        has_target = np.ones(n, dtype=bool)
        has_target[last] = False
        episode_start = np.zeros(n, dtype=bool)
        episode_start[starts] = True
        for ep, a in zip(chosen, starts):
            actions[a : a + len(ep)] = ep.actions
            rewards[a : a + len(ep)] = ep.rewards
            terminated[a : a + len(ep)] = ep.terminated
        return Stream(
            frames=np.concatenate([ep.frames for ep in chosen]),
            actions=actions, rewards=rewards, terminated=terminated,
            has_target=has_target, episode_start=episode_start,
            gap=np.concatenate([episode_gap(ep.frames, ep.agent_pos, ep.agent_dir, self.codec) for ep in chosen]),
        )

    def _shard_of(self, i: int) -> int:
        return int(np.searchsorted(self._shard_start, i, side="right")) - 1


# ---------------------------------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    """What ``verify_dataset`` found: ``problems`` empty means the dataset is sound."""

    root: Path
    problems: list[str]
    notes: list[str]
    summary: dict

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"dataset {self.root}: " + ("OK" if self.ok else f"{len(self.problems)} problem(s)")]
        lines += [f"  {k}: {v}" for k, v in self.summary.items()]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  PROBLEM: {p}" for p in self.problems]
        return "\n".join(lines)


def verify_dataset(root: str | os.PathLike) -> VerifyReport:
    """Check everything: manifest, every shard (present, checksum, loads, shapes, dtypes), that tokens
    decode through the codec, action and pose ranges, episode ends, unique seeds and the totals."""
    root = Path(root)
    problems, notes, summary = [], [], {}
    try:
        manifest = read_manifest(root)
        codec = codec_from_config(manifest["codec"], files=root)
    except (DatasetError, ValueError, KeyError, TypeError) as e:
        return VerifyReport(root, [str(e)], notes, summary)
    if tuple(manifest["frame_shape"]) != codec.frame_shape or manifest["vocab_size"] != codec.vocab_size:
        problems.append(f"{root / MANIFEST}: frame_shape {manifest['frame_shape']} / vocab_size "
                        f"{manifest['vocab_size']} disagree with codec {codec!r}")
    lengths, returns, terminated, seeds = [], [], 0, []
    for entry in manifest["shards"]:
        path = root / entry["file"]
        try:
            a = _load_shard(root, entry, manifest)
        except DatasetError as e:
            problems.append(str(e))
            continue
        try:
            _, directions = codec.decode_batch(a["frames"])
            if directions is not None and not np.array_equal(directions, a["agent_dir"]):   # images carry none
                problems.append(f"{path}: agent_dir disagrees with the direction the frames carry")
        except ValueError as e:
            problems.append(f"{path}: frames do not decode through the codec ({e})")
        box = action_box_of(manifest)
        if box is not None:
            try:
                box.check(a["actions"], a["actions"].shape[:1])
            except ValueError as e:
                problems.append(f"{path}: {e}")
        elif ((a["actions"] < 0) | (a["actions"] >= manifest["num_actions"])).any():
            problems.append(f"{path}: actions outside 0..{manifest['num_actions'] - 1}")
        if ((a["agent_dir"] < 0) | (a["agent_dir"] > 3)).any():
            problems.append(f"{path}: agent_dir outside 0..3")
        done = a["terminated"] | a["truncated"]
        ends = np.cumsum(a["lengths"]) - 1
        if not done[ends].all() or done.sum() != len(ends):
            problems.append(f"{path}: an episode does not end exactly at its last step")
        step_off = np.concatenate([[0], ends + 1])
        returns += [float(a["rewards"][s:e].sum()) for s, e in zip(step_off[:-1], step_off[1:])]
        terminated += int(a["terminated"][ends].sum())
        lengths += a["lengths"].tolist()
        seeds += a["seeds"].tolist()
    if len(set(seeds)) != len(seeds):
        problems.append(f"{root}: some seeds occur in more than one episode")
    totals = manifest["totals"]
    listed = sum(e["episodes"] for e in manifest["shards"]), sum(e["steps"] for e in manifest["shards"])
    if (totals.get("episodes"), totals.get("steps")) != listed:
        problems.append(f"{root / MANIFEST}: totals {totals} disagree with its shards ({listed[0]} episodes, "
                        f"{listed[1]} steps)")
    stray = sorted({p.name for p in root.glob("shard-*.npz")} - {e["file"] for e in manifest["shards"]})
    if stray:
        notes.append(f"shard files not in the manifest (ignored): {stray}")
    summary = {"env": manifest["env_id"], "policy": manifest["policy"], "max_steps": manifest["max_steps"],
               "shards": len(manifest["shards"]), "episodes": totals.get("episodes"), "steps": totals.get("steps"),
               "frame_shape": manifest["frame_shape"], "vocab_size": manifest["vocab_size"],
               "num_actions": manifest["num_actions"], **({"action_box": manifest["action_box"]}
                                                          if "action_box" in manifest else {})}
    if lengths:
        summary["episode_length"] = f"mean {np.mean(lengths):.1f}, min {min(lengths)}, max {max(lengths)}"
        summary["return"] = f"mean {np.mean(returns):z.3f}, terminated {terminated}/{len(lengths)}"  # z: no -0.000
    summary["bytes_on_disk"] = sum((root / e["file"]).stat().st_size for e in manifest["shards"]
                                   if (root / e["file"]).is_file())
    return VerifyReport(root, problems, notes, summary)
