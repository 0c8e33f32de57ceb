"""Fault harnesses: rpop under failures it must survive without losing or
duplicating mail.

``python3 -m bench.faults kill``   SIGKILL ``rpop poll --once`` at random
                                   instants against a real Dovecot; counts
                                   lost, duplicated and stuck messages
``python3 -m bench.faults report`` the results table of docs/reliability.md

The engine is :mod:`bench.faults.kill`; ``tests/faults/test_kill.py`` runs
the same code with small counts.
"""
