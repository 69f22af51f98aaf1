"""The callback body as `multipart/form-data`, built here so that the bytes we sign are
the bytes we send."""

from __future__ import annotations

import re

_SAFE_NAME = re.compile(r"^[a-z_]{1,32}$")


def encode(fields: dict[str, str], boundary: str) -> tuple[bytes, str]:
    assert re.fullmatch(r"[A-Za-z0-9]{16,70}", boundary), boundary
    parts: list[bytes] = []
    for name, value in fields.items():
        assert _SAFE_NAME.match(name), name
        assert f"--{boundary}" not in value
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
