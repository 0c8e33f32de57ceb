"""An example rpop plugin: a delivery agent that keeps nothing and counts.

Select it in the site file with::

    [delivery]
    plugin = "count"
"""

from rpopcore.api import Outcome, RecipientOutcome, hookimpl


class CountingAgent:
    def __init__(self):
        self.delivered = {}

    async def deliver(self, message, envelope, recipients):
        size = sum(len(chunk) for chunk in message.chunks(envelope.remove_fields))
        outcomes = []
        for recipient in recipients:
            self.delivered[recipient.address] = self.delivered.get(recipient.address, 0) + 1
            outcomes.append(RecipientOutcome(recipient, Outcome.DELIVERED, f"{size} bytes counted"))
        return outcomes

    async def close(self):
        pass


AGENT = CountingAgent()


@hookimpl
def rpop_delivery_agents():
    return {"count": lambda options, base_dir: AGENT}
