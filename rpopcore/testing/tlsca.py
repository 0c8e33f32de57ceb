"""A throwaway certificate authority for the tests.

``TestCA.create(directory)`` makes a CA (key + self-signed CA certificate) and
writes the CA certificate to ``ca_pem_path``; ``issue()`` writes server
certificates signed by it, with subjectAltName DNS and IP entries, valid from a
minute ago.  Point a client at ``ca_pem_path`` (``ssl.create_default_context(
cafile=...)``) and it verifies servers that use an issued certificate.

``make_self_signed()`` writes a certificate that is NOT from the CA, for
"untrusted certificate" tests.

Keys are written unencrypted, mode 0600.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import itertools
import os
from pathlib import Path
from typing import Iterable, Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TestCA", "DEFAULT_NAMES", "KeyType", "make_self_signed"]

DEFAULT_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

KeyType = Literal["ec", "rsa"]

_counter = itertools.count(1)


def _new_key(key_type: KeyType):
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"key_type must be 'ec' or 'rsa', not {key_type!r}")


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _validity(not_before, not_after, days):
    now = _dt.datetime.now(_dt.timezone.utc)
    if not_before is None:
        not_before = now - _dt.timedelta(minutes=1)
    if not_after is None:
        not_after = now + _dt.timedelta(days=days)
    return not_before, not_after


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _leaf_builder(names, public_key, key_type, not_before, not_after, days):
    names = list(names)
    if not names:
        raise ValueError("a server certificate needs at least one name")
    not_before, not_after = _validity(not_before, not_after, days)
    key_usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=(key_type == "rsa"),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(_san(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _out_paths(directory, stem: str | None, prefix: str) -> tuple[Path, Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if stem is None:
        stem = f"{prefix}-{os.getpid()}-{next(_counter)}"
    return directory / f"{stem}.crt", directory / f"{stem}.key"


@attrs.define
class TestCA:
    """A CA for tests.  Build it with :meth:`create`."""

    __test__ = False  # not a pytest test class, despite the name

    ca_pem_path: Path
    ca_key_path: Path
    certificate: x509.Certificate = attrs.field(repr=False)
    private_key: object = attrs.field(repr=False)
    key_type: KeyType = "ec"

    @classmethod
    def create(
        cls,
        directory: str | os.PathLike,
        *,
        common_name: str = "rpop test CA",
        key_type: KeyType = "ec",
        days: int = 3650,
    ) -> "TestCA":
        """Make a new CA and write ``ca.pem`` (certificate) and ``ca.key``
        into ``directory`` (created if missing)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = _new_key(key_type)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rpop tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        not_before, not_after = _validity(None, None, days)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        ca_pem_path = directory / "ca.pem"
        ca_key_path = directory / "ca.key"
        ca_pem_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(ca_key_path, _key_pem(key))
        return cls(
            ca_pem_path=ca_pem_path,
            ca_key_path=ca_key_path,
            certificate=cert,
            private_key=key,
            key_type=key_type,
        )

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        tmpdir: str | os.PathLike,
        names: Iterable[str] = DEFAULT_NAMES,
        *,
        key_type: KeyType = "ec",
        stem: str | None = None,
        days: int = 30,
        not_before: _dt.datetime | None = None,
        not_after: _dt.datetime | None = None,
    ) -> tuple[Path, Path]:
        """Write a server certificate for ``names`` (DNS names and/or IP
        addresses; the first is also the CN) signed by this CA, and its key.

        Returns ``(cert_path, key_path)``, both PEM, in ``tmpdir``.  Pass
        ``not_before``/``not_after`` (aware datetimes) for expired or
        not-yet-valid certificates.
        """
        cert_path, key_path = _out_paths(tmpdir, stem, "server")
        key = _new_key(key_type)
        ca_ski = self.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
        cert = (
            _leaf_builder(names, key.public_key(), key_type, not_before, not_after, days)
            .issuer_name(self.certificate.subject)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(self.private_key, hashes.SHA256())
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(key_path, _key_pem(key))
        return cert_path, key_path


def make_self_signed(
    tmpdir: str | os.PathLike,
    names: Iterable[str] = DEFAULT_NAMES,
    *,
    key_type: KeyType = "ec",
    stem: str | None = None,
    days: int = 30,
) -> tuple[Path, Path]:
    """Write a self-signed server certificate (not from any TestCA) and its
    key; returns ``(cert_path, key_path)``.  Names match, so verification
    fails only because the issuer is unknown."""
    names = list(names)
    cert_path, key_path = _out_paths(tmpdir, stem, "selfsigned")
    key = _new_key(key_type)
    builder = _leaf_builder(names, key.public_key(), key_type, None, None, days)
    cert = builder.issuer_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    ).sign(key, hashes.SHA256())
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, _key_pem(key))
    return cert_path, key_path
