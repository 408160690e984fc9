"""A local certificate authority and a server certificate signed by it, made with openssl.

For a front on this machine (tests, ``scripts/cluster --production``): clients trust
``ca.pem`` (Node: ``NODE_EXTRA_CA_CERTS``; curl: ``--cacert``; Chromium: the server key's
SPKI hash, :func:`spki_sha256`). A real deployment uses a certificate from a public CA.
"""

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = 30


@dataclass(frozen=True)
class Certificates:
    ca: Path
    certificate: Path
    key: Path


def _openssl(*args, stdin=None) -> bytes:
    done = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60)
    if done.returncode:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def make_certificates(directory: Path, hosts=("localhost",), addresses=("127.0.0.1", "::1")
                      ) -> Certificates:
    """Write ``ca.pem``, ``server.pem`` and ``server.key`` (EC P-256) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key = directory / "ca.key", directory / "ca.pem", directory / "server.key"
    csr, certificate = directory / "server.csr", directory / "server.pem"
    extensions = directory / "server.ext"
    names = [f"DNS:{host}" for host in hosts] + [f"IP:{address}" for address in addresses]
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(names)}\n"
    )
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
    _openssl("req", "-x509", "-new", "-nodes", *curve, "-keyout", str(ca_key), "-out", str(ca),
             "-days", str(DAYS), "-subj", "/CN=webchat local CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-new", "-nodes", *curve, "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN={hosts[0]}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-set_serial", str(secrets.randbits(63)),
             "-days", str(DAYS), "-extfile", str(extensions), "-out", str(certificate))
    ca_key.unlink()  # nothing else is ever signed with it
    csr.unlink()
    key.chmod(0o600)
    return Certificates(ca=ca, certificate=certificate, key=key)


def spki_sha256(certificate: Path) -> str:
    """The base64 SHA-256 of the certificate's public key (Chromium's
    ``--ignore-certificate-errors-spki-list`` trusts exactly that key)."""
    public_key = _openssl("x509", "-in", str(certificate), "-pubkey", "-noout")
    der = _openssl("pkey", "-pubin", "-outform", "der", stdin=public_key)
    digest = _openssl("dgst", "-sha256", "-binary", stdin=der)
    return _openssl("base64", "-A", stdin=digest).decode().strip()
