"""The benchmark harness: rpop against fetchmail, getmail6 and mpop.

``python3 -m bench`` (from the repository root) starts its own Dovecot on
loopback, seeds deterministic corpora into its Maildirs, runs rpop and every
installed peer against the same mailboxes -- each into a fresh Maildir, mail
kept on the server so runs repeat -- checks every delivery, and prints wall
time, CPU, peak RSS and throughput with the ratios rpop/peer.  The method and
the latest results are in ``docs/performance.md``.

Modules, by concept:

``corpus``     deterministic messages (realistic text, attachments, sizes)
``scenarios``  what each scenario seeds, polls and expects
``server``     the benchmark's Dovecot (the test fixture's class) and warm-up
``proxy``      a latency-injecting TCP proxy (the WAN scenarios)
``tools``      one module per retriever: how to configure and run it
``measure``    running one retriever as a child: wall, CPU, peak RSS
``check``      did every message arrive exactly once, byte-identical?
``report``     medians, ratios rpop/peer, targets, the text and Markdown tables
``harness``    the run itself: scenario by scenario, run by run, tool by tool
"""
