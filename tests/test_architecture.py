"""The package layout holds: no import cycle, no reach into another module's private names, each package
imports only from the layers below it (so training code imports nothing of the report), and ``miners`` /
``evaluations`` stand alone (the map is in ``mlcompare/__init__.py``'s docstring).

Read from the source with :mod:`ast`, nothing is imported. Every import counts, a function's lazy one
too (a lazy import hides a cycle from Python at import time, not from the reader); ``if TYPE_CHECKING:``
blocks count as well. Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first, so an
import also depends on the target's packages, except those that hold the importer itself.
The checker is tried on small constructed packages below, so that each rule is seen to fail.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mlcompare", "miners", "evaluations")
# (importer prefix, imported prefix) pairs that must never appear: training and its run directory come
# before the report; the standalone packages know nothing of mlcompare.
FORBIDDEN = tuple((low, "mlcompare.report") for low in ("mlcompare.run", "mlcompare.train", "mlcompare.tune")) + (
    ("miners", "mlcompare"), ("evaluations", "mlcompare"))
# mlcompare's layers, bottom first: a module imports from its own package or from a lower layer.
LAYERS = (("mlcompare",), ("mlcompare.errors", "mlcompare.doctor"), ("mlcompare.config",), ("mlcompare.files",),
          ("mlcompare.data", "mlcompare.losses", "mlcompare.backbones"), ("mlcompare.train",), ("mlcompare.run",),
          ("mlcompare.tune", "mlcompare.use", "mlcompare.report"), ("mlcompare.cli",), ("mlcompare.__main__",))
# The one way up: a comparison file's loss, miner and backbone names are checked against their registries
# when it is loaded, inside the checks (function-level imports), so that the config itself loads without torch.
UPWARD = (("mlcompare.config.comparison", "mlcompare.losses"), ("mlcompare.config.comparison", "mlcompare.backbones"))


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the module imported (a module of ours)
    line: int
    lazy: bool = False  # inside a function


@dataclass(frozen=True)
class Reach:
    importer: str
    owner: str  # the module whose private name is used
    name: str
    line: int


def find_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root / package``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _absolute(node: ast.ImportFrom, importer: str, modules: dict[str, Path]) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if _is_package(importer, modules) else importer.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def read_imports(modules: dict[str, Path]) -> tuple[list[Import], list[Reach]]:
    """Every import of one of ``modules`` by another, and every private name one takes from another."""
    imports, reaches = [], []
    for importer, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        bound: dict[str, str] = {}  # local name -> our module it names (for ``module._name``)
        lazy = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        imports.append(Import(importer, alias.name, node.lineno, id(node) in lazy))
                        bound[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node, importer, modules)
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:  # from package import module
                        imports.append(Import(importer, f"{source}.{alias.name}", node.lineno, id(node) in lazy))
                        bound[alias.asname or alias.name] = f"{source}.{alias.name}"
                    elif source in modules:
                        imports.append(Import(importer, source, node.lineno, id(node) in lazy))
                        if _private(alias.name) and source != importer:
                            reaches.append(Reach(importer, source, alias.name, node.lineno))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                owner = _dotted(node.value, bound)
                if owner in modules and owner != importer:
                    reaches.append(Reach(importer, owner, node.attr, node.lineno))
    return imports, reaches


def _dotted(node: ast.expr, bound: dict[str, str]) -> str | None:
    """The module an expression like ``losses.pml`` names, through the names imports bound."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, bound)
        return f"{base}.{node.attr}" if base else None
    return None


def dependencies(imports: list[Import], modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules importing it runs: the target and the target's packages outside the importer's own."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for i in imports:
        parts = i.target.split(".")
        for n in range(1, len(parts) + 1):
            target = ".".join(parts[:n])
            own = i.importer == target or i.importer.startswith(target + ".")
            if target in modules and target != i.importer and not own:
                graph[i.importer].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def forbidden(imports: list[Import], rules=FORBIDDEN) -> list[Import]:
    def within(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    return [i for i in imports for low, high in rules if within(i.importer, low) and within(i.target, high)]


def _layer(name: str, layers) -> tuple[int, str] | None:
    """(layer, package) of the longest prefix of ``name`` that the layers list."""
    found = [(len(prefix), i, prefix) for i, layer in enumerate(layers) for prefix in layer
             if name == prefix or name.startswith(prefix + ".")]
    return max(found)[1:] if found else None


def upward(imports: list[Import], layers=LAYERS, allowed=UPWARD) -> list[Import]:
    """Imports of a module in a higher layer, or in another package of the same layer; ``allowed``
    (importer, target prefix) pairs only inside functions."""
    wrong = []
    for i in imports:
        low, high = _layer(i.importer, layers), _layer(i.target, layers)
        if low is None or high is None or low[1] == high[1] or high[0] < low[0]:
            continue
        if i.lazy and any(i.importer == a and (i.target == b or i.target.startswith(b + ".")) for a, b in allowed):
            continue
        wrong.append(i)
    return wrong


def problems(root: Path, packages: Iterable[str] = PACKAGES, rules=FORBIDDEN, layers=LAYERS) -> list[str]:
    """One line per broken rule in the packages under ``root`` (empty: the layout holds)."""
    modules = find_modules(root, packages)
    imports, reaches = read_imports(modules)
    lines = [f"import cycle: {' <-> '.join(c)}" for c in cycles(dependencies(imports, modules))]
    lines += [f"{r.importer} (line {r.line}) uses {r.owner}.{r.name}, a private name" for r in reaches]
    lines += [f"{i.importer} (line {i.line}) imports {i.target}" for i in forbidden(imports, rules)]
    lines += [f"{i.importer} (line {i.line}) imports {i.target}, a layer above it" for i in upward(imports, layers)]
    return lines


def test_the_packages_keep_their_layout():
    assert problems(ROOT) == []


def test_the_checker_reads_every_module_of_the_packages():
    modules = find_modules(ROOT, PACKAGES)
    assert {"mlcompare", "mlcompare.cli", "mlcompare.run.runner", "mlcompare.report.render", "miners",
            "evaluations"} <= set(modules)
    imports, _ = read_imports(modules)
    graph = dependencies(imports, modules)
    # module-level and lazy imports both count, and a package's __init__ counts for its submodules
    assert {"mlcompare.train.trainer", "mlcompare.run.saved", "mlcompare.losses"} <= graph["mlcompare.run.runner"]
    assert "mlcompare.report.render" in graph["mlcompare.cli"]  # imported inside a function


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


GOOD = {"pkg/__init__.py": "", "pkg/low.py": "def _helper():\n    return 1\n\nVALUE = 1\n",
        "pkg/high.py": "from pkg.low import VALUE\nfrom pkg import low\n\nx = low.VALUE\n",
        "pkg/run/__init__.py": "", "pkg/run/a.py": "from . import b\n", "pkg/run/b.py": "from ..low import VALUE\n",
        "pkg/report/__init__.py": "", "pkg/report/draw.py": "from pkg.run import a\n",
        "other/__init__.py": "import json\n"}
RULES = (("pkg.run", "pkg.report"), ("other", "pkg"))
TOY_LAYERS = (("pkg", "pkg.low"), ("pkg.run",), ("pkg.high", "pkg.report"))


def test_a_layout_that_holds_has_no_problems(tmp_path):
    assert problems(write(tmp_path, GOOD), ("pkg", "other"), RULES, TOY_LAYERS) == []


@pytest.mark.parametrize("changed, problem", [
    ({"pkg/low.py": "def f():\n    from pkg import high\n"}, "import cycle: pkg.high <-> pkg.low"),
    ({"pkg/run/b.py": "from . import a\n"}, "import cycle: pkg.run.a <-> pkg.run.b"),
    # a package's __init__ that imports its submodule's importer closes a cycle
    ({"pkg/run/__init__.py": "from pkg import high\n", "pkg/high.py": "import pkg.run.a\n"},
     "import cycle: pkg.high <-> pkg.run"),
    ({"pkg/high.py": "from pkg.low import _helper\n"}, "pkg.high (line 1) uses pkg.low._helper, a private name"),
    ({"pkg/high.py": "from pkg import low\n\nlow._helper()\n"}, "pkg.high (line 3) uses pkg.low._helper, a private name"),
    ({"pkg/high.py": "import pkg.low\n\npkg.low._helper()\n"}, "pkg.high (line 3) uses pkg.low._helper, a private name"),
    ({"pkg/run/a.py": "def f():\n    from pkg.report import draw\n"}, "pkg.run.a (line 2) imports pkg.report.draw"),
    ({"other/__init__.py": "from pkg.low import VALUE\n"}, "other (line 1) imports pkg.low"),
    ({"pkg/run/b.py": "import pkg.high\n"}, "pkg.run.b (line 1) imports pkg.high, a layer above it"),
    ({"pkg/report/draw.py": "def f():\n    from pkg import high\n"}, "pkg.report.draw (line 2) imports pkg.high, a layer above it"),
])
def test_each_rule_fails_on_a_constructed_violation(tmp_path, changed, problem):
    assert problem in problems(write(tmp_path, GOOD | changed), ("pkg", "other"), RULES, TOY_LAYERS)
