"""The Slurm example (cluster/slurm-train.sbatch) and the README's multi-GPU commands stay true: valid bash,
one task per node, torchrun with the job's nodes, one process per GPU and a c10d rendezvous, on train.py."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "cluster" / "slurm-train.sbatch"


def _sbatch_options(text: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", text, re.M))


def _torchrun(text: str) -> list[str]:
    command = re.search(r"^srun (torchrun .*?)$(?![\s\S]*^srun)", text.replace("\\\n", " "), re.M | re.S)
    assert command, "no srun torchrun line"
    return shlex.split(command.group(1))


def test_the_slurm_example_is_bash_with_one_torchrun_per_node_on_train_py():
    text = SCRIPT.read_text()
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    options = _sbatch_options(text)
    assert options["ntasks-per-node"] == "1" and int(options["nodes"]) >= 1 and "gpus-per-node" in options
    words = _torchrun(text)
    flags = dict(w.split("=", 1) for w in words if w.startswith("--") and "=" in w)
    assert flags["--nnodes"] == "$SLURM_JOB_NUM_NODES" and flags["--rdzv_backend"] == "c10d"
    assert flags["--nproc_per_node"] == "$gpus_per_node" and flags["--rdzv_endpoint"].endswith(":29500")
    script = words[words.index("train.py")]
    assert (REPO_ROOT / script).is_file() and words[words.index("train.py") + 1] == "$config"


def test_the_readme_shows_the_multi_gpu_commands_and_the_slurm_example():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Multi-GPU and clusters", 1)[1].split("\n## ", 1)[0]
    assert "torchrun --standalone --nproc_per_node=" in section and "train.py" in section
    assert "sbatch cluster/slurm-train.sbatch" in section
