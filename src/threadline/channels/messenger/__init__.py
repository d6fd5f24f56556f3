"""Facebook Messenger channel."""

from threadline.channels.messenger.adapter import MessengerChannel, MessengerConfig
from threadline.plugins import Integration, PluginType

ADAPTER = MessengerChannel
integration = Integration(name="messenger", type=PluginType.CHANNEL, title="Facebook Messenger",
                          adapters=(MessengerChannel,))
__all__ = ["ADAPTER", "integration", "MessengerChannel", "MessengerConfig"]
