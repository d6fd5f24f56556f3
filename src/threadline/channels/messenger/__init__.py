"""Facebook Messenger channel."""

from threadline.channels.messenger.adapter import MessengerChannel, MessengerConfig

ADAPTER = MessengerChannel
__all__ = ["ADAPTER", "MessengerChannel", "MessengerConfig"]
