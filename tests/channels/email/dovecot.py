"""A throwaway Dovecot IMAP server on loopback (Debian's dovecot-imapd), for the poller's tests.

``make test`` installs the package when it can (see the Makefile's ``dovecot`` target); without it the
tests skip locally and fail under CI=true, like PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import os
import pwd
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "agent", "secret-pw"


def available() -> bool:
    return os.path.exists(DOVECOT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot:
    def __init__(self, root: Path, port: int, tls_port: int) -> None:
        self.root, self.port, self.tls_port = root, port, tls_port  # tls_port: implicit TLS (imaps)

    def client(self) -> imaplib.IMAP4:
        c = imaplib.IMAP4("127.0.0.1", self.port)
        c.login(USER, PASSWORD)
        return c

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        c = self.client()
        try:
            typ, data = c.append(folder, None, None, raw)
            assert typ == "OK", data
        finally:
            c.logout()

    def flags(self, folder: str = "INBOX") -> dict[int, str]:
        """UID → FLAGS of every mail in the folder."""
        c = self.client()
        try:
            c.select(folder)
            typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
            out: dict[int, str] = {}
            for line in data:
                if isinstance(line, bytes) and b"UID" in line:
                    text = line.decode()
                    uid = int(text.split("UID ")[1].split()[0].rstrip(")"))
                    out[uid] = text.split("FLAGS (")[1].split(")")[0]
            return out
        finally:
            c.logout()


@contextlib.asynccontextmanager
async def running() -> AsyncIterator[Dovecot]:
    """Plain IMAP on ``port`` and IMAP over TLS (self-signed certificate, ``root/cert.pem``) on ``tls_port``."""
    root, port, tls_port = await asyncio.to_thread(_configure)
    proc = await asyncio.create_subprocess_exec(DOVECOT, "-F", "-c", str(root / "dovecot.conf"),
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(15):  # until it accepts a login (or exits)
            while True:
                if proc.returncode is not None:
                    log = await asyncio.to_thread(_log, root)
                    raise RuntimeError(f"dovecot exited: {log[-2000:]}")
                try:
                    await asyncio.to_thread(lambda: Dovecot(root, port, tls_port).client().logout())
                    break
                except (OSError, imaplib.IMAP4.error):
                    await asyncio.sleep(0.05)
        yield Dovecot(root, port, tls_port)
    finally:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await asyncio.to_thread(shutil.rmtree, root, True)


def _log(root: Path) -> str:
    path = root / "dovecot.log"
    return path.read_text() if path.exists() else ""


def _configure() -> tuple[Path, int, int]:
    """A config, password file and mail folder in a fresh directory readable by dovecot's users."""
    root = Path(tempfile.mkdtemp(prefix="tl-dovecot-"))
    root.chmod(0o755)
    port, tls_port = _free_port(), _free_port()
    from tests.channels.email.helpers import self_signed

    cert, key = self_signed(root)
    key.chmod(0o644)  # read by dovecot's own user
    if os.geteuid() == 0:  # dovecot refuses to run its login and mail processes as root
        internal, login = "dovecot", "dovenull"
    else:
        internal = login = pwd.getpwuid(os.getuid()).pw_name
    mail_user = pwd.getpwnam(internal)
    for d in ("mail", "run", "state"):
        (root / d).mkdir()
    os.chown(root / "mail", mail_user.pw_uid, mail_user.pw_gid)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    (root / "dovecot.conf").write_text(f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
mail_uid = {mail_user.pw_uid}
mail_gid = {mail_user.pw_gid}
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
service auth {{
  user = {internal}
}}
service auth-worker {{
  user = {internal}
}}
""")
    return root, port, tls_port
