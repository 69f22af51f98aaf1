"""What the operator's commands print. Names, URLs, references and ISP texts are data:
shown as written, never read as Rich markup (`x[/red]` crashed `merchant list`), emoji
codes or terminal control sequences (an ESC in a merchant's name could rewrite the
operator's screen)."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.text import Text

# C0 controls but tab and newline, DEL, and the C1 controls (ESC's 8-bit twins).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """The text with each control character written as its escape, `\\x1b`."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class DataConsole(Console):
    """A console whose every string, table cells included, is escaped as `shown`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(shown(text), **kwargs)
