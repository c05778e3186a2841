"""plot_error_dist.py: the error distribution of evaluations, as the original's tool."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from PIL import Image

from multipose.evaluation.report import read_per_sample, write_table
from multipose.infra.errors import DataError


def _evaluation(folder, head, codebook):
    folder.mkdir()
    n = len(head)
    write_table(folder / "per-sample.csv", {"index": list(range(n)), "vsd_head": head, "vsd_codebook": codebook,
                                            "vsd_hypothesis1": head, "re_head": [10.0] * n, "re_sym_head": [1.0] * n})
    return folder


@pytest.mark.slow
def test_plots_sorted_errors_and_differences(tmp_path, python, repo_root):
    run = _evaluation(tmp_path / "eval", [0.1, 0.5, 0.2, 0.9], [0.3, 0.4, 0.8, 1.0])
    table = read_per_sample(run)
    np.testing.assert_allclose(table["vsd_codebook"], [0.3, 0.4, 0.8, 1.0])
    proc = subprocess.run([python, "plot_error_dist.py", str(run)], cwd=repo_root, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "head: median 0.35" in proc.stdout and "codebook: median 0.6" in proc.stdout
    with Image.open(run / "error-distribution-vsd.png") as image:
        image.verify()
    proc = subprocess.run([python, "plot_error_dist.py", str(run), "--metric", "re", "--methods", "head", "--out",
                           str(tmp_path / "re.png")], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "head: median 10" in proc.stdout and (tmp_path / "re.png").is_file(), proc.stderr
    other = _evaluation(tmp_path / "other", [0.3, 0.4, 0.8, 0.2], [0.3, 0.4, 0.8, 1.0])
    proc = subprocess.run([python, "plot_error_dist.py", str(run), str(other), "--methods", "head", "--out",
                           str(tmp_path / "two.png")], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()[:2]
    assert first.endswith("recall 0.500 (error < 0.3)")  # 0.1 and 0.2
    assert second.endswith(f"recall 0.250 (error < 0.3); only head ({run}) / only this right 2 / 1, McNemar p 1")
    proc = subprocess.run([python, "plot_error_dist.py", str(run), "--threshold", "0.6", "--out",
                           str(tmp_path / "t.png")], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert "codebook: median 0.6, mean 0.625 over 4 instances; recall 0.500 (error < 0.6); only head / only this " \
           "right 1 / 0, McNemar p 1" in proc.stdout, proc.stdout
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    write_table(shifted / "per-sample.csv", {"index": [1, 2, 3, 4], "vsd_head": [0.1, 0.5, 0.2, 0.9]})
    proc = subprocess.run([python, "plot_error_dist.py", str(run), str(shifted), "--methods", "head"], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "hold different test instances" in proc.stderr
    bad = subprocess.run([python, "plot_error_dist.py", str(run), "--methods", "stored"], cwd=repo_root,
                         capture_output=True, text=True, timeout=120)
    assert (
        bad.returncode == 1
        and bad.stderr.startswith("error:")
        and "it has the methods ['codebook', 'head']" in bad.stderr
    )


def test_a_folder_without_an_evaluation_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found; give an evaluation folder"):
        read_per_sample(tmp_path)
