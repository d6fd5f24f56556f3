"""Email channel: SMTP/IMAP/SendGrid/Mailgun in, threaded SMTP replies out (docs/channels/email.md)."""

from threadline.channels.email.adapter import EmailChannel
from threadline.channels.email.config import EmailChannelConfig
from threadline.plugins import Integration, PluginType

ADAPTER = EmailChannel
integration = Integration(name="email", type=PluginType.CHANNEL, title="Email",
                          adapters=(EmailChannel,))
__all__ = ["ADAPTER", "integration", "EmailChannel", "EmailChannelConfig"]
