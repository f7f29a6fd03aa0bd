"""The focal frame loss: per cell (1 - p)^gamma x cross-entropy, so the cells a model already predicts
weigh little beside the ones it gets wrong; gamma 0 is the plain loss, and bad values are refused."""

import math

import numpy as np
import pytest
import torch

from train.config import TrainConfig, TrainError
from train.losses import prediction_losses
from train.windows import Window
from worldsim.model import WorldModelOutput


def one_frame(confident_right: float, wrong: float):
    """A [1, 1, 1, 2, V=2] prediction: cell 0 right with logit margin `confident_right`, cell 1 wrong
    with margin `wrong`; the true token is 0 in both."""
    logits = torch.tensor([[[[[confident_right, 0.0], [0.0, wrong]]]]])
    out = WorldModelOutput(frame_logits=logits, reward=torch.zeros(1, 1), done_logits=torch.full((1, 1), -5.0),
                           features=torch.zeros(1, 1, 1, 2, 1))
    zeros = torch.zeros(1, 1, 1, 2, dtype=torch.long)
    win = Window(frames=zeros, actions=torch.zeros(1, 1, dtype=torch.long), targets=zeros, target_gap=zeros,
                 rewards=torch.zeros(1, 1), terminated=torch.zeros(1, 1, dtype=torch.bool),
                 has_target=torch.ones(1, 1, dtype=torch.bool), resets=torch.ones(1, 1, dtype=torch.bool),
                 starts=np.zeros(1, dtype=np.int64))
    return out, win


def frame_loss(gamma: float, right: float = 4.0, wrong: float = 2.0) -> float:
    out, win = one_frame(right, wrong)
    one = torch.ones(1, 1)
    return float(prediction_losses(out, win, slice(0, 1), one, one.sum(), focal_gamma=gamma)["frame"])


def test_gamma_zero_is_the_plain_cross_entropy_and_gamma_weighs_each_cell_by_its_error():
    ce = [math.log1p(math.exp(-4.0)), math.log1p(math.exp(2.0))]        # the right cell, the wrong one
    assert frame_loss(0.0) == pytest.approx(sum(ce) / 2, rel=1e-5)
    p = [math.exp(-c) for c in ce]
    assert frame_loss(2.0) == pytest.approx(sum((1 - pi) ** 2 * c for pi, c in zip(p, ce)) / 2, rel=1e-5)
    # The cell already right loses almost all of its weight; the wrong one keeps most of its own.
    share_right = lambda g: ((1 - p[0]) ** g * ce[0]) / frame_loss(g) / 2          # noqa: E731
    assert share_right(2.0) < share_right(0.0) / 100


def test_bad_gamma_is_refused_by_name():
    for bad in (-1.0, 11.0):
        with pytest.raises(TrainError, match="frame_focal_gamma must be in \\[0, 10\\]"):
            TrainConfig(data="x", frame_focal_gamma=bad)
    with pytest.raises(TrainError, match="frame_focal_gamma must be a finite number; got nan"):
        TrainConfig(data="x", frame_focal_gamma=float("nan"))


def test_the_trainer_trains_on_the_focal_loss_and_reports_the_cross_entropy():
    from test_trainer import config, synthetic_data

    from train.trainer import Trainer
    from train.windows import gather_windows

    data = synthetic_data()
    win = gather_windows(data.train, [0, 3], 10)
    grads = []
    for gamma in (0.0, 2.0):
        trainer = Trainer(config(frame_focal_gamma=gamma), data)          # same seed: the same initial model
        trainer.optimizer.zero_grad(set_to_none=True)
        stats = trainer.compute_gradients(win)
        grads.append(([p.grad.clone() for p in trainer.params], stats))
    (plain, plain_stats), (focal, focal_stats) = grads
    assert focal_stats["frame_loss"] == pytest.approx(plain_stats["frame_loss"], rel=1e-6)   # the metric
    assert focal_stats["loss"] < plain_stats["loss"]                                          # what is trained
    assert any(not torch.allclose(a, b) for a, b in zip(plain, focal))
