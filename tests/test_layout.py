"""The layout: ``dat``'s subpackages in floors, every import pointing down, never into ``envs``, and no two modules
importing each other (type-only imports count: a circle is a knot whatever guards it); ``dat_pipeline`` (the
entry points) on top, imported by no library module; the scripts of ``benchmarks/`` and ``experiments/`` standing on
the library (and their own folder), and no test importing them (a script is tested by running it)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAT = ROOT / "dat"
SCRIPTS = ("benchmarks", "experiments")
FLOORS = {
    "seeding": 0, "records": 0, "atomic": 0, "restating": 0,  # seeds, transcripts, atomic files, restated text
    "lm": 1,  # the frozen LM
    "judges": 2, "action": 2,  # scoring dialogues; the action space
    "dialogue": 3, "rl": 3,  # the rules and collection; offline RL
    "eval": 4,  # paired evaluation
    "stage1": 5, "config": 5, "tracking": 5,  # wiring for the entry points
}


def imports(path: Path, roots: tuple[str, ...] = ("dat", "envs")) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module + (f".{a.name}" if node.module == "dat" else "") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [name for name in found if name.split(".")[0] in roots]


def test_every_import_points_down_and_dat_never_imports_envs():
    modules = [p for p in DAT.rglob("*.py") if p.name != "__init__.py" or p.parent != DAT]
    assert {p.relative_to(DAT).parts[0].removesuffix(".py") for p in modules} == set(FLOORS)
    upward = []
    for path in modules:
        own = path.relative_to(DAT).parts[0].removesuffix(".py")
        for name in imports(path):
            assert not name.startswith("envs"), f"{path} imports {name}: dat never imports envs"
            other = name.split(".")[1]
            if other != own and FLOORS[other] >= FLOORS[own] and FLOORS[own] > 0:
                upward.append(f"{path.relative_to(DAT)} (floor {FLOORS[own]}) imports {name} (floor {FLOORS[other]})")
    assert not upward, "\n".join(upward)


def module_name(path: Path) -> str:
    parts = path.relative_to(DAT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_circles():
    paths = {module_name(p): p for p in DAT.rglob("*.py")}
    graph = {name: {i for i in imports(path) if i in paths} for name, path in paths.items()}
    circles = []

    def walk(name: str, trail: list[str]) -> None:
        for other in graph[name]:
            if other == trail[0]:
                circles.append(" -> ".join([*trail, other]))
            elif other not in trail and other > trail[0]:  # each circle found once, from its smallest module
                walk(other, [*trail, other])

    for start in sorted(graph):
        walk(start, [start])
    assert not circles, "\n".join(circles)


def test_the_entry_package_sits_on_top():
    library = [*DAT.rglob("*.py"), *(ROOT / "envs").rglob("*.py")]
    below = [f"{p.relative_to(ROOT)} imports {name}" for p in library for name in imports(p, ("dat_pipeline",))]
    assert not below, "\n".join(below)


def test_scripts_stand_on_the_library_and_no_test_imports_them():
    """A script may share a sibling's helpers (``prefix_strength`` plays the goals ``state_learning`` does), not the
    other folder's."""
    folders = {folder: {p.stem for p in (ROOT / folder).glob("*.py")} for folder in SCRIPTS}
    assert {"rollout", "generation"} <= folders["benchmarks"] and {"state_learning", "update_docs"} <= folders[
        "experiments"]  # the checks below look at real folders
    tangled = [f"{p.relative_to(ROOT)} imports {name}" for folder in SCRIPTS for p in (ROOT / folder).glob("*.py")
               for other in SCRIPTS if other != folder for name in imports(p, (other, *folders[other]))]
    assert not tangled, "\n".join(tangled)
    tests = [f"{p.relative_to(ROOT)} imports {name}" for p in (ROOT / "tests").rglob("*.py")
             for name in imports(p, (*SCRIPTS, *folders["benchmarks"], *folders["experiments"]))]
    assert not tests, "\n".join(tests)
