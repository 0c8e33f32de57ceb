"""Address routing over the local directory: an address is local when its
domain is a local domain and its local part is an account or an alias of
one.  A bare name (no ``@``) is looked up in the main domain."""

from __future__ import annotations

from rpopcore.api import hookimpl


@hookimpl
def rpop_route_address(address, directory):
    address = address.strip().strip("<>").strip()
    localpart, at, domain_name = address.rpartition("@")
    if not at:
        localpart, domain = address, directory.main_domain
    else:
        domain = directory.domain(domain_name)
    if domain is None or not localpart:
        return None
    localpart = localpart.lower()
    if localpart in domain.accounts:
        return f"{localpart}@{domain.name}"
    target = domain.aliases.get(localpart)
    if target is not None:
        return f"{target}@{domain.name}"
    return None
