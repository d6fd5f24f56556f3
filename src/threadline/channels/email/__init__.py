"""Email channel: SMTP/IMAP/SendGrid/Mailgun in, threaded SMTP replies out (docs/channels/email.md).

The package: ``adapter`` (verify/parse/send, pure) with ``mime`` and ``config``; ``imap`` (the IMAP client);
``inbound`` (the SMTP receiver, the IMAP poller and the address directory they share: loops it contributes);
``models``/``repo``/``actions`` (its own table, ``email_mailbox_state``); ``web`` (the original-mail route);
``setup`` (the hook that plugs them in through the host)."""

from threadline.channels.email.adapter import EmailChannel
from threadline.channels.email.config import EmailChannelConfig
from threadline.channels.email.setup import setup
from threadline.plugins import Integration, PluginType

ADAPTER = EmailChannel
integration = Integration(name="email", type=PluginType.CHANNEL, title="Email",
                          adapters=(EmailChannel,), setup=setup)
__all__ = ["ADAPTER", "integration", "EmailChannel", "EmailChannelConfig"]
