"""Email channel: SMTP/IMAP/SendGrid/Mailgun in, threaded SMTP replies out (docs/channels/email.md)."""

from threadline.channels.email.adapter import EmailChannel
from threadline.channels.email.config import EmailChannelConfig

ADAPTER = EmailChannel
__all__ = ["ADAPTER", "EmailChannel", "EmailChannelConfig"]
