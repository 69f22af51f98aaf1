"""The operator's commands show data as written: names are not Rich markup or emoji
codes, and control characters are escaped rather than sent to the terminal."""

from __future__ import annotations

import subprocess
import sys

from bhuktani.cli.display import shown
from tests.cli.test_commands import cli_env, create_merchant, ok

NAME = "x[/red] [bold]:smile:\x1b[2J\x07"
SHOWN = "x[/red] [bold]:smile:\\x1b[2J\\x07"


def test_control_characters_are_written_as_escapes() -> None:
    assert shown("a\x00b\x1b\x7f\x9bc\td\n") == "a\\x00b\\x1b\\x7f\\x9bc\td\n"
    assert shown("plain [b]text[/b]") == "plain [b]text[/b]"


async def test_merchant_list_shows_a_name_with_markup_and_escapes_as_written(
    db_url: str,
) -> None:
    created = await create_merchant(db_url)
    renamed = await ok(db_url, "merchant", "create", NAME, "--json")
    assert renamed
    # Wide enough that the table does not fold the name.
    done = subprocess.run(
        [sys.executable, "-m", "bhuktani", "merchant", "list", "--all"],
        env={**cli_env(db_url), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert SHOWN in done.stdout, done.stdout
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert created["name"] in done.stdout
