"""The package's shape, checked from its source: which layer may import which (docs/architecture.md), no
import cycle, no module over 450 lines, no function over 60, a comment on every import inside a function, and
the layering note in ``multipose/__init__.py`` written from the same table as these rules."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "multipose"

#: Each layer and the layers it may import (besides itself), top to bottom. ``core.settings`` is the torch-free
#: part of the core that the config layer builds; ``__main__`` modules (``python -m``) are command lines.
LAYERS: dict[str, tuple[str, ...]] = {
    "app": ("tools", "experiment", "config", "training", "evaluation", "inference", "data", "models", "core",
            "core.settings", "infra"),
    "tools": ("experiment", "config", "training", "evaluation", "inference", "data", "models", "core",
              "core.settings", "infra"),
    "experiment": ("config", "training", "evaluation", "inference", "data", "models", "core", "core.settings",
                   "infra"),
    "config": ("core.settings", "infra"),
    "training": ("data", "models", "core", "core.settings", "infra"),
    "evaluation": ("inference", "data", "models", "core", "core.settings", "infra"),
    "inference": ("data", "models", "core", "core.settings", "infra"),
    "data": ("core", "core.settings", "infra"),
    "models": ("core", "core.settings", "infra"),
    "core": ("core.settings", "infra"),
    "core.settings": (),
    "infra": (),
}
#: The layers that never see an experiment config, the run folder or the command line.
CONFIG_FREE = ("training", "evaluation", "inference", "data", "models", "core", "core.settings", "infra")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def layering_note() -> str:
    """The layering note of ``multipose/__init__.py``, written from :data:`LAYERS`."""
    lines = ["Layers, top to bottom (a module imports only its own layer and the ones listed; "
             "tests/test_architecture.py", "checks every import against this table):", ""]
    for layer, allowed in LAYERS.items():
        item = f"- ``{layer}`` -> " + (", ".join(f"``{a}``" for a in allowed) if allowed else "nothing")
        lines += textwrap.wrap(item, width=110, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def layer_of(module: str) -> str:
    """The layer of a ``multipose`` module (``multipose.__init__`` itself: ``infra``, it imports nothing)."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return "app"
    if parts[1:3] == ["core", "settings"]:
        return "core.settings"
    return parts[1] if len(parts) > 1 else "infra"


def imports_of(module: str) -> set[str]:
    """The ``multipose`` modules ``module`` imports, at module level or inside functions (``from pkg import
    sub`` counts as importing the submodule ``pkg.sub``)."""
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("multipose")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if not base.startswith("multipose"):
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return found - {module}


def test_every_import_points_to_an_allowed_layer():
    wrong = []
    for module in MODULES:
        layer = layer_of(module)
        for target in imports_of(module):
            other = layer_of(target)
            if other != layer and other not in LAYERS[layer]:
                wrong.append(f"{module} ({layer}) imports {target} ({other})")
    assert not wrong, "imports against docs/architecture.md's layers:\n" + "\n".join(sorted(wrong))


def test_the_core_never_sees_the_config_the_run_folder_or_the_command_line():
    seen = [(m, t) for m in MODULES if layer_of(m) in CONFIG_FREE for t in imports_of(m)
            if t.split(".")[1] in ("config", "experiment", "app", "tools")]
    assert not seen, f"config-free layers import the config or above: {seen}"


def test_the_rules_catch_an_upward_import(monkeypatch):
    """The checker itself: a data module that imports the config is reported."""
    monkeypatch.setitem(TREES, "multipose.data.views", ast.parse("from multipose.config import Config\n"))
    with pytest.raises(AssertionError, match=r"multipose.data.views \(data\) imports multipose.config"):
        test_every_import_points_to_an_allowed_layer()


def test_no_import_cycle():
    graph = {m: imports_of(m) & MODULES.keys() for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_modules_and_functions_stay_short():
    long_modules = [f"{m}: {n} lines" for m, p in MODULES.items()
                    if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    long_functions = [f"{m}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
                      for m, tree in TREES.items() for node in ast.walk(tree)
                      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long_modules and not long_functions, (long_modules, long_functions)


def test_every_import_inside_a_function_says_why():
    """Imports stay at the top except where they keep ``--help`` or a light import fast; each such one carries
    a comment (on its line or the line above) that says so."""
    silent = []
    for module, tree in TREES.items():
        lines = MODULES[module].read_text().splitlines()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)) and "#" not in lines[sub.lineno - 1] \
                            and not lines[sub.lineno - 2].strip().startswith("#"):
                        silent.append(f"{module}:{sub.lineno}")
    assert not silent, f"imports inside functions without a comment: {silent}"


def test_the_package_docstring_states_the_layers_as_checked():
    doc = ast.get_docstring(TREES["multipose"]) or ""
    assert layering_note() in doc, "multipose/__init__.py: paste tests.test_architecture.layering_note()"


def test_every_module_is_in_a_layer_folder():
    """No module sits flat in ``multipose/`` (the folders show the architecture)."""
    flat = [m for m, p in MODULES.items() if p.parent == PACKAGE and p.name != "__init__.py"]
    assert not flat, flat
    assert {m.split(".")[1] for m in MODULES if m != "multipose"} == {layer.split(".")[0] for layer in LAYERS}


def test_docs_architecture_has_a_row_per_layer_and_folder():
    """docs/architecture.md's table names every layer of :data:`LAYERS` and a folder that exists."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for layer in LAYERS:
        if layer == "core.settings":  # the torch-free part of core/, described in core's row
            assert "`settings.py`" in doc
            continue
        assert f"| `{layer}` | `multipose/{layer}/`" in doc, f"docs/architecture.md: no row for the layer {layer}"
        assert (PACKAGE / layer).is_dir()


def config_handed_below(source: str) -> list[str]:
    """The calls in a script's ``source`` that pass ``cfg`` to a function imported from below the assembly layer."""
    tree = ast.parse(source)
    origin = {}  # imported name -> module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("multipose"):
            for alias in node.names:
                origin[alias.asname or alias.name] = node.module
    local = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    wrong = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        passed = [*node.args, *(k.value for k in node.keywords)]
        if not any(isinstance(a, ast.Name) and a.id == "cfg" for a in passed):
            continue
        root = node.func
        while isinstance(root, ast.Attribute):
            root = root.value
        name = root.id if isinstance(root, ast.Name) else ""
        if name not in local and name in origin and layer_of(origin[name]) not in ("config", "experiment", "tools",
                                                                                     "app"):
            wrong.append(f"line {node.lineno}: {name} ({origin[name]})")
    return wrong


@pytest.mark.parametrize("script", sorted(p.name for p in PACKAGE.parent.glob("*.py")))
def test_an_entry_script_hands_its_config_to_the_assembly_layer_only(script):
    """Each script at the repository root reads its config once (``app.cli``) and passes ``cfg`` only to the
    config, assembly, tools or app layers."""
    assert not config_handed_below((PACKAGE.parent / script).read_text()), script


def test_handing_the_config_to_the_core_is_caught():
    source = "from multipose.data.datasets import TrainingData\n\ndef main(args, cfg):\n    TrainingData(cfg)\n"
    assert config_handed_below(source) == ["line 4: TrainingData (multipose.data.datasets)"]
