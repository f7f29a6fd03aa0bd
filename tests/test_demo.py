from pathlib import Path

from train.cli import main


def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "worldsim/MiniGrid-Empty-8x8-Dream-v0" in printed and "PPO trained in dream" in printed
    gif = tmp_path / "dream_vs_real.gif"
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    assert (tmp_path / "learned_vs_real" / "learned_vs_real.json").is_file()
    assert Path(tmp_path / "learned_vs_real" / "seed_0" / "dream" / "policy.zip").is_file()
