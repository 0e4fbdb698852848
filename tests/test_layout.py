"""The house rules of the layout, checked on the source: rooms, imports, sizes and the README map."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TLCORE = ROOT / "tlcore"

ROOM_ORDER = {
    "basics": 0,  # config, errors, paths, files, images, records
    "data": 1, "backbones": 1,
    "report": 2,
    "training": 3,
    "runs": 4,
    "deploy": 5,
    "cli": 6, "api": 6,
}
"""A module may import from its own room or a lower one, never from a higher one."""

MAX_TOP_LEVEL_MODULES = 12
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    return sorted(TLCORE.rglob("*.py"))


def room_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__main__",):
        return "cli"
    if parts[1] == "cli":
        return "cli"
    return parts[1] if parts[1] in ROOM_ORDER else "basics"


def dotted(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_tlcore_never_imports_streamlit() -> None:
    offenders = [str(p) for p in modules()
                 if any(m.split(".")[0] == "streamlit" for m in imported_modules(p))]
    assert offenders == []


def test_lower_rooms_never_import_higher_ones() -> None:
    wrong = []
    for path in modules():
        here = room_of(dotted(path))
        for target in imported_modules(path):
            if target.startswith("tlcore.") and ROOM_ORDER[room_of(target)] > ROOM_ORDER[here]:
                wrong.append(f"{dotted(path)} ({here}) imports {target} ({room_of(target)})")
    assert wrong == []


def test_the_top_level_holds_only_shared_basics() -> None:
    top = [p.name for p in TLCORE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_page_scripts_hold_no_bare_strings_that_streamlit_would_print() -> None:
    """Streamlit's magic writes every bare expression at a page script's top level onto the
    page: an attribute docstring there showed up as a stray line above Home's title."""
    stray = []
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        for node in ast.parse(path.read_text()).body[1:]:  # the module docstring is not shown
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                stray.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert stray == []


@pytest.mark.parametrize("folder", ["tlcore", "ui", "pages"])
def test_no_function_is_longer_than_sixty_lines(folder: str) -> None:
    long = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def readme_map() -> set[str]:
    """Paths named in the README's "How it works" map, relative to tlcore/."""
    section = ROOT.joinpath("README.md").read_text().split("## How it works", 1)[1]
    block = section.split("```", 2)[1]
    named, folder = set(), ""
    for line in block.splitlines():
        match = re.match(r"^(\s*)(\S+)", line)
        if not match or not line.startswith("  "):
            continue
        indent, name = len(match.group(1)), match.group(2)
        if indent == 2:
            folder = name if name.endswith("/") else ""
            named.add(name.rstrip("/"))
        elif indent == 4 and folder:
            named.add(folder + name)
    return named


def test_the_readme_map_names_every_module_and_folder_and_nothing_else() -> None:
    actual = {p.relative_to(TLCORE).as_posix() for p in modules()
              if p.name not in ("__init__.py", "__main__.py")}
    actual |= {p.relative_to(TLCORE).as_posix() for p in TLCORE.iterdir()
               if p.is_dir() and p.name != "__pycache__"}
    assert readme_map() == actual
