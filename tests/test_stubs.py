"""python/ferrotune/_core.pyi declares what the native module has, no more and no less."""

import ast
from pathlib import Path

from ferrotune import _core

STUBS = Path(__file__).resolve().parents[1] / "python" / "ferrotune" / "_core.pyi"


def declared(body) -> set[str]:
    names = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def public(obj) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def test_the_module_and_its_stubs_have_the_same_names():
    tree = ast.parse(STUBS.read_text())
    assert declared(tree.body) - {"__version__"} == public(_core)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not issubclass(getattr(_core, node.name), Exception):
            methods = {name for name in declared(node.body) if not name.startswith("_")}
            assert methods == public(getattr(_core, node.name)), node.name
