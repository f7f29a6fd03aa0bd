from pathlib import Path

from train.cli import main


def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--device", "cpu", "--seed", "2", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "worldsim/MiniGrid-Empty-8x8-Dream-v0" in printed and "PPO trained in dream" in printed
    assert "1 torch thread" in printed
    # progress lines: at least the closing line of each agent's training
    assert "PPO in the real env: 1,024/1,024 steps" in printed and "PPO in the dream: 1,024/1,024 steps" in printed
    assert "samples each policy's actions" in printed
    gif = tmp_path / "dream_vs_real.gif"
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    assert (tmp_path / "learned_vs_real" / "learned_vs_real.json").is_file()
    assert Path(tmp_path / "learned_vs_real" / "seed_2" / "dream" / "policy.zip").is_file()


def test_demo_refuses_a_bad_thread_count(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--threads", "0"]) == 2
    assert "threads must be a positive integer; got 0" in capsys.readouterr().err
