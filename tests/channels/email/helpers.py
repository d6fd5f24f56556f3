"""Test helpers for the email channel: an SMTP sink on loopback that catches our replies."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import warnings
from collections.abc import AsyncIterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


class Sink:
    """Accepts every mail (optionally only after AUTH) and queues (envelope sender, recipients, message)."""

    def __init__(self, *, user: str | None = None, password: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.mails: asyncio.Queue[tuple[str, list[str], EmailMessage]] = asyncio.Queue()
        self.user, self.password, self.tls = user, password, tls
        self.port = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        msg = BytesParser(policy=policy.default).parsebytes(envelope.original_content or envelope.content)
        await self.mails.put((envelope.mail_from, list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 OK"

    def _auth(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login.decode() == self.user and \
            data.password.decode() == self.password
        return AuthResult(success=ok, handled=False)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Sink]:
        loop = asyncio.get_running_loop()
        auth = self.user is not None

        def factory() -> SMTP:
            with warnings.catch_warnings():  # AUTH without TLS: fine on loopback in a test
                warnings.simplefilter("ignore", UserWarning)
                return SMTP(self, hostname="sink.test", authenticator=self._auth if auth else None,
                            auth_required=auth, auth_require_tls=False, tls_context=self.tls,
                            require_starttls=self.tls is not None)

        server = await loop.create_server(factory, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)

    async def next(self, timeout: float = 10.0) -> tuple[str, list[str], EmailMessage]:
        return await asyncio.wait_for(self.mails.get(), timeout)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for mx.acme.test: (cert.pem, key.pem)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.acme.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
