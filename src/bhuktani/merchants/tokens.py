"""API tokens: random, shown once, stored only as a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from bhuktani.domain import Env

TEST_PREFIX = "TEST:"
TEST_RANDOM_CHARS = 20
LIVE_RANDOM_CHARS = 40
# Longer than any token we issue; anything longer is refused before it is hashed.
MAX_TOKEN_CHARS = 100
HINT_CHARS = 9


def env_of(token: str) -> str:
    return Env.TEST if token.startswith(TEST_PREFIX) else Env.LIVE


def generate(env: str) -> str:
    if env == Env.TEST:
        token = TEST_PREFIX + secrets.token_urlsafe(TEST_RANDOM_CHARS * 3 // 4)
        assert len(token) == len(TEST_PREFIX) + TEST_RANDOM_CHARS
        return token
    assert env == Env.LIVE, env
    token = secrets.token_urlsafe(LIVE_RANDOM_CHARS * 3 // 4)
    # A LIVE token must never look like a TEST one.
    assert not token.startswith(TEST_PREFIX)
    return token


def digest(token: str, key: bytes) -> str:
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def hint(token: str) -> str:
    return token[:HINT_CHARS] + "…"


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
