"""The house's layers: the domain imports no Discord, HTTP or storage code, and nothing in the
package points outside the repository."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = sorted((ROOT / "bot" / "domain").glob("*.py"))
FORBIDDEN_TOP = {"discord", "aiohttp", "aiosqlite", "asyncpg", "storage", "cogs", "yarl"}


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", DOMAIN, ids=lambda p: p.name)
def test_the_domain_is_pure(path: Path) -> None:
    for module in imported_modules(path):
        top = module.split(".")[0]
        assert top not in FORBIDDEN_TOP, f"{path.name} imports {module}"
        if top == "bot":
            assert module.startswith("bot.domain"), f"{path.name} imports {module}"


def test_storage_never_imports_the_cogs_or_the_runner() -> None:
    for path in (ROOT / "storage").glob("*.py"):
        for module in imported_modules(path):
            assert not module.startswith(("cogs", "bot.runner", "discord")), (path.name, module)


def test_no_source_points_outside_the_repository() -> None:
    sources = [*ROOT.glob("bot/**/*.py"), *ROOT.glob("cogs/*.py"), *ROOT.glob("storage/**/*")]
    for path in sources:
        if path.is_file():
            assert "../shared" not in path.read_text("utf-8"), path
