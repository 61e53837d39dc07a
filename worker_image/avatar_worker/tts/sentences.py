"""Text cut into the pieces an offline engine synthesises one at a time, so the first one can
play while the next is made. Pure."""

from __future__ import annotations

import re
from typing import Final

MAX_PIECE_CHARS: Final = 200
"""A sentence longer than this is cut at a clause or word boundary: time to first audio grows
with the first piece's length."""

# A sentence ends at . ! ? or … followed by white space (optionally after a closing quote or
# bracket), so "3.14" and "example.com" stay whole; the CJK full stop, exclamation and question
# marks need no space; a line break always ends one. (Escapes: the linter flags look-alikes.)
_CLOSERS = "\"')\\]\u201d\u2019"
_CJK_ENDS = "\u3002\uff01\uff1f"
_BOUNDARY = re.compile(rf"(?<=[.!?…][{_CLOSERS}])\s+|(?<=[.!?…])\s+|(?<=[{_CJK_ENDS}])|\s*\n\s*")
_CLAUSE_END = re.compile("[,;:\uff0c\uff1b\u3001]\\s")


def split_sentences(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """The non-empty pieces of `text` in order, each at most `max_chars` long."""
    pieces: list[str] = []
    for sentence in _BOUNDARY.split(text):
        pieces.extend(_cut(sentence.strip(), max_chars))
    return pieces


def _cut(sentence: str, max_chars: int) -> list[str]:
    pieces = []
    while len(sentence) > max_chars:
        head = sentence[:max_chars]
        clauses = list(_CLAUSE_END.finditer(head))
        if clauses:
            cut = clauses[-1].start() + 1
        else:
            space = head.rfind(" ")
            cut = space if space > 0 else max_chars
        pieces.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        pieces.append(sentence)
    return pieces
