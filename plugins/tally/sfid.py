"""Salesforce record IDs: 15-character (case-sensitive) and 18-character (case-safe) forms."""

from __future__ import annotations

from functools import lru_cache

_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def suffix(id15: str) -> str:
    out = []
    for chunk in range(3):
        bits = 0
        for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        out.append(_SUFFIX[bits])
    return "".join(out)


@lru_cache(maxsize=65_536)  # reference fields repeat the same few thousand IDs
def to18(value: str | None) -> str | None:
    """Normalise an ID to its 18-character form; ``None``/empty stays ``None``.

    An 18-character ID whose case was mangled (e.g. lower-cased by another system) is
    repaired from its suffix, which encodes the case of the first 15 characters.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) == 15:
        return value + suffix(value)
    if len(value) == 18:
        return _recase(value[:15], value[15:].upper()) + value[15:].upper()
    raise ValueError(f"not a Salesforce ID (length {len(value)}): {value!r}")


def _recase(body: str, sfx: str) -> str:
    chars = list(body)
    for chunk, code in enumerate(sfx):
        bits = _SUFFIX.index(code)
        for i in range(5):
            pos = chunk * 5 + i
            chars[pos] = chars[pos].upper() if bits >> i & 1 else chars[pos].lower()
    return "".join(chars)


def make(prefix: str, number: int) -> str:
    """A deterministic 18-character ID: 3-char key prefix, pod ``5g0``, 9 base-62 digits."""
    digits = []
    for _ in range(9):
        number, rem = divmod(number, 62)
        digits.append(_BASE62[rem])
    id15 = f"{prefix}5g0" + "".join(reversed(digits))
    return id15 + suffix(id15)
