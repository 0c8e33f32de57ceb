"""Progress of a poll on a terminal: per record, messages and bytes done
out of what is new, the rate and the time left.

The retrieval engine reports to a :class:`PollProgress` when the poll
context has one; ``rpop poll`` gives it one only when stderr is a terminal
and neither ``--json`` nor ``-q`` was given, so scripts and logs never see
it.  The bars are tqdm's.
"""

from __future__ import annotations

import os
import sys
from typing import Protocol


class PollProgress(Protocol):
    """What a poll reports as it goes."""

    def started(self, record_id: int, mailbox: str, messages: int, octets: int) -> None:
        """The poll found ``messages`` new messages of ``octets`` in all."""

    def retrieved(self, record_id: int, octets: int) -> None:
        """One more message of ``octets`` arrived."""

    def finished(self, record_id: int) -> None:
        """The record's poll ended (done, stopped or failed)."""


class TerminalProgress:
    """One tqdm bar per record being polled, on stderr."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self._bars: dict = {}
        self._position = 0

    def started(self, record_id: int, mailbox: str, messages: int, octets: int) -> None:
        from tqdm import tqdm

        if messages == 0:
            return
        self._bars[record_id] = bar = tqdm(
            total=octets, unit="B", unit_scale=True, unit_divisor=1000, file=self.stream, leave=True,
            position=self._position, desc=_describe(record_id, mailbox, 0, messages), **self._width(),
            bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{rate_fmt}, {remaining} left]",
        )
        self._position += 1
        bar.rpop_mailbox, bar.messages_total, bar.messages_done = mailbox, messages, 0

    def _width(self) -> dict:
        """Follow the terminal's width; a terminal that reports none (a bare
        pseudo-terminal) gets 100 columns rather than an empty bar."""
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, AttributeError, ValueError):
            columns = 0
        return {"dynamic_ncols": True} if columns else {"ncols": 100}

    def retrieved(self, record_id: int, octets: int) -> None:
        bar = self._bars.get(record_id)
        if bar is None:
            return
        bar.messages_done += 1
        bar.set_description_str(_describe(record_id, bar.rpop_mailbox, bar.messages_done, bar.messages_total),
                                refresh=False)
        bar.update(octets)

    def finished(self, record_id: int) -> None:
        bar = self._bars.pop(record_id, None)
        if bar is not None:
            bar.close()


def _describe(record_id: int, mailbox: str, done: int, total: int) -> str:
    return f"record {record_id} {mailbox}: {done}/{total} message{'' if total == 1 else 's'}"


def for_terminal(stream=None) -> TerminalProgress | None:
    """A :class:`TerminalProgress` when ``stream`` (stderr) is a terminal."""
    stream = stream or sys.stderr
    try:
        return TerminalProgress(stream) if stream.isatty() else None
    except (AttributeError, ValueError):
        return None
