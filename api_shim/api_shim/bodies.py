"""What a request body may cost: its size, by route, and, for the large bodies that only an
image justifies, how many JSON values it may hold. Pure: the middleware applies them.

Parsing JSON costs far more memory than the text: `[{},{},...]` is 3 bytes of body and about
70 bytes of Python a value, so a 14 MiB body of empty objects took ~390 MB to parse. A small
body cannot cost much, whatever it holds; a large one is legitimate only as one long string
(a base64 image), so before anything parses it, the values in it are counted and a body with
more than a valid request could ever hold is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# Far above any valid request (metadata is at most 8 KiB of JSON, a few thousand values), far
# below what costs memory: 16k values parse into a few MB.
MAX_JSON_VALUES = 16_384

_SEPARATORS = (b"[", b"{", b",", b":")
# A whole string (escapes included; an unterminated one runs to the end, which keeps the scan
# linear whatever the input), or, captured, a character that opens a container or separates
# values.
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)|([\[{,:])', re.DOTALL)


def json_values_exceed(body: bytes, limit: int = MAX_JSON_VALUES) -> bool:
    """Whether parsing `body` could build more than `limit` JSON values. Every value after the
    first follows one of `[{,:` outside a string, so those are counted (at most about twice
    the values: `{}` and its comma); the scan stops at the limit, so a hostile body costs no
    more than a valid one."""
    if sum(map(body.count, _SEPARATORS)) < limit:
        return False  # the usual case (base64 has none of them), at the speed of bytes.count
    separators = strings = 0
    for match in _TOKEN.finditer(body):
        if match.lastindex:
            separators += 1
        else:
            strings += 1
        # More strings than separators is not JSON at all: no reason to look further.
        if separators >= limit or strings > limit:
            return True
    return False


@dataclass(frozen=True)
class BodyLimits:
    """`default` bytes for every request, more for the POST paths in `large` (those that may
    carry an image)."""

    default: int
    large: Mapping[str, int] = field(default_factory=dict)

    def limit(self, method: str, path: str) -> int:
        if method == "POST":
            return self.large.get(path, self.default)
        return self.default
