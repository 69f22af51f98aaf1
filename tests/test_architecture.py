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


def spellings(module: str, slug: str, title: str) -> tuple[set[str], str | None]:
    """A group's module name, slug and title; and the title's first word where that may be
    a name of its own (six letters or more: "HashCNet", not a common word such as "Demo")."""
    first = title.split()[0]
    nickname = first if len(title.split()) > 1 and len(first) >= 6 else None
    return {module, slug, title}, nickname


def all_names() -> dict[str, list[str]]:
    """How each registered group may be written, by module. A title's first word that
    another group also goes by (two versions of one billing system: "HashCNet V1", slug
    hashcnet, and "HashCNet V2") is not a name of the group's own."""
    found = {
        module: spellings(module, group.slug, group.title)
        for module, group in registry.BY_MODULE.items()
    }
    names = {}
    for module, (words, nickname) in found.items():
        theirs = {
            w.lower()
            for other, (other_words, other_nickname) in found.items()
            if other != module
            for w in (*other_words, *([other_nickname] if other_nickname else []))
        }
        if nickname is not None and nickname.lower() not in theirs:
            words = words | {nickname}
        names[module] = sorted(words)
    return names


def _pattern(name: str) -> re.Pattern[str]:
    """A name matched whole, in any case, with "-", "_" or a space between its parts, or
    none; not as a part of a longer slug or identifier ("pokhara-internet" within
    "pokhara-internet-lekhnath", an ISP of another group)."""
    parts = [re.escape(part) for part in re.split(r"[-_ ]", name) if part]
    return re.compile(
        r"(?<![A-Za-z0-9])(?<![A-Za-z0-9][-_])"
        + r"[-_ ]?".join(parts)
        + r"(?![A-Za-z0-9])(?![-_][A-Za-z0-9])",
        re.I,
    )


def strangers_naming(
    group_module: str,
    files: Iterator[tuple[str, str]],
    names: dict[str, list[str]] | None = None,
) -> list[str]:
    """Lines outside the group's own module that name it; the registry's line of the
    group is its one allowed mention. A match inside another group's name ("hashcnet"
    within "hashcnet-v2") names that other group, not this one."""
    names = all_names() if names is None else names
    patterns = [_pattern(name) for name in names[group_module]]
    others = [_pattern(n) for module, ns in names.items() if module != group_module for n in ns]
    own = (f"services/{group_module}.py", f"services/{group_module}/")
    found = []
    for name, text in files:
        if name.startswith(own):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if name == "services/registry.py" and line.strip() == f'"{group_module}",':
                continue
            theirs = [m.span() for p in others for m in p.finditer(line)]
            if any(
                not any(start <= m.start() and m.end() <= end for start, end in theirs)
                for p in patterns
                for m in p.finditer(line)
            ):
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


def test_groups_that_share_a_word_are_told_apart() -> None:
    """Two versions of one billing system: each is found by its own names, neither by the
    word they share, and a name inside the other's is the other's."""
    names = {
        "vendor_v2": ["Vendor V2", "vendor-v2", "vendor_v2"],
        "vendor": ["Vendor V1", "vendor"],
    }
    lines = {
        "a": 'X = "vendor-v2"',
        "b": 'Y = "vendor"',
        "c": "# Vendor runs one system behind many ISPs",
        "d": 'Z = ("vendor", "vendor_v2")',
    }
    text = "\n".join(lines.values()) + "\n"
    v2 = strangers_naming("vendor_v2", iter([("runtime.py", text)]), names)
    v1 = strangers_naming("vendor", iter([("runtime.py", text)]), names)
    assert v2 == ['runtime.py:1: X = "vendor-v2"', 'runtime.py:4: Z = ("vendor", "vendor_v2")']
    assert v1 == [
        'runtime.py:2: Y = "vendor"',
        "runtime.py:3: # Vendor runs one system behind many ISPs",
        'runtime.py:4: Z = ("vendor", "vendor_v2")',
    ]


def test_a_word_two_groups_share_names_neither(monkeypatch: pytest.MonkeyPatch) -> None:
    groups = {
        "vendor_v2": type("G", (), {"slug": "vendor-v2", "title": "Vendorix V2"})(),
        "vendorix": type("G", (), {"slug": "vendorix", "title": "Vendorix V1"})(),
        "other": type("G", (), {"slug": "other", "title": "Otherworld Net"})(),
    }
    monkeypatch.setattr(registry, "BY_MODULE", groups)
    assert all_names() == {
        "vendor_v2": ["Vendorix V2", "vendor-v2", "vendor_v2"],
        # Its slug is its own, whoever else's title begins with it.
        "vendorix": ["Vendorix V1", "vendorix"],
        "other": ["Otherworld", "Otherworld Net", "other"],
    }


# Rule 3: imports point down.

# What each room may not import: the rooms above it (docs/DESIGN.md, "Layout"); the rooms
# at the bottom name the few they may import instead.
TOP = {"api", "cli", "runtime", "web"}
ONLY: dict[str, set[str]] = {
    "domain": set(),
    "money": set(),
    "clock": set(),
    "metrics": set(),
    "infra": set(),
    "store": {"metrics", "clock", "infra"},
    "audit": {"store", "clock"},
}
FORBIDDEN: dict[str, set[str]] = {
    "services": TOP | {"payments", "ledger", "sandbox", "callbacks", "merchants"},
    "isps": TOP | {"payments", "ledger", "sandbox", "callbacks", "merchants", "services"},
    "ledger": TOP | {"payments", "sandbox", "callbacks", "merchants", "services", "isps"},
    "callbacks": TOP | {"payments", "sandbox", "services", "isps"},
    "sandbox": TOP | {"payments", "callbacks", "merchants"},
    "payments": {"api", "cli"},
    "books": {"api", "cli"},
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
    "audit",
    "books",
    "web",
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
