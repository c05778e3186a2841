"""Every entry script under torchrun (CPU, gloo, 2 processes): the same head, encoder losses, caches,
datasets, evaluation and landscape as one process; resuming with another world size; global batch norm;
and one error line (no hang) when the input is bad."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.data import SCHEMA_HEAD_DEFAULTS

from multipose.infra.checkpoint import CheckpointStore
from multipose.infra.distributed import Dist, GlobalBatchNorm1d

REPO_ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _args(shared: Path, out: Path, epochs: int) -> list[str]:
    overrides = [
        f"Dataset.ENCODER_WEIGHTS={shared / 'encoder.pt'}", f"Dataset.CACHE_DIR={shared / 'cache'}",
        "Dataset.CROP_SIZE=32", "Dataset.NOOF_TRAINING_IMGS=16", "Dataset.NOOF_VALID_IMGS=6", "Dataset.NOOF_BG_IMGS=8",
        "Rendering.IMAGE_SIZE=24", "Rendering.LOSS_MESH_FACES=300", "Rendering.VIEWS=2", f"Training.OUTPUT_PATH={out}",
        f"Training.NUM_ITER={epochs}", "Training.NUM_SAMPLES=16", "Training.BATCH_SIZE=7", *SCHEMA_HEAD_DEFAULTS,
        "Training.SAVE_IMAGES=false", "Training.DEVICE=cpu", "Training.VIEW_SAMPLING=sundermeyer-random-hard",
        "Evaluation.AFTER_TRAINING=false",
    ]
    return ["train.py", "experiment_template.cfg", *sum((["--set", o] for o in overrides), [])]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # every run here takes well under a minute; the limit only bounds a hang (see process_group)
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, env=env)


def _state(out: Path) -> dict:
    state, _ = CheckpointStore(out / "models").load_latest()
    return state


def test_shards_cover_a_batch_in_order():
    for n, world in ((7, 2), (8, 3), (2, 2)):
        rows = [list(range(n))[Dist(rank=r, world_size=world).shard(n)] for r in range(world)]
        assert sum(rows, []) == list(range(n)) and max(map(len, rows)) - min(map(len, rows)) <= 1


def test_global_batch_norm_is_batch_norm_with_one_process():
    torch.manual_seed(1)
    plain = torch.nn.BatchNorm1d(5)
    glob = GlobalBatchNorm1d(5)
    glob.load_state_dict(plain.state_dict())
    x = torch.randn(9, 5)
    torch.testing.assert_close(glob(x), plain(x))
    torch.testing.assert_close(glob.running_var, plain.running_var)


@pytest.mark.slow
def test_a_step_on_two_shards_has_the_gradients_of_the_whole_batch():
    """One step of the head under torchrun with 2 processes (shards of 4 and 3 of a batch of 7): DDP with the
    global batch norm and the loss scaled as in training gives the whole batch's gradients (relative 1e-4;
    measured 7e-6) and running statistics; per-shard batch norm gives ~20 (measured)."""
    done = _run([*TORCHRUN, str(REPO_ROOT / "tests" / "support" / "ddp_step.py")])
    assert done.returncode == 0, done.stderr[-3000:]
    gradients, stats = (float(v) for v in re.findall(r"difference ([0-9.e+-]+); running statistics ([0-9.e+-]+)",
                                                     done.stdout)[0])
    assert gradients < 1e-4 and stats < 1e-6, done.stdout


@pytest.mark.slow
def test_two_processes_train_like_one_and_resume_with_one(shared, tmp_path):
    """train.py under torchrun with 2 CPU processes draws the batches of a 1-process run and ends at its
    validation losses (relative 1e-2 after 2 epochs; Adam turns the rounding noise of directions the loss does
    not see -- biases before batch norm, the 6D vectors' scale -- into steps of +-lr, so single weights differ
    by up to ~lr per step); a checkpoint of the 2-process run resumes with 1 process. Each run renders its own
    view cache and validation set: the ranks render their shares of the batches (offsets and lights drawn in
    the same order), rank 0 assembles and writes them, the same file contents as one process's."""
    import numpy as np

    def own_cache(args: list[str], name: str) -> list[str]:
        args[args.index(f"Dataset.CACHE_DIR={shared / 'cache'}")] = f"Dataset.CACHE_DIR={tmp_path / name / 'cache'}"
        return args

    one = _run([sys.executable, *own_cache(_args(shared, tmp_path / "one", 2), "one")])
    assert one.returncode == 0, one.stderr
    two = _run([*TORCHRUN, *own_cache(_args(shared, tmp_path / "two", 2), "two")])
    assert two.returncode == 0, two.stderr[-3000:]
    assert "[rank 1]" not in two.stderr and _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"),
                                                                                        rel=1e-2)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    for name in ("cache/views/*.npz", "validation.npz"):
        (a,), (b,) = ((tmp_path / run).glob(name) for run in ("one", "two"))
        one_arrays, two_arrays = _arrays(a), _arrays(b)
        assert one_arrays.keys() == two_arrays.keys()
        for key in one_arrays.keys() - {"meta"}:  # meta: the resolved config, whose paths differ
            np.testing.assert_array_equal(one_arrays[key], two_arrays[key], err_msg=f"{name}: {key}")
    first = _run([*TORCHRUN, *_args(shared, tmp_path / "resumed", 1)])
    assert first.returncode == 0, first.stderr[-3000:]
    rest = _run([sys.executable, *_args(shared, tmp_path / "resumed", 2)])  # 2 processes -> 1
    assert rest.returncode == 0, rest.stderr
    assert _state(tmp_path / "resumed")["epoch"] == 2
    assert _losses(tmp_path / "resumed") == pytest.approx(_losses(tmp_path / "one"), rel=1e-2)


def _losses(out: Path) -> list[float]:
    rows = (out / "validation-loss.csv").read_text().splitlines()[1:]
    return [float(r.split(",")[1]) for r in rows]


@pytest.mark.slow
def test_a_bad_input_ends_every_rank_with_one_error_line(shared, tmp_path):
    bad = _run([*TORCHRUN, *_args(shared, tmp_path / "bad", 1), "--set", f"Dataset.ENCODER_WEIGHTS={tmp_path}/no.pt"])
    assert bad.returncode != 0
    assert "error:" in bad.stderr and "no.pt" in bad.stderr
    assert not (tmp_path / "bad" / "models").exists()


@pytest.mark.slow
def test_one_rank_given_a_bad_file_ends_the_job_with_its_error_and_no_hang(tmp_path):
    """Rank 1 fails on a damaged file after the process group formed, while rank 0 waits for it in a
    collective: torchrun ends the job within seconds (not the 30-minute collective timeout), non-zero, with
    rank 1's one-line error tagged with its rank."""
    import time

    from multipose.data.io import SampleSet, save_samples

    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    save_samples(good, SampleSet(images=torch.rand(2, 3, 16, 16), R=torch.eye(3).expand(2, 3, 3).clone()))
    bad.write_bytes(good.read_bytes()[:200])
    started = time.perf_counter()
    done = _run([*TORCHRUN, str(REPO_ROOT / "tests" / "support" / "one_rank_fails.py"), "experiment_template.cfg",
                 str(good), str(bad)])
    assert done.returncode != 0 and time.perf_counter() - started < 120
    assert re.search(r"(?m)^\[rank 1\] error: .*bad\.npz", done.stderr), done.stderr[-3000:]


@pytest.mark.slow
def test_kill_9_of_the_whole_torchrun_job_then_the_same_command_gives_the_uninterrupted_weights(shared, tmp_path):
    """The 2-process run is deterministic (bitwise): kill -9 of torchrun and its workers after the first
    checkpoint, the same command again, and the weights are those of a run never killed."""
    import signal
    import time

    command = [*TORCHRUN, *_args(shared, tmp_path / "reference", 4)]
    assert _run(command).returncode == 0
    killed = [*TORCHRUN, *_args(shared, tmp_path / "killed", 4)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(killed, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "models" / "model-epoch1.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert max(CheckpointStore(tmp_path / "killed" / "models").epochs()) < 4  # it really was cut short
    rerun = _run(killed)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    reference, resumed = _state(tmp_path / "reference"), _state(tmp_path / "killed")
    assert reference["epoch"] == resumed["epoch"] == 4
    for key, value in reference["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


@pytest.mark.slow
def test_evaluate_py_under_torchrun_scores_shares_and_writes_what_one_process_writes(shared, tmp_path):
    """2 processes render the synthetic test set and the codebook together (each its share of the batches),
    score 3 and 2 of 5 test samples: the same codebook, recall, per-sample errors and results file as 1
    process."""
    import json

    train = _args(shared, tmp_path / "run", 1)
    assert _run([sys.executable, *train]).returncode == 0
    extra = ["--set", "Evaluation.CODEBOOK_VIEWS=12", "--set", "Evaluation.CODEBOOK_INPLANE=2",
             "--set", "Evaluation.BATCH_SIZE=5", "--set", "Evaluation.VSD_MESH_FACES=300", "--num-samples", "5",
             "--baseline", "codebook"]
    evaluate = ["evaluate.py", *train[1:], *extra]
    one = _run([sys.executable, *evaluate, "--out", str(tmp_path / "one"), "--set", f"Dataset.CACHE_DIR={tmp_path}/c1"])
    assert one.returncode == 0, one.stderr
    two = _run([*TORCHRUN, *evaluate, "--out", str(tmp_path / "two"), "--set", f"Dataset.CACHE_DIR={tmp_path}/c2"])
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("VSD recall") == 1  # rank 0 alone reports
    from multipose.models import Codebook

    (book1,), (book2,) = ((tmp_path / c / "codebooks").glob("*.pt") for c in ("c1", "c2"))
    torch.testing.assert_close(Codebook.load(book2).codes, Codebook.load(book1).codes, rtol=0, atol=1e-6)
    a, b = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("one", "two"))
    assert a["recall"] == b["recall"] and a["mean_vsd"] == pytest.approx(b["mean_vsd"], abs=1e-6)
    from multipose.evaluation.report import read_per_sample

    for column, values in read_per_sample(tmp_path / "one").items():
        assert values == pytest.approx(read_per_sample(tmp_path / "two")[column], abs=1e-4), column
    rows = [(tmp_path / run / "multipose_synthetic-test.csv").read_text().splitlines() for run in ("one", "two")]
    assert [r.split(",")[:3] for r in rows[0]] == [r.split(",")[:3] for r in rows[1]]


def _encoder_args(shared: Path, out: Path, iterations: int, extra: list[str] | None = None) -> list[str]:
    overrides = [
        f"Dataset.CACHE_DIR={shared / 'cache'}", "Dataset.ENCODER_WEIGHTS=auto", "Dataset.NOOF_TRAINING_IMGS=24",
        "Dataset.NOOF_BG_IMGS=8", "Encoder.CHANNELS=[8, 8, 16, 16]", "Encoder.LATENT_SIZE=16", "Encoder.BATCH_SIZE=7",
        f"Encoder.NUM_ITER={iterations}", "Encoder.SAVE_INTERVAL=2", "Encoder.LOG_INTERVAL=1",
        f"Training.OUTPUT_PATH={out}", "Training.DEVICE=cpu", "Training.SAVE_IMAGES=false", *(extra or []),
    ]
    return ["train_encoder.py", "experiment_template.cfg", *sum((["--set", o] for o in overrides), [])]


@pytest.mark.slow
def test_encoder_pretraining_under_torchrun_follows_one_process(shared, tmp_path):
    """train_encoder.py with 2 processes (shards of 4 and 3 of 7 crops; batch norm 2D over the global batch)
    logs the reconstruction losses of 1 process (relative 1e-3 over 6 iterations) and rank 0 alone writes
    the encoder and the checkpoints."""
    import numpy as np

    one = _run([sys.executable, *_encoder_args(shared, tmp_path / "one", 6)])
    assert one.returncode == 0, one.stderr
    own_cache = [f"Dataset.CACHE_DIR={tmp_path / 'cache'}"]  # the ranks render the views and targets together
    two = _run([*TORCHRUN, *_encoder_args(shared, tmp_path / "two", 6, own_cache)])
    assert two.returncode == 0, two.stderr[-3000:]
    (targets,) = (tmp_path / "cache" / "views").glob("*-targets.npz")
    with np.load(targets) as made, np.load(shared / "cache" / "views" / targets.name) as reference:
        np.testing.assert_array_equal(made["rgb"], reference["rgb"])
    losses = [[float(r.split(",")[1]) for r in (tmp_path / run / "encoder" / "train-loss.csv").read_text()
               .splitlines()[1:]] for run in ("one", "two")]
    assert len(losses[0]) == 6 and losses[1] == pytest.approx(losses[0], rel=1e-3)
    assert (tmp_path / "two" / "encoder.pt").is_file() and two.stdout.count("done:") == 1
    assert CheckpointStore(tmp_path / "two" / "encoder", prefix="encoder").epochs() == [4, 6]


def _arrays(path: Path) -> dict:
    import numpy as np

    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.slow
def test_generate_dataset_and_the_landscape_under_torchrun_write_what_one_process_writes(shared, tmp_path):
    """generate_dataset.py: the ranks render 2 and 1 batches of 70 crops (seeded draws in batch order), rank 0
    writes the file one process writes. plot_loss_landscape.py: 22 points x 2 in-plane angles in batches of 7,
    shared out and gathered: the losses of one process (relative 1e-6) and the same files."""
    import numpy as np

    def generated(launch: list[str], name: str) -> dict:
        out = tmp_path / f"{name}.npz"
        done = _run([*launch, "generate_dataset.py", "experiment_template.cfg", "--num-samples", "70",
                     "--out", str(out), "--set", f"Dataset.ENCODER_WEIGHTS={shared / 'encoder.pt'}",
                     "--set", "Dataset.CROP_SIZE=32", "--set", "Training.DEVICE=cpu"])
        assert done.returncode == 0, done.stderr[-3000:]
        return _arrays(out)

    one, two = generated([sys.executable], "one"), generated(TORCHRUN, "two")
    assert one.keys() == two.keys() and one["images"].shape == (70, 32, 32, 3)
    for key in one:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)

    def landscape(launch: list[str], name: str) -> Path:
        overrides = [f"Training.OUTPUT_PATH={tmp_path / name}", "Training.DEVICE=cpu", "Training.SAVE_IMAGES=true",
                     "Rendering.IMAGE_SIZE=24", "Rendering.LOSS_MESH_FACES=300", "Rendering.VIEWS=2",
                     f"Dataset.CACHE_DIR={tmp_path / 'cache'}", "Sampling.NUM_SAMPLES=23", "Sampling.INPLANE_STEPS=2",
                     "Sampling.BATCH_SIZE=7"]
        done = _run([*launch, "plot_loss_landscape.py", "experiment_template.cfg",
                     *sum((["--set", o] for o in overrides), [])])
        assert done.returncode == 0, done.stderr[-3000:]
        return tmp_path / name

    single, double = landscape([sys.executable], "land1"), landscape(TORCHRUN, "land2")
    assert sorted(p.name for p in single.iterdir()) == sorted(p.name for p in double.iterdir())
    losses = np.load(double / "losses.npy")
    assert losses.shape == (22, 2)  # the equal-area points closest to 23 requested
    np.testing.assert_allclose(losses, np.load(single / "losses.npy"), rtol=1e-6)
    np.testing.assert_array_equal(np.load(double / "depths.npy"), np.load(single / "depths.npy"))


@pytest.mark.slow
def test_bop19_recalls_under_torchrun_are_those_of_one_process(tmp_path):
    """PROTOCOL bop19 on the tiny 2-scene split: each rank scores its share of the 8 targets and matches its
    share of the 6 images; the summed hits give one process's average recalls. Launched with the multi-node
    form of the documentation (c10d rendezvous at an endpoint), here one node."""
    import json
    import socket

    from support.data import write_bop19_dataset

    split = write_bop19_dataset(tmp_path / "bop")["split"]
    script = str(REPO_ROOT / "tests" / "support" / "bop19_eval.py")
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    multi_node = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                  "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}"]
    ar = []
    for launch, name in (([sys.executable], "one"), (multi_node, "two")):
        done = _run([*launch, script, str(split), str(tmp_path / name), str(tmp_path / "cache")])
        assert done.returncode == 0, done.stderr[-3000:]
        ar.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert ar[0]["num_targets"] == 8 and ar[1] == pytest.approx(ar[0], abs=1e-9)
    assert (tmp_path / "two" / "multipose_tless-test.csv").read_text().count("\n") == 9


@pytest.mark.slow
def test_fresh_renders_per_batch_are_shared_out_and_give_one_process_batches(tmp_path):
    """Without a view cache (NOOF_TRAINING_IMGS: 0) each rank renders its rows of every batch (views and
    reconstruction targets) and all get them: the batches are bitwise those of one process."""
    done = _run([*TORCHRUN, str(REPO_ROOT / "tests" / "support" / "fresh_batches.py"), str(tmp_path / "cache")])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "batches 2 identical True" in done.stdout, done.stdout
