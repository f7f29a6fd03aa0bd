from train.cli import main


def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "heldout_next_frame_accuracy" in printed
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
