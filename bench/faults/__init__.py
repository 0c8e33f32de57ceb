"""Fault harnesses: rpop under failures it must survive without losing or
duplicating mail.

``python3 -m bench.faults kill``    SIGKILL ``rpop poll --once`` at random
                                    instants against a real Dovecot; counts
                                    lost, duplicated and stuck messages
``python3 -m bench.faults cut``     cut the connection to a real Dovecot
                                    after every byte of a session, each way
``python3 -m bench.faults fuzz``    poll a hostile server whose every answer
                                    hypothesis draws: crashes, hangs, memory,
                                    mail never sent whole
``python3 -m bench.faults secrets`` cut a session at every line, every
                                    login mechanism: any secret anywhere?
``python3 -m bench.faults report``  the results tables of docs/reliability.md

The engines are :mod:`bench.faults.kill`, :mod:`bench.faults.cut`,
:mod:`bench.faults.fuzz` and :mod:`bench.faults.secrets`; the test files of
``tests/faults/`` run the same code with small counts.
"""
