"""Prometheus metrics of the daemon (``rpop run``), served on the site
file's ``[metrics] listen = "HOST:PORT"`` at ``/metrics``.

=====================================  =======================================
metric                                 what
=====================================  =======================================
rpop_polls_total{result}               polls ended, by result: ``ok`` or the
                                       error code (``auth-failed``, ...)
rpop_poll_duration_seconds             histogram of poll durations
rpop_messages_retrieved_total          messages read from servers
rpop_bytes_retrieved_total             their size as stored (LF line ends)
rpop_messages_delivered_total          messages delivered to every recipient
rpop_bytes_delivered_total             their size
rpop_delivery_failures_total{kind}     recipients whose delivery failed:
                                       ``temporary`` (stays on the server) or
                                       ``permanent`` (reported, if due)
rpop_records{state}                    records by state: ``ok``, ``failed``
                                       (its latest poll failed), ``delayed``
                                       (held back by a failed host or the
                                       activity schedule), ``disabled``,
                                       ``new`` (never polled)
rpop_processors_in_use                 polls running now
rpop_processors                        the ``processors`` setting
rpop_leases_held                       records this daemon holds a lease on
rpop_up                                1 while the daemon runs
=====================================  =======================================

A registry of its own per daemon: nothing of the process (or of a test)
mixes in.  The server is prometheus_client's, in a thread; scrapes never
wait on the event loop, and read figures updated as polls end and on every
tick.
"""

from __future__ import annotations

from typing import Iterable

from rpopcore import errors
from rpopcore.errors import HostDelayed
from rpopcore.model import split_host
from rpopcore.schedule import DELAYS

STATES = ("ok", "failed", "delayed", "disabled", "new")


class Metrics:
    """The daemon's figures, and the HTTP server that shows them."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.polls = Counter("rpop_polls", "Polls ended, by result (ok or the error code)", ["result"],
                             registry=registry)
        self.duration = Histogram("rpop_poll_duration_seconds", "Duration of polls", registry=registry,
                                  buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600))
        self.messages_retrieved = Counter("rpop_messages_retrieved", "Messages read from servers", registry=registry)
        self.bytes_retrieved = Counter("rpop_bytes_retrieved", "Bytes of the messages read from servers",
                                       registry=registry)
        self.messages_delivered = Counter("rpop_messages_delivered", "Messages delivered to every recipient",
                                          registry=registry)
        self.bytes_delivered = Counter("rpop_bytes_delivered", "Bytes of the messages delivered", registry=registry)
        self.delivery_failures = Counter("rpop_delivery_failures", "Recipients whose delivery failed, by kind",
                                         ["kind"], registry=registry)
        self.records = Gauge("rpop_records", "Records by state", ["state"], registry=registry)
        self.processors_in_use = Gauge("rpop_processors_in_use", "Polls running now", registry=registry)
        self.processors = Gauge("rpop_processors", "The processors setting", registry=registry)
        self.leases_held = Gauge("rpop_leases_held", "Records this daemon holds a lease on", registry=registry)
        self.up = Gauge("rpop_up", "1 while the daemon runs", registry=registry)
        for kind in ("temporary", "permanent"):
            self.delivery_failures.labels(kind)
        self.polls.labels("ok")
        self._server = None

    # --- what the engine reports (PollContext.metrics) ----------------------

    def retrieved(self, octets: int) -> None:
        self.messages_retrieved.inc()
        self.bytes_retrieved.inc(octets)

    def delivered(self, octets: int) -> None:
        self.messages_delivered.inc()
        self.bytes_delivered.inc(octets)

    def delivery_failed(self, kind: str) -> None:
        self.delivery_failures.labels(kind).inc()

    # --- what the daemon reports -------------------------------------------

    def poll_ended(self, error: str | None, seconds: float) -> None:
        self.polls.labels(error or "ok").inc()
        self.duration.observe(seconds)

    def set_records(self, states: Iterable[str]) -> None:
        counts = dict.fromkeys(STATES, 0)
        for state in states:
            counts[state] += 1
        for state, count in counts.items():
            self.records.labels(state).set(count)

    def set_running(self, running: int, processors: int) -> None:
        self.processors_in_use.set(running)
        self.leases_held.set(running)  # each running poll holds its record's lease
        self.processors.set(processors)

    # --- serving -------------------------------------------------------------

    def serve(self, listen: str) -> tuple[str, int]:
        """Serve ``/metrics`` on ``listen`` (``host:port``; port 0 picks
        one); returns the address bound."""
        from prometheus_client import start_http_server

        host, port = split_host(listen, tls=False, default_port=9154)
        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise errors.ConfigError(f"[metrics] listen = {listen!r}: cannot listen there ({exc.strerror or exc}); "
                                     "choose a free port on an address of this machine") from None
        self.up.set(1)
        return self._server.server_address[:2]

    def close(self) -> None:
        self.up.set(0)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def record_state(record, status, when) -> str:
    """One of :data:`STATES` for a record, its latest status and when the
    schedule says it is due (:func:`rpopcore.schedule.due`)."""
    if record.poll_every is None:
        return "disabled"
    if status is not None and status.error and status.error != HostDelayed.code:
        return "failed"  # its own latest poll failed (and it may now wait Delay Failed Accounts)
    if when.reason in DELAYS or (status is not None and status.error):
        return "delayed"  # another record's failed host, or the activity schedule
    return "new" if status is None else "ok"
