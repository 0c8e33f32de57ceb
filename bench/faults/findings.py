"""What the harnesses find, counted the same way: a result keeps the first
few problems it met described in full (:class:`Findings`), a count that is
not zero breaks a promise (:func:`broken`), and a failed poll must end in
one known error code with no traceback (:func:`unclear`)."""

from __future__ import annotations

from typing import Iterable

import attrs

from rpopcore.errors import ERROR_CODES, RpopError

#: Problems described in full in a result; beyond, only counted.
LISTED = 20


@attrs.define
class Findings:
    """The base of a harness's result: the first problems, described."""

    examples: list[str] = attrs.field(factory=list, kw_only=True)

    def note(self, text: str) -> None:
        if len(self.examples) < LISTED:
            self.examples.append(text)


def broken(result: object, promises: Iterable[tuple[str, str]]) -> list[str]:
    """``"N what"`` for each ``(count attribute, what)`` whose count is not 0."""
    return [f"{getattr(result, name):,} {what}" for name, what in promises if getattr(result, name)]


def unclear(error: str | None, stderr: str, log: str = "") -> str | None:
    """Why a poll that had to fail did not end in one clear error: it
    succeeded, ended in no known code or in ``internal-error``, or printed
    or logged a traceback (None: it was clear)."""
    if error is None:
        return "the poll succeeded"
    if error not in ERROR_CODES or error == RpopError.code:
        return f"no known error code: {error!r}"
    if "Traceback" in stderr or "internal error" in stderr:
        return "a traceback on stderr: " + stderr.strip().splitlines()[-1]
    if "Traceback" in log or "poll crashed" in log:
        return "a traceback in the log"
    return None
