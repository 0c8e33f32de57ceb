"""rpop: retrieve mail from remote POP3 mailboxes and deliver it locally.

The core defines hook specifications (:mod:`rpopcore.hookspecs`), the data
types that cross them (:mod:`rpopcore.model`), the POP3 client
(:mod:`rpopcore.pop3`), the retrieval pipeline and the CLI.  Every concrete
strategy -- an authentication mechanism, a state store, a delivery agent --
is a plugin distribution found through the ``rpop`` entry-point group.

A plugin imports from :mod:`rpopcore.api` only, and tests itself with the
kit in :mod:`rpopcore.testing`; every other module is private
(``docs/plugins.md``).
"""

__version__ = "0.1.0"
