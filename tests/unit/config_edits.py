"""Helpers the router's and the simulator's config tests share: a config text
with one edit, and the error a loader gives for a text."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from router.config import ConfigError


def edited(text: str, old: str, new: str, count: int = 1) -> str:
    assert old in text, f"file no longer contains {old!r}"
    out = text.replace(old, new, count)
    assert out != text
    return out


def load_error(parse: Callable[[str, str], object], text: str, source: str = "bad.toml") -> str:
    with pytest.raises(ConfigError) as exc:
        parse(text, source)
    msg = str(exc.value)
    assert msg.startswith(f"{source}: "), msg
    return msg
