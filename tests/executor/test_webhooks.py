"""One delivery attempt, in process, against real sockets: what is sent and what is read."""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from colsum.settings import Settings
from executor.webhooks import AttemptFailed, post

LOCAL = Settings(webhook_allowed_hosts=("localhost", "127.0.0.1"))


class OneShot:
    """A TCP server answering each connection with `answer(request)`, recording requests."""

    def __init__(self, answer: Callable[[bytes], bytes], context: ssl.SSLContext | None = None):
        self.answer = answer
        self.context = context
        self.requests: list[bytes] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.server.accept()
                with contextlib.suppress(OSError, ssl.SSLError):
                    if self.context is not None:
                        connection = self.context.wrap_socket(connection, server_side=True)
                    with connection:
                        request = b""
                        while b"\r\n\r\n" not in request:
                            request += connection.recv(65536)
                        self.requests.append(request)
                        connection.sendall(self.answer(request))


@pytest.fixture
def serve() -> Iterator[Callable[..., OneShot]]:
    made: list[OneShot] = []

    def make(answer, context=None) -> OneShot:
        made.append(OneShot(answer, context))
        return made[-1]

    yield make
    for server in made:
        server.server.close()


def test_an_interim_100_continue_is_skipped_for_the_final_answer(serve):
    server = serve(lambda request: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    post(f"http://127.0.0.1:{server.port}/hook", b"{}", LOCAL)
    assert server.requests[0].startswith(b"POST /hook HTTP/1.1\r\n")


def test_an_endless_first_line_is_read_up_to_64_kib(serve):
    server = serve(lambda request: b"HTTP/1.1 200 " + b"O" * (1 << 20))
    with pytest.raises(AttemptFailed, match="no status within 65536 bytes"):
        post(f"http://127.0.0.1:{server.port}/", b"{}", LOCAL)


def certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name`, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_names_the_host_in_sni_and_host_while_connecting_to_its_address(serve, tmp_path):
    cert, key = certificate(tmp_path, "localhost")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, context: names.append(name)
    server = serve(lambda request: b"HTTP/1.1 200 OK\r\n\r\n", server_context)
    client_context = ssl.create_default_context(cafile=str(cert))
    post(f"https://localhost:{server.port}/tls", b"{}", LOCAL, client_context)
    assert names == ["localhost"]
    assert b"\r\nHost: localhost:%d\r\n" % server.port in server.requests[0]


def test_a_certificate_for_another_name_fails_the_attempt(serve, tmp_path):
    cert, key = certificate(tmp_path, "elsewhere.test")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server = serve(lambda request: b"HTTP/1.1 200 OK\r\n\r\n", server_context)
    client_context = ssl.create_default_context(cafile=str(cert))
    with pytest.raises(AttemptFailed, match=r"TLS with localhost:\d+ failed: Hostname mismatch"):
        post(f"https://localhost:{server.port}/", b"{}", LOCAL, client_context)
