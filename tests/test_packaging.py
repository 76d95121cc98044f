"""pyproject.toml tells the truth about what the code needs (a cheap guard: pip trusts these
floors, so a wrong one installs a mlcompare that fails at import or on its first run)."""
import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# import name -> distribution name, where they differ
DISTRIBUTION = {"PIL": "pillow", "sklearn": "scikit-learn", "faiss": "faiss-cpu",
                "pytorch_metric_learning": "pytorch-metric-learning"}


def floor(spec: str) -> tuple[int, ...]:
    """``(2, 0)`` from ``>=2.0`` (the only form of floor pyproject.toml uses)."""
    found = re.search(r">=\s*([0-9]+(?:\.[0-9]+)*)", spec)
    assert found, f"no >= floor in {spec!r}"
    return tuple(int(part) for part in found.group(1).split("."))


def requirement(name: str, requirements: list[str]) -> str:
    matches = [r for r in requirements if re.match(rf"{re.escape(name)}\b(?![-_])", r)]
    assert matches, f"{name} is not in {requirements}"
    return matches[0]


def test_requires_python_is_at_least_3_11_for_tomllib():
    assert floor(PROJECT["requires-python"]) >= (3, 11)


@pytest.mark.parametrize("name, minimum, why", [
    ("numpy", (2, 0), "np.trapezoid"),
    ("torch", (2, 3), "torch.amp.GradScaler(device)"),
    ("optuna", (4,), "the hyper-parameter search"),
])
def test_dependency_floors_cover_what_the_code_calls(name, minimum, why):
    assert floor(requirement(name, PROJECT["dependencies"])) >= minimum, why


def test_every_third_party_import_of_the_packages_is_a_dependency():
    declared = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in PROJECT["dependencies"]}
    # an optional feature's import (onnx, tensorboard, timm, ...) is declared in its extra
    declared |= {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower()
                 for extra in PROJECT.get("optional-dependencies", {}).values() for r in extra} - {"mlcompare"}
    local = {"mlcompare", "evaluations", "miners"}
    missing = set()
    for package in local:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for top in {name.split(".")[0] for name in names} - local - set(sys.stdlib_module_names):
                    if DISTRIBUTION.get(top, top).lower() not in declared:
                        missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, f"imported but not in [project] dependencies: {sorted(missing)}"


def test_ci_runs_the_readme_test_command_verbatim():
    # The README's second command block is the test command; CI must run that very line.
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    command = blocks[1].strip()
    assert command == 'pip install -e ".[test]" && python -m pytest -q'
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_package_and_the_comparison_files_are_installed():
    """The sub-packages (mlcompare.run, mlcompare.report, ...) and comparisons/*.toml are in the wheel:
    setuptools' ``find`` takes the packages whose dotted names match ``include`` (fnmatch)."""
    from fnmatch import fnmatchcase

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = setuptools["packages"]["find"]["include"]
    packages = {".".join(p.parent.relative_to(ROOT).parts) for top in ("mlcompare", "miners", "evaluations")
                for p in (ROOT / top).rglob("__init__.py")}
    assert {"mlcompare.run", "mlcompare.report", "mlcompare.config", "mlcompare.use"} <= packages
    assert [p for p in sorted(packages) if not any(fnmatchcase(p, pattern) for pattern in include)] == []
    shipped = {path for pattern in setuptools["package-data"]["mlcompare"] for path in (ROOT / "mlcompare").glob(pattern)}
    assert shipped == set((ROOT / "mlcompare").rglob("*.toml")) and len(shipped) > 10  # every comparison file
