"""The email package's setup hook: its SMTP receiver and IMAP poller as loops, the original-mail route,
and the address directory they share, emptied whenever a channel changes."""

from __future__ import annotations

from dataclasses import dataclass

from threadline.channels.email import web
from threadline.channels.email.inbound import EmailDirectory, ImapPoller, SmtpReceiver
from threadline.plugins.host import Host


@dataclass
class Email:
    """The email package's runtime in one process."""

    directory: EmailDirectory
    smtp: SmtpReceiver
    imap: ImapPoller

    def channels_changed(self) -> None:
        self.directory.invalidate()
        self.imap.wake()


def setup(host: Host) -> Email:
    directory = EmailDirectory(host)
    email = Email(directory, SmtpReceiver(host, directory), ImapPoller(host, directory))
    host.on_channels_changed(email.channels_changed)
    host.add_routes(web.router(host))
    if host.settings.smtp_port is not None:  # the embedded SMTP server is off unless a port is set
        host.add_loop(email.smtp)
    if host.settings.imap_polling:
        host.add_loop(email.imap)
    return email
