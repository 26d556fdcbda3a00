"""Finding a secret in text whatever encoding wrote it, to replace it with [redacted].

A token can reach an answer or a log line through JSON (`\\u0026`, `\\/`, `\\"`), Jinja's
`tojson` (`\\u003c`), HTML (`&amp;`, `&#39;`, `&#x27;`), URLs (`%2B`, `%2b`, `+` for a
space) or Python's repr of SQL parameters in peewee's DEBUG log (`\\'`, doubled
backslashes) -- or several of these stacked. The pattern accepts every such spelling of
every character, so one search finds all of them, mixed spellings included.
"""

from __future__ import annotations

import functools
import re

REDACTED = "[redacted]"

_HTML_NAMES = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}


def _hex_any_case(text: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in text)


def _char_spellings(ch: str) -> str:
    """A regex matching one character as written by any of the encodings above."""
    code = ord(ch)
    forms = [re.escape(ch)]
    if code <= 0xFFFF:
        forms.append(r"\\+u" + _hex_any_case(f"{code:04x}"))  # JSON / JavaScript
    forms.append(r"\\+" + re.escape(ch))  # \' \" \/ in JSON and repr()
    forms.append(f"&#0*{code};")  # HTML, decimal
    forms.append("&#[xX]0*" + _hex_any_case(f"{code:x}") + ";")  # HTML, hex
    if ch in _HTML_NAMES:
        forms.append(f"&{_HTML_NAMES[ch]};")
    forms.append("".join("%" + _hex_any_case(f"{b:02X}") for b in ch.encode()))  # URL
    if ch == " ":
        forms.append(r"\+")
    return "(?:" + "|".join(forms) + ")"


@functools.lru_cache(maxsize=8)
def secret_pattern(secret: str) -> re.Pattern[str]:
    """A compiled pattern of every spelling of `secret` (see the module docstring)."""
    return re.compile("".join(_char_spellings(ch) for ch in secret))


def redact_text(text: str, secret: str) -> str:
    """`text` with every spelling of `secret` replaced by [redacted]."""
    if not secret:
        return text
    return secret_pattern(secret).sub(REDACTED, text)


def redact_bytes(data: bytes, secret: str) -> bytes:
    """The same on UTF-8 bytes (undecodable bytes are kept as they are)."""
    if not secret:
        return data
    text = data.decode("utf-8", "surrogateescape")
    redacted = redact_text(text, secret)
    return data if redacted == text else redacted.encode("utf-8", "surrogateescape")
