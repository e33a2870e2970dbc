"""TLS through a pinned address: the connection goes to the vetted IP, while SNI and
certificate verification still use the URL's host name. Uses a throwaway CA and an HTTPS
server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core import safe_http
from core.safe_http import RequestFailed, RequestRefused, safe_request
from tests.fakes.quiet_http import QuietHandler

HOST = "api.example.test"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, issuer: str, key: Any, signer: Any, *, ca: bool, sans: list[str]
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        names = [x509.DNSName(n) for n in sans]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


class Handler(QuietHandler):
    def do_GET(self) -> None:
        if self.path == "/downgrade":
            self.send_response(302)
            self.send_header("Location", f"http://{HOST}:{self.server.server_address[1]}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        sni = getattr(self.connection, "sni_seen", "")
        body = f"host={self.headers['Host']} sni={sni}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("Test CA", "Test CA", ca_key, ca_key, ca=True, sans=[])
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(HOST, "Test CA", leaf_key, ca_key, ca=False, sans=[HOST])
    directory: Path = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "leaf.pem", directory / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)

    def remember_sni(sock: ssl.SSLSocket, name: str | None, _: Any) -> None:
        sock.sni_seen = name or ""  # type: ignore[attr-defined]

    server_context.sni_callback = remember_sni
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    client_context = ssl.create_default_context(
        cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    )
    yield {"port": httpd.server_address[1], "context": client_context}
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dns_to_loopback(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.HTTP_TOOL_ALLOW_PRIVATE_NETWORKS = ["127.0.0.0/8"]

    async def resolve(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(safe_http, "resolve", resolve)


@pytest.mark.asyncio
async def test_https_to_a_pinned_address_verifies_the_certificate_for_the_host_name(
    tls: dict[str, Any], dns_to_loopback: None
) -> None:
    response = await safe_request(
        "GET",
        f"https://{HOST}:{tls['port']}/",
        allowed_hosts=[HOST],
        timeout_s=5,
        max_bytes=1_000,
        ssl_context=tls["context"],
    )
    assert response.text == f"host={HOST}:{tls['port']} sni={HOST}"


@pytest.mark.asyncio
async def test_https_to_an_address_whose_certificate_names_another_host_fails(
    tls: dict[str, Any], dns_to_loopback: None
) -> None:
    # Same server, same pinned IP, but the URL names a host the certificate does not cover.
    with pytest.raises(RequestFailed, match="ConnectError"):
        await safe_request(
            "GET",
            f"https://other.example.test:{tls['port']}/",
            allowed_hosts=["other.example.test"],
            timeout_s=5,
            max_bytes=1_000,
            ssl_context=tls["context"],
        )


@pytest.mark.asyncio
async def test_https_without_the_private_ca_is_not_trusted(
    tls: dict[str, Any], dns_to_loopback: None
) -> None:
    with pytest.raises(RequestFailed):
        await safe_request(
            "GET",
            f"https://{HOST}:{tls['port']}/",
            allowed_hosts=[HOST],
            timeout_s=5,
            max_bytes=1_000,
        )


@pytest.mark.asyncio
async def test_a_redirect_from_https_to_http_is_refused(
    tls: dict[str, Any], dns_to_loopback: None
) -> None:
    with pytest.raises(RequestRefused, match="https to http"):
        await safe_request(
            "GET",
            f"https://{HOST}:{tls['port']}/downgrade",
            allowed_hosts=[HOST],
            timeout_s=5,
            max_bytes=1_000,
            ssl_context=tls["context"],
        )
