"""The user-facing contract: entry scripts, the template config and the documentation stay true to the code."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from multipose.config import load_config, num_hypotheses, schema_markdown

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run(python: str, *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([python, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _tiny(tmp_path: Path) -> list[str]:
    return [
        "--set", f"Training.OUTPUT_PATH={tmp_path / 'out'}",
        "--set", f"Dataset.CACHE_DIR={tmp_path / 'cache'}",
        "--set", "Rendering.IMAGE_SIZE=32",
        "--set", "Training.DEVICE=cpu",
    ]


def test_template_config_loads_with_its_documented_values():
    cfg = load_config(REPO_ROOT / "experiment_template.cfg")
    assert num_hypotheses(cfg) == 4
    assert Path(cfg.Dataset.MODEL_PATH_DATA).name == "tless_like_2fold.ply"
    assert (REPO_ROOT / cfg.Dataset.MODEL_PATH_DATA).is_file()


@pytest.mark.slow
def test_preview_runs_on_the_template_and_writes_its_outputs(python, tmp_path):
    result = _run(python, "preview.py", "experiment_template.cfg", *_tiny(tmp_path), "--views", "2")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out" / "preview"
    report = json.loads((out / "preview.json").read_text())
    assert report["loss_faces"] == 800 and report["data_faces"] == 3744
    assert report["difference"]["silhouette_iou"] > 0.98
    assert report["difference"]["mean_abs_depth_mm"] < 0.5
    assert report["image_size"] == 32 and report["depth_gradient"] == "torch"
    with Image.open(out / "preview.png") as image:
        image.verify()
    resolved = load_config(out / "config.cfg")
    assert resolved.Rendering.IMAGE_SIZE == 32
    assert list((tmp_path / "cache" / "meshes").glob("*.npz"))


def test_bad_config_value_is_one_error_line_exit_2_and_no_output(python, tmp_path):
    result = _run(python, "preview.py", "experiment_template.cfg", *_tiny(tmp_path), "--set", "Training.NUM_ITER=many")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "NUM_ITER" in lines[0] and "many" in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_missing_mesh_is_one_error_line_and_no_output(python, tmp_path):
    missing = tmp_path / "nowhere" / "obj_99.ply"
    result = _run(
        python, "preview.py", "experiment_template.cfg", *_tiny(tmp_path),
        "--set", f"Dataset.MODEL_PATH_DATA={missing}", "--set", f"Dataset.MODEL_PATH_LOSS={missing}",
    )
    assert result.returncode == 2  # the pre-flight data check, before any work
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and "obj_99.ply" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_a_gpu_is_a_config_error(python, tmp_path):
    result = _run(python, "preview.py", "experiment_template.cfg", *_tiny(tmp_path), "--set", "Training.DEVICE=cuda")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and "DEVICE" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def _readme() -> str:
    return (REPO_ROOT / "README.md").read_text()


def _user_docs() -> list[Path]:
    """The user documentation: README.md, data/README.md and every docs/*.md."""
    return [REPO_ROOT / "README.md", REPO_ROOT / "data" / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def test_configuration_reference_is_generated_from_the_schema():
    text = (REPO_ROOT / "docs" / "configuration.md").read_text()
    match = re.search(r"<!-- config-reference -->\n(.*?)\n<!-- /config-reference -->", text, re.S)
    assert match, "docs/configuration.md lost its config-reference markers"
    assert match.group(1).strip() == schema_markdown().strip()
    assert "(docs/configuration.md)" in _readme(), "README.md does not link the configuration reference"


@pytest.mark.parametrize("marker", ["main-command", "test-command"])
def test_readme_setup_commands_name_existing_files_and_scripts(marker, python):
    """The two set-up commands install from files that exist and run scripts whose --help works."""
    match = re.search(rf"<!-- {marker} -->\n```bash\n(.*?)\n```\n<!-- /{marker} -->", _readme(), re.S)
    assert match, f"README.md lost its {marker} block"
    command = match.group(1)
    for requirement in re.findall(r"-r (\S+)", command):
        assert (REPO_ROOT / requirement).is_file(), requirement
    for script in re.findall(r"python (\S+\.py)", command):
        assert _run(python, script, "--help").returncode == 0, script
    if marker == "main-command":
        config = re.findall(r"(\S+\.cfg)", command)
        assert config and (REPO_ROOT / config[0]).is_file()


def _doc_commands() -> list[list[str]]:
    """Every `python SCRIPT.py ...` / `python -m MODULE ...` line of the bash blocks of the user
    documentation (README.md, data/README.md, docs/*.md), split."""
    import shlex

    commands = []
    docs = "".join(path.read_text() for path in _user_docs())
    for block in re.findall(r"```bash\n(.*?)```", docs, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part.strip(), comments=True)
                if words and words[0].endswith("python") and len(words) > 1:
                    commands.append(words[1:])
    return commands


def test_readme_table_lists_every_entry_script():
    """The README's table of entry scripts names every ``*.py`` at the repository root (in its first
    column) and the benchmarks."""
    first_cells = [line.split("|")[1] for line in _readme().splitlines() if line.startswith("| `")]
    listed = {name for cell in first_cells for name in re.findall(r"`([\w./*-]+\.py)\b", cell)}
    scripts = {p.name for p in REPO_ROOT.glob("*.py")}
    assert scripts, "no entry scripts found"
    assert scripts <= listed, f"entry scripts missing from the README's table: {sorted(scripts - listed)}"
    assert "benchmarks/*.py" in listed


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("doc", _user_docs(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_documentation_links_resolve(doc):
    """Every relative link of the user documentation names a file of the repository, and every
    #anchor a heading of that file (so nothing points into a section that moved)."""
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        assert linked.exists(), f"{doc.name}: link to a missing file: {target}"
        assert REPO_ROOT in linked.parents or linked == REPO_ROOT, f"{doc.name}: link out of the repository: {target}"
        if anchor:
            assert linked.suffix == ".md", target
            headings = re.findall(r"(?m)^#+ (.+)$", re.sub(r"```.*?```", "", linked.read_text(), flags=re.S))
            assert anchor in {_slug(h) for h in headings}, f"{doc.name}: no heading for #{anchor} in {path or doc.name}"


@pytest.mark.parametrize("doc", _user_docs(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_documentation_names_no_path_outside_the_repository(doc):
    text = doc.read_text()
    for outside in ("../shared", "/work/", "../../"):
        assert outside not in text, f"{doc.name} names a path outside the repository: {outside}"


@pytest.mark.slow
def test_every_documented_command_names_a_script_and_flags_that_exist(python):
    """The documentation cannot drift from the code: each script it runs answers --help, and every
    --flag it passes appears in that help."""
    commands = _doc_commands()
    targets = {tuple(w[:2]) if w[0] == "-m" else (w[0],) for w in commands}
    scripts = {(p.name,) for p in REPO_ROOT.glob("*.py")} | {
        (f"benchmarks/{p.name}",) for p in REPO_ROOT.glob("benchmarks/*.py")
    }
    assert scripts <= targets, f"entry scripts the documentation never shows: {sorted(scripts - targets)}"
    assert ("-m", "multipose.app.check_data") in targets and ("-m", "multipose.config") in targets
    from concurrent.futures import ThreadPoolExecutor

    asked = sorted(targets - {("-m", "pytest")})
    with ThreadPoolExecutor(max_workers=2) as pool:  # short processes (imports): two at once halve the wait
        results = dict(zip(asked, pool.map(lambda target: _run(python, *target, "--help"), asked), strict=True))
    helps: dict[tuple[str, ...], str] = {}
    for target, result in results.items():
        assert result.returncode == 0, f"{' '.join(target)} --help failed: {result.stderr}"
        helps[target] = result.stdout
    for words in commands:
        target = tuple(words[:2]) if words[0] == "-m" else (words[0],)
        if target == ("-m", "pytest"):
            continue
        for flag in (w.split("=")[0] for w in words if w.startswith("--")):
            assert flag in helps[target], f"the docs pass {flag} to {' '.join(target)}, which does not know it"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the check runs for real (minutes)")
def test_gpu_check_refuses_a_machine_without_cuda_before_any_work(python, tmp_path):
    result = subprocess.run(["bash", str(REPO_ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                            timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHON": python, "OUT": str(tmp_path / "g")})
    assert result.returncode != 0 and "error: torch sees no CUDA device" in result.stderr
    assert not (tmp_path / "g" / "summary.tsv").exists() and not (tmp_path / "g" / "template").exists()
