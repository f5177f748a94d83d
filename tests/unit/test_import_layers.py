"""The import layering of STYLE.md, checked on the source: every ``pruneguard`` import of every module under
src/pruneguard (top level, inside functions and under ``TYPE_CHECKING`` alike), parsed with ``ast``.

    cli -> workflows -> evaluation, reports, scan -> attacks, pruning, quantization, training, defenses
        -> models, data, metrics -> utils (with the top-level modules: errors, registry, config, policy)

A module imports its own package, and packages of its layer or a lower one, never a higher one; the package graph
has no cycle; and beyond the layers:
- attacks do not import training (an attacker's surrogate trains with ``pruneguard.models.fit``);
- scan and defenses do not import each other (scan finds suspects; defenses take what it found through their
  own protocols);
- the cli reaches evaluation, reports and scan only through workflows.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "pruneguard"

# the layer of every package and top-level module; a new one must be placed here before its imports pass
LAYER = {
    "errors": 0,
    "registry": 0,
    "config": 0,
    "config_harden": 0,
    "recipes": 0,  # validated descriptions of purification recipes (pydantic), like the run configs
    "config_model": 0,  # the model-description fields every command's config shares
    "utils": 0,
    "sweeps": 0,  # runs independent units of a sweep (in this process or on Ray), results cached by config
    "models": 1,
    "data": 1,
    "metrics": 1,
    "attacks": 2,
    "pruning": 2,
    "quantization": 2,
    "export": 2,  # ONNX export of a model (checked against PyTorch)
    "training": 2,
    "defenses": 2,
    "__init__": 2,  # the package root registers the built-in attacks, datasets, models and pruners
    "evaluation": 3,
    "reports": 3,
    "scan": 3,
    "policy": 3,  # checks a run's measured figures against the user's rules; knows the registered attacks
    "workflows": 4,
    "cli": 5,
}
FORBIDDEN = {
    ("attacks", "training"),
    ("scan", "defenses"),
    ("defenses", "scan"),
    ("defenses", "evaluation"),
    ("cli", "evaluation"),
    ("cli", "reports"),
    ("cli", "scan"),
}
# (importing module, imported module) pairs allowed against the rules above: none.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """The absolute names of the ``pruneguard`` modules (or names in them) that ``source`` imports, with line."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importing module's package
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            if stem == "pruneguard":  # ``from pruneguard import attacks``: each name is a package
                for alias in node.names:
                    yield f"pruneguard.{alias.name}", node.lineno
            else:
                yield stem, node.lineno


def _package(module: str) -> str:
    """``pruneguard.a.b`` -> ``a``; the package root itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _edges(source: str, module: str, is_package: bool = False) -> list[tuple[str, str, int]]:
    """(imported module, imported package, line) of every import of ``source`` into another pruneguard package."""
    own = _package(module)
    out = []
    for name, line in _imports(source, module, is_package):
        if name == "pruneguard" or not name.startswith("pruneguard."):
            continue
        if (pkg := _package(name)) != own:
            out.append((name, pkg, line))
    return out


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import of ``source`` (the text of ``module``) that runs against the layering, as one line each."""
    own = _package(module)
    found = []
    for name, pkg, line in _edges(source, module, is_package):
        if (module, name) in KNOWN_EXCEPTIONS:
            continue
        if own not in LAYER or pkg not in LAYER:
            unknown = own if own not in LAYER else pkg
            found.append(f"{module}:{line}: {unknown!r} has no layer; place it in LAYER")
        elif LAYER[pkg] > LAYER[own]:
            found.append(f"{module}:{line}: imports {name} ({pkg}, layer {LAYER[pkg]}) from layer {LAYER[own]}")
        elif (own, pkg) in FORBIDDEN:
            found.append(f"{module}:{line}: imports {name}; {own} must not import {pkg}")
    return found


def _sources() -> Iterator[tuple[str, str, bool]]:
    for path in sorted(SRC.rglob("*.py")):
        yield path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py"


def test_every_import_under_src_follows_the_layering() -> None:
    found = [v for source, module, is_pkg in _sources() for v in violations(source, module, is_pkg)]
    assert not found, "imports against the layering:\n" + "\n".join(found)


def test_the_package_graph_has_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for source, module, is_pkg in _sources():
        graph.setdefault(_package(module), set()).update(pkg for _, pkg, _ in _edges(source, module, is_pkg))
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            pytest.fail("import cycle between packages: " + " -> ".join([*path[path.index(node) :], node]))
        if node not in done:
            for nxt in sorted(graph.get(node, ())):
                visit(nxt, [*path, node])
            done.add(node)

    for node in sorted(graph):
        visit(node, [])


def test_every_known_exception_still_occurs() -> None:
    """An exception whose import is gone is removed from KNOWN_EXCEPTIONS, so that it cannot come back unseen."""
    seen = {(module, name) for source, module, is_pkg in _sources() for name, _, _ in _edges(source, module, is_pkg)}
    assert KNOWN_EXCEPTIONS <= seen, f"no longer imported, remove: {sorted(KNOWN_EXCEPTIONS - seen)}"


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("pruneguard.attacks.backdoor.x", "from pruneguard.training.train import train_model", "must not import"),
        ("pruneguard.scan.x", "from pruneguard.defenses.unlearning import unlearn_", "must not import"),
        ("pruneguard.defenses.x", "import pruneguard.scan.reversal", "layer 3"),
        ("pruneguard.defenses.x", "from pruneguard.evaluation import predict", "layer 3"),
        ("pruneguard.models.x", "from pruneguard import attacks", "layer 2"),
        ("pruneguard.utils.x", "def f():\n    from pruneguard.data.tensors import ArrayData", "layer 1"),
        ("pruneguard.cli.scan", "from pruneguard.scan.suspect import vote_suspects", "must not import"),
        ("pruneguard.cli.scan", "from pruneguard.scan.sensitivity import ScanConfig", "must not import"),
        ("pruneguard.cli.train", "from pruneguard.scan.sensitivity import ScanConfig", "must not import"),
        ("pruneguard.data.x", "from ..pruning import anp", "layer 2"),
        ("pruneguard.newpkg.x", "from pruneguard.utils import io", "no layer"),
    ],
)
def test_an_import_against_the_layering_is_reported(module: str, source: str, expected: str) -> None:
    found = violations(source, module)
    assert len(found) == 1 and expected in found[0], found


def test_imports_along_the_layering_pass() -> None:
    assert violations("from pruneguard.workflows.scan import ScanConfig", "pruneguard.cli.scan") == []
    assert violations("from pruneguard.models.fit import fit_", "pruneguard.attacks.backdoor.x") == []
    assert violations("from pruneguard.attacks.backdoor.triggers import stamp", "pruneguard.defenses.x") == []
    assert violations("from . import fit\nfrom .fit import fit_", "pruneguard.models", is_package=True) == []
    assert violations("from pruneguard.training.train import train_model", "pruneguard.scan.x") == []
