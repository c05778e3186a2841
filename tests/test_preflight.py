"""Every entry script checks every file its config names before any work (the quick data check):
one error line, exit code 2, nothing written, in seconds."""

from __future__ import annotations

import subprocess
import time

import pytest


def _run(python, repo_root, script, *sets):
    start = time.perf_counter()
    proc = subprocess.run([python, script, "experiment_template.cfg", *sum((["--set", s] for s in sets), [])],
                          cwd=repo_root, capture_output=True, text=True, timeout=120)
    return proc, time.perf_counter() - start


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train.py", "train_encoder.py", "evaluate.py", "plot_loss_landscape.py"])
def test_a_garbage_validation_file_stops_every_script_before_any_work(tmp_path, python, repo_root, script):
    garbage = tmp_path / "valid.p"
    garbage.write_bytes(b"\x80\x04 not a pickle at all" * 10)
    out = tmp_path / "run"
    proc, seconds = _run(python, repo_root, script, f"Dataset.VALID_DATA_PATH={garbage}",
                         f"Training.OUTPUT_PATH={out}", f"Dataset.CACHE_DIR={tmp_path / 'cache'}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: [Dataset] VALID_DATA_PATH") and "valid.p" in lines[0]
    assert "python -m multipose.app.check_data experiment_template.cfg" in lines[0]
    assert not out.exists() and seconds < 60


@pytest.mark.slow
def test_an_output_path_below_a_file_is_one_line(tmp_path, python, repo_root):
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    proc, _ = _run(python, repo_root, "train.py", f"Training.OUTPUT_PATH={blocker / 'run'}",
                   f"Dataset.CACHE_DIR={tmp_path / 'cache'}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: [Training] OUTPUT_PATH") and "cannot be created" in lines[0]
    assert "NotADirectoryError" not in proc.stderr


@pytest.mark.slow
def test_a_missing_test_set_stops_evaluate_py(tmp_path, python, repo_root):
    proc, _ = _run(python, repo_root, "evaluate.py", f"Evaluation.TEST_DATA_PATH={tmp_path / 'missing.npz'}",
                   f"Training.OUTPUT_PATH={tmp_path / 'run'}")
    assert proc.returncode == 2 and "TEST_DATA_PATH" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
