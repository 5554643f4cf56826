"""Throwaway certificates for TLS tests: a CA, a server certificate it signed and a client one."""
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Pki:
    """A throwaway CA and PEM texts it signed: a server certificate for ``dns_name`` and a client one."""

    ca_pem: str
    server_cert_pem: str
    server_key_pem: str
    client_cert_pem: str
    client_key_pem: str


def make_pki(dns_name: str) -> Pki:
    now = datetime.now(UTC)

    def name(common):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def pem_key(key) -> str:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()

    def builder(subject, issuer, key):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1)))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder(name("Test CA"), name("Test CA"), ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common, usage, alt_names):
        key = ec.generate_private_key(ec.SECP256R1())
        built = (
            builder(name(common), ca.subject, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if alt_names:
            built = built.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = built.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM).decode(), pem_key(key)

    server_cert, server_key = leaf(dns_name, ExtendedKeyUsageOID.SERVER_AUTH, [x509.DNSName(dns_name)])
    client_cert, client_key = leaf("hub-client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return Pki(ca.public_bytes(serialization.Encoding.PEM).decode(), server_cert, server_key, client_cert, client_key)


def server_context(pki: Pki, client_ca: str | None = None) -> ssl.SSLContext:
    """A server-side context presenting ``pki``'s server certificate; with ``client_ca`` it requires a
    client certificate that CA signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:
        cert, key = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert.write_text(pki.server_cert_pem)
        key.write_text(pki.server_key_pem)
        context.load_cert_chain(cert, key)
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca)
    return context
