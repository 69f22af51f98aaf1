"""The JSON examples of the source documents (docs/seeds/), read as clients read them.

The documents are the contract, so the tests replay their own bytes rather than copies:
only what keeps them from being JSON is mended (typographic quotes, comments, the
non-breaking spaces of the payment example)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SEEDS = Path(__file__).resolve().parent.parent / "docs" / "seeds"
_BLOCK = re.compile(r'<pre><code class="json">(.*?)</code></pre>', re.DOTALL)
_COMMENT = re.compile(r"\s*(//|\\\\)[^\n\"]*(?=\n)")


def _mend(block: str) -> str:
    text = block.replace("\u201c", '"').replace("\u201d", '"').replace("\u00a0", " ")
    # The details example writes the slug placeholder as "\\ service_slug\\ ".
    return _COMMENT.sub("", text).replace("\\ ", "")


def blocks(document: str) -> list[str]:
    return _BLOCK.findall((SEEDS / document).read_text())


def example(document: str, index: int) -> Any:
    return json.loads(_mend(blocks(document)[index]))


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "list"
    return "object"


def shape_differences(documented: Any, actual: Any, path: str = "$") -> list[str]:
    """Where the actual JSON differs from the documented one in keys or JSON types."""
    if json_type(documented) != json_type(actual):
        return [f"{path}: documented {json_type(documented)}, got {json_type(actual)}"]
    found: list[str] = []
    if isinstance(documented, dict):
        if set(documented) != set(actual):
            found.append(f"{path}: keys {sorted(documented)} != {sorted(actual)}")
        for key in set(documented) & set(actual):
            found += shape_differences(documented[key], actual[key], f"{path}.{key}")
    elif isinstance(documented, list) and documented and actual:
        for index, item in enumerate(actual):
            found += shape_differences(
                documented[min(index, len(documented) - 1)], item, f"{path}[{index}]"
            )
    return found


def underscored(value: Any) -> Any:
    """The documents' payment response writes `credits consumed`; responses use `_`."""
    if isinstance(value, dict):
        return {key.replace(" ", "_"): underscored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [underscored(item) for item in value]
    return value
