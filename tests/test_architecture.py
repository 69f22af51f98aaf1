"""The rules of docs/DESIGN.md that keep the layout honest, read from the source tree:

- only `ledger/` writes transfers and account balances;
- a service group is named only in its own module (or folder) and on its registry line;
- imports point down: a room never imports a room above it.

Each rule is also broken once, on a copy of one file, to show that its check finds it."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bhuktani.services import registry

SRC = Path(__file__).resolve().parents[1] / "src" / "bhuktani"


def sources() -> Iterator[tuple[str, str]]:
    """(path under src/bhuktani, text) of every Python file of the package."""
    for path in sorted(SRC.rglob("*.py")):
        yield path.relative_to(SRC).as_posix(), path.read_text()


# Rule 1: only the ledger moves money.

MONEY_WRITE = re.compile(
    r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(?:transfers|accounts)\b", re.IGNORECASE
)


def money_writers(files: Iterator[tuple[str, str]]) -> list[str]:
    return [
        f"{name}: {match.group(0)}"
        for name, text in files
        if not name.startswith("ledger/")
        for match in MONEY_WRITE.finditer(text)
    ]


def test_only_the_ledger_writes_transfers_and_balances() -> None:
    assert money_writers(sources()) == []


def test_the_money_rule_finds_a_write_outside_the_ledger() -> None:
    text = (SRC / "payments" / "records.py").read_text()
    broken = text + '\nSQL = "UPDATE accounts SET balance_paisa = 0 WHERE id = $1"\n'
    assert money_writers(iter([("payments/records.py", broken)])) == [
        "payments/records.py: UPDATE accounts"
    ]


# Rule 2: a group is named in its own module and on its registry line only.


def group_names(group_module: str) -> list[str]:
    """How a group may be written: its module's name, its slug, its title, and the title's
    first word where that is a name of its own (six letters or more: "HashCNet", not a
    common word such as "Demo"). Matched whole, in any case, with "-", "_" or a space
    between parts, or none."""
    group = registry.BY_MODULE[group_module]
    words = {group_module, group.slug, group.title}
    first = group.title.split()[0]
    if len(group.title.split()) > 1 and len(first) >= 6:
        words.add(first)
    return sorted(words)


def _pattern(name: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in re.split(r"[-_ ]", name) if part]
    return re.compile(r"(?<![A-Za-z0-9])" + r"[-_ ]?".join(parts) + r"(?![A-Za-z0-9])", re.I)


def strangers_naming(group_module: str, files: Iterator[tuple[str, str]]) -> list[str]:
    """Lines outside the group's own module that name it; the registry's line of the
    group is its one allowed mention."""
    patterns = [_pattern(name) for name in group_names(group_module)]
    own = (f"services/{group_module}.py", f"services/{group_module}/")
    found = []
    for name, text in files:
        if name.startswith(own):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if name == "services/registry.py" and line.strip() == f'"{group_module}",':
                continue
            if any(p.search(line) for p in patterns):
                found.append(f"{name}:{number}: {line.strip()}")
    return found


@pytest.mark.parametrize("group_module", registry.MODULES)
def test_a_group_is_named_only_in_its_module_and_the_registry(group_module: str) -> None:
    assert strangers_naming(group_module, sources()) == []


def test_the_registry_lists_each_group_once() -> None:
    lines = (SRC / "services" / "registry.py").read_text().splitlines()
    for module in registry.MODULES:
        assert lines.count(f'    "{module}",') == 1, module


@pytest.mark.parametrize("group_module", registry.MODULES)
def test_the_naming_rule_finds_a_group_named_elsewhere(group_module: str) -> None:
    group = registry.BY_MODULE[group_module]
    text = (SRC / "runtime.py").read_text()
    for written in (group.slug, group.title.upper(), group_module):
        broken = text + f'\nDEFAULT = "{written}"\n'
        found = strangers_naming(group_module, iter([("runtime.py", broken)]))
        assert found == [f'runtime.py:{len(broken.splitlines())}: DEFAULT = "{written}"']


# Rule 3: imports point down.

# What each room may not import: the rooms above it (docs/DESIGN.md, "Layout"); the rooms
# at the bottom name the few they may import instead.
TOP = {"api", "cli", "runtime"}
ONLY: dict[str, set[str]] = {
    "domain": set(),
    "money": set(),
    "clock": set(),
    "metrics": set(),
    "infra": set(),
    "store": {"metrics", "clock", "infra"},
}
FORBIDDEN: dict[str, set[str]] = {
    "services": TOP | {"payments", "ledger", "sandbox", "callbacks", "merchants"},
    "isps": TOP | {"payments", "ledger", "sandbox", "callbacks", "merchants", "services"},
    "ledger": TOP | {"payments", "sandbox", "callbacks", "merchants", "services", "isps"},
    "callbacks": TOP | {"payments", "sandbox", "services", "isps"},
    "sandbox": TOP | {"payments", "callbacks", "merchants"},
    "payments": {"api", "cli"},
}
ROOMS = {
    "domain",
    "money",
    "clock",
    "store",
    "infra",
    "services",
    "isps",
    "ledger",
    "callbacks",
    "sandbox",
    "payments",
    "merchants",
    "ratelimit",
    "api",
    "cli",
    "runtime",
    "metrics",
    "errors",
    "logs",
    "settings",
}


def room_of(name: str) -> str:
    return name.split("/")[0].removesuffix(".py")


def imported_rooms(text: str) -> Iterator[tuple[int, str]]:
    """The rooms a module imports, anywhere in it (imports inside functions too)."""
    for node in ast.walk(ast.parse(text)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            if node.module == "bhuktani":
                modules = [f"bhuktani.{alias.name}" for alias in node.names]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "bhuktani" and len(parts) > 1:
                yield node.lineno, parts[1]


def upward_imports(files: Iterator[tuple[str, str]]) -> list[str]:
    found = []
    for name, text in files:
        room = room_of(name)
        for line, target in imported_rooms(text):
            if target == room:
                continue
            if target in FORBIDDEN.get(room, set()) or target not in ONLY.get(room, {target}):
                found.append(f"{name}:{line}: imports {target}")
    return found


def test_imports_point_down() -> None:
    assert upward_imports(sources()) == []


def test_every_room_is_known() -> None:
    assert {room_of(name) for name, _ in sources()} - {"__init__", "__main__"} <= ROOMS


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("services/base.py", "from bhuktani.sandbox import catalog"),
        ("isps/base.py", "from bhuktani.payments import records"),
        ("ledger/book.py", "import bhuktani.api.app"),
        ("domain.py", "from bhuktani import money"),
        ("infra/gate.py", "    from bhuktani.cli import app"),
    ],
)
def test_the_import_rule_finds_an_import_pointing_up(name: str, line: str) -> None:
    text = (SRC / name).read_text()
    if line.startswith(" "):
        broken = text + f"\n\ndef _late() -> None:\n{line}\n"
    else:
        broken = text + f"\n{line}\n"
    assert len(upward_imports(iter([(name, broken)]))) == 1
