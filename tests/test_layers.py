"""The order of the packages (docs/decisions/, "Package order"), checked on every import in the tree,
function-local ones included, so that no upward import or cycle can come back hidden in a function body."""

from __future__ import annotations

import ast
from pathlib import Path
import pytest

pytestmark = pytest.mark.fast   # no export: the fast tier (pytest -m fast)

ROOT = Path(__file__).resolve().parent.parent
# Lower layers never import higher ones. `export.cli` (asr-export: export, then check against the
# reference) is the one module placed above its package.
# The root package's own modules: errors (the bottom), assets (where the test data is) and the API facade
# (qasr/__init__.py, the top: it imports the runtime on first use).
ORDER = ["errors", "assets", "exportformat", "runtime", "calibration", "quantize", "export", "reference", "export.cli",
         "benchmarks", "api"]
PACKAGES = ["exportformat", "runtime", "calibration", "quantize", "export", "reference", "benchmarks"]


def _modules() -> dict[str, Path]:
    """qasr module name -> file, for every package folder and the root package's modules."""
    found = {"qasr": ROOT / "qasr" / "__init__.py", "qasr.errors": ROOT / "qasr" / "errors.py",
             "qasr.assets": ROOT / "qasr" / "assets.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found["qasr." + name] = path
    return found


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """Every qasr module `module` imports (absolute), with the line, wherever the import statement stands."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("qasr.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("qasr."):
                target = node.module
            else:
                continue
            out.append((target, node.lineno))
            out += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]   # `from pkg import module`
    return out


def _layer(module: str) -> int:
    if module == "qasr":
        return ORDER.index("api")
    rest = module[len("qasr."):]
    if rest == "export.cli" or rest.startswith("export.cli."):
        return ORDER.index("export.cli")
    return ORDER.index(rest.split(".")[0])


def test_no_import_against_the_package_order():
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        for target, line in _imports(module, path):
            if target in modules and _layer(target) > _layer(module):
                wrong.append(f"{path.relative_to(ROOT)}:{line} {module} imports {target}")
    assert not wrong, "imports against the package order:\n" + "\n".join(wrong)


def test_no_import_cycles_between_modules():
    modules = _modules()
    graph = {m: sorted({t for t, _ in _imports(m, p) if t in modules and t != m}) for m, p in modules.items()}
    # a package's __init__ is imported with any of its modules; count only real module-to-module edges
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if nxt.startswith(node + ".") or node.startswith(nxt + ".") and modules[nxt].name == "__init__.py":
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_function_local_and_relative_imports(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from ..engine import Engine\n    import qasr.benchmarks.wer\n")
    found = dict(_imports("qasr.runtime.service.mod", path))
    assert "qasr.runtime.engine" in found and "qasr.benchmarks.wer" in found
    assert _layer("qasr.benchmarks.wer") > _layer("qasr.runtime.engine") > _layer("qasr.exportformat.schema")
