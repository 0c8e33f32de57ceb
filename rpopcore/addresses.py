"""Reading addresses out of header field values, for recipient strategies.

One parser for every strategy: RFC 5322 address lists with display names,
groups (``undisclosed-recipients:;``), comments, RFC 2047 encoded words in
display names, several fields of one kind, and the looser forms real special
fields carry (bare addresses, comma lists, angle brackets or none).
"""

from __future__ import annotations

import email.utils
import re
from typing import Iterable

_ADDR_SPEC = re.compile(r"^[^@\s<>,;:\"]+@[^@\s<>,;:\"]+$")


def addresses_in(values: Iterable[str]) -> list[str]:
    """Every address in the given field values, in order of appearance,
    de-duplicated case-insensitively; anything that is not a
    ``local@domain`` address (a group name, an empty group, garbage) is left
    out."""
    found: list[str] = []
    seen: set[str] = set()
    for value in values:
        for _, address in email.utils.getaddresses([value]):
            address = address.strip().strip("<>").strip()
            if not _ADDR_SPEC.match(address):
                continue
            key = address.lower()
            if key not in seen:
                seen.add(key)
                found.append(address)
    return found
