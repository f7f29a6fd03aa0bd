import pytest
import torch

from worldsim import WorldModel, WorldModelConfig


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def tiny_config(**overrides) -> WorldModelConfig:
    """A small model with uneven blocks, a short attention window and short scan chunks, so that
    tests cross window and chunk boundaries within a few dozen frames."""
    settings = dict(
        vocab_size=23, frame_shape=(5, 6), num_actions=4, d_model=32, n_layers=3,
        block_sizes=[(5, 6), (2, 4), (3, 3)], d_state=8, headdim=16, n_heads=2,
        attn_window=3, chunk_size=16, backend="torch",
    )
    settings.update(overrides)
    return WorldModelConfig(**settings)


def randomized(model: WorldModel, scale: float = 0.1, seed: int = 0) -> WorldModel:
    """Shake every weight, including the zero-initialised adaLN gates (which make an untrained
    model's layers the identity and would hide bugs)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model.eval()


def random_episode(config: WorldModelConfig, batch: int, frames: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    f = torch.randint(config.vocab_size, (batch, frames, *config.frame_shape), generator=gen)
    a = torch.randint(config.num_actions, (batch, frames), generator=gen)
    return f, a


MINIGRID_ENV_ID = "MiniGrid-Empty-8x8-v0"


def tiny_minigrid_model(env_id=MINIGRID_ENV_ID, done_bias=None, seed=0, codec_config=None, view_size=7,
                        codec=None) -> WorldModel:
    """A tiny MiniGrid world model with shaken weights (outputs depend on frames and actions), tagged
    with the env id and codec as trained checkpoints are; done_bias pins the termination logit
    (-20: never terminates, +20: always). codec: another codec's frames (default: the egocentric view)."""
    from envs.minigrid import MiniGridCodec

    codec = codec or MiniGridCodec(view_size)
    torch.manual_seed(seed)
    model = WorldModel(WorldModelConfig(
        vocab_size=codec.vocab_size, frame_shape=codec.frame_shape, num_actions=7, d_model=32, n_layers=2,
        headdim=16, d_state=8, n_heads=2, attn_window=3, backend="torch",
        metadata={"env_id": env_id, "codec": codec_config or codec.config}))
    randomized(model, seed=seed)
    if done_bias is not None:
        with torch.no_grad():
            model.step_head[2].weight[1].zero_()
            model.step_head[2].bias[1] = done_bias
    return model


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Every test runs torch on one thread: the models here are tiny, they run faster on one thread
    than on two busy cores, and a loaded machine cannot slow a test down by oversubscription."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def ctrl_c_delivered():
    """SIGINT handled as in a terminal for the test's duration: a test run in the background (CI, nohup)
    starts with SIGINT ignored, and a stop signal the process ignores stays ignored."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)
