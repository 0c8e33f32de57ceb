"""A delivery agent that keeps every copy in memory, for tests of what
arrives without a mailbox to read it from."""

from __future__ import annotations

import asyncio
from typing import Sequence

import attrs

from rpopcore.api import Envelope, Outcome, Recipient, RecipientOutcome, RetrievedMessage, hookimpl


@attrs.frozen
class Copy:
    """One delivered copy: to whom, from which envelope sender, the bytes
    as the agent received them (LF line ends, removed fields left out)."""

    recipient: str
    sender: str
    data: bytes


class CapturingAgent:
    """Delivers by keeping: ``copies`` in delivery order.  ``refuse`` maps an
    address to the outcome (``temporary`` or ``permanent``) it gets instead."""

    def __init__(self) -> None:
        self.copies: list[Copy] = []
        self.refuse: dict[str, Outcome] = {}
        self._lock = asyncio.Lock()

    async def deliver(
        self, message: RetrievedMessage, envelope: Envelope, recipients: Sequence[Recipient]
    ) -> list[RecipientOutcome]:
        data = b"".join(message.chunks(envelope.remove_fields))
        outcomes = []
        async with self._lock:
            for recipient in recipients:
                refused = self.refuse.get(recipient.address)
                if refused is not None:
                    outcomes.append(RecipientOutcome(recipient, refused, "refused by the test"))
                    continue
                self.copies.append(Copy(recipient.address, envelope.sender, data))
                outcomes.append(RecipientOutcome(recipient, Outcome.DELIVERED, "captured"))
        return outcomes

    async def close(self) -> None:
        """Nothing to release."""

    def to(self, address: str) -> list[bytes]:
        """The copies ``address`` got, oldest first."""
        return [copy.data for copy in self.copies if copy.recipient == address]


def capture_plugin(agent: CapturingAgent) -> object:
    """A plugin object that contributes ``agent`` as the delivery plugin
    ``capture``."""

    class Capture:
        @hookimpl
        def rpop_delivery_agents(self):
            return {"capture": lambda options, base_dir: agent}

    return Capture()
