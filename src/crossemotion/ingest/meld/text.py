"""Utterance text cleaning, including the mojibake some MELD csv copies carry.

Two kinds of damage appear in circulating copies of the MELD csvs:

* UTF-8 bytes decoded as cp1252 and re-encoded (``â€™`` for ``’``,
  ``Ã©`` for ``é``). Reversing it (``encode('cp1252').decode('utf-8')``) is
  exact, so it is tried whenever such markers occur and kept only if it
  decodes cleanly.
* cp1252 bytes decoded as latin-1, which leaves C1 control characters
  (``\\x92`` for ``’``, ``\\x85`` for ``…``). Those map one to one.

ftfy would do this more broadly; these two repairs cover what MELD shows
without a dependency.
"""

from __future__ import annotations

import re

# C1 controls left by cp1252 text read as latin-1; each is the cp1252 glyph.
_C1_TO_CP1252 = {
    chr(b): bytes([b]).decode("cp1252")
    for b in range(0x80, 0xA0)
    if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
}
_C1_RE = re.compile("[\x80-\x9f]")
# Lead bytes of UTF-8 sequences as cp1252 shows them, followed by a
# continuation byte as cp1252 shows it: the fingerprint of double encoding.
_MOJIBAKE_RE = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178"
    "\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018\u2019\u201a"
    "\u201c\u201d\u201e\u2020\u2021\u2022\u2026\u2030\u2039\u203a"
    "\u20ac\u2122]"
)
_SPACE_RE = re.compile(r"\s+")


def _to_cp1252_bytes(chunk: str) -> bytes:
    # cp1252 leaves 0x81, 0x8D, 0x8F, 0x90, 0x9D undefined; decoders pass them
    # through as the C1 character of the same number, so map those back too.
    return b"".join(bytes([ord(c)]) if "\x80" <= c <= "\x9f" else c.encode("cp1252") for c in chunk)


def _undo_double_encoding(text: str) -> str:
    """Reverse UTF-8-read-as-cp1252, one run of damaged characters at a time."""

    def fix(match: re.Match[str]) -> str:
        chunk = match.group(0)
        try:
            return _to_cp1252_bytes(chunk).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return chunk

    # A damaged character is a lead glyph plus one to three continuation glyphs.
    cont = _MOJIBAKE_RE.pattern[len("[\u00c2-\u00f4]") :]
    return re.sub(f"[\u00c2-\u00f4](?:{cont}){{1,3}}", fix, text)


def fix_mojibake(text: str) -> str:
    """Repair double-encoded UTF-8 and stray C1 characters; clean text is unchanged."""
    if _MOJIBAKE_RE.search(text):
        text = _undo_double_encoding(text)
    if _C1_RE.search(text):
        text = _C1_RE.sub(lambda m: _C1_TO_CP1252.get(m.group(0), ""), text)
    return text


def clean_text(text: str | None) -> str:
    """Mojibake repair, non-breaking spaces to spaces, whitespace collapsed."""
    if text is None:
        return ""
    text = fix_mojibake(str(text)).replace("\u00a0", " ")
    return _SPACE_RE.sub(" ", text).strip()
