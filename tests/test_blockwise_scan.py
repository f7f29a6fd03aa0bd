import pytest
import torch

from worldsim.block_layout import BlockLayout
from worldsim.mixer import BlockwiseMamba2

from conftest import randomized, tiny_config


@pytest.mark.parametrize("frame,block", [((6, 8), (2, 4)), ((7, 7), (4, 4)), ((5, 6), (5, 6)), ((5, 6), (1, 1))])
def test_to_blocks_and_back_is_the_identity(frame, block):
    layout = BlockLayout(frame, block)
    x = torch.randn(2, 3, *frame, 5)
    seq = layout.to_blocks(x)
    assert seq.shape == (2 * layout.num_blocks, 3 * layout.block_tokens, 5)
    torch.testing.assert_close(layout.from_blocks(seq, batch=2), x, rtol=0, atol=0)
    assert layout.real.sum() == frame[0] * frame[1]


def test_block_sequences_are_spatial_major_time_minor():
    layout = BlockLayout((4, 4), (2, 2))
    # Label every token by (frame, row, col) and read off the order of block 0's sequence.
    t, r, c = torch.meshgrid(torch.arange(3), torch.arange(4), torch.arange(4), indexing="ij")
    labels = torch.stack([t, r, c], -1)[None].float()  # [1, T, H, W, 3]
    block0 = layout.to_blocks(labels)[0].long().tolist()
    expected = [[f, i, j] for f in range(3) for i in range(2) for j in range(2)]
    assert block0 == expected


def test_a_blocks_scan_never_sees_another_block():
    config = tiny_config(frame_shape=(4, 6), block_sizes=[(2, 3)] * 3)
    torch.manual_seed(0)
    mixer = BlockwiseMamba2(config, (2, 3))
    randomized(mixer)
    x = torch.randn(2, 6, 4, 6, config.d_model)
    y, _, _ = mixer(x)
    perturbed = x.clone()
    perturbed[:, 2, 0:2, 0:3] += torch.randn(2, 2, 3, config.d_model)  # block (0, 0) at frame 2
    y2, _, _ = mixer(perturbed)
    changed = (y2 - y).abs().amax(dim=(0, -1)) > 1e-6  # [T, H, W]
    inside = torch.zeros(4, 6, dtype=torch.bool)
    inside[0:2, 0:3] = True
    assert not changed[:, ~inside].any(), "a token outside the perturbed block changed"
    assert not changed[:2].any(), "an earlier frame changed"
    assert changed[3:, inside].all(), "later frames of the perturbed block did not change"


def test_frame_by_frame_mixer_equals_the_parallel_mixer_with_overhanging_blocks():
    # 3x4 blocks on a 5x6 frame: three of the four blocks are partly padding.
    config = tiny_config()
    torch.manual_seed(1)
    mixer = randomized(BlockwiseMamba2(config, (3, 4)))
    x = torch.randn(2, 9, 5, 6, config.d_model)
    y, ssm, conv = mixer(x)
    state = conv_state = None
    for t in range(x.shape[1]):
        yt, state, conv_state = mixer(x[:, t : t + 1], state, conv_state)
        torch.testing.assert_close(yt[:, 0], y[:, t], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state, ssm, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(conv_state, conv)
