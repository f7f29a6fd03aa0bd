"""One wording for a bad count anywhere in the project: the field, the value, what is allowed."""

import numpy as np
import pytest

from worldsim.checks import output_folder, positive_int


@pytest.mark.parametrize("value", [0, -3, 2.7, True, "4", None])
def test_anything_but_a_positive_integer_is_refused(value):
    with pytest.raises(ValueError, match=rf"num_envs must be a positive integer; got {value!r}"):
        positive_int("num_envs", value)


def test_integers_pass_as_plain_ints_and_zero_only_when_allowed():
    assert positive_int("steps", np.int64(5)) == 5 and type(positive_int("steps", np.int64(5))) is int
    assert positive_int("first_seed", 0, allow_zero=True) == 0
    with pytest.raises(ValueError, match="first_seed must be a non-negative integer; got -1"):
        positive_int("first_seed", -1, allow_zero=True)


def test_a_dream_refuses_a_fractional_step_limit():
    from worldsim.dream_env import DreamEnv

    with pytest.raises(ValueError, match="max_episode_steps must be a positive integer; got 2.7"):
        DreamEnv("MiniGrid-Empty-8x8-v0", max_episode_steps=2.7, device="cpu")


def test_an_output_folder_is_made_unless_a_file_is_in_the_way(tmp_path):
    assert output_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()
    assert output_folder(tmp_path / "a") == tmp_path / "a"                    # one already there is fine
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match=f"out '{tmp_path / 'f'}' is a file; expected a folder"):
        output_folder(tmp_path / "f")
    with pytest.raises(KeyError, match=f"--out '{tmp_path / 'f' / 'x'}' cannot be a folder: '{tmp_path / 'f'}' above"):
        output_folder(tmp_path / "f" / "x", "--out", KeyError)
