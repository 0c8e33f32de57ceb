"""The SMTP family of protocols as a client: SMTP (RFC 5321) towards a relay
and LMTP (RFC 2033) towards a mail store.  :mod:`.client` holds the session,
:mod:`.replies` the parsing of what the server says and of what we may write
in a command, :mod:`.data` the DATA stream, and :mod:`.delivery` turns one
session into the outcomes a delivery agent reports."""
