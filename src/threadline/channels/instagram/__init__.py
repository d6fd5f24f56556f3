"""Instagram messaging channel."""

from threadline.channels.instagram.adapter import InstagramChannel
from threadline.plugins import Integration, PluginType

ADAPTER = InstagramChannel
integration = Integration(name="instagram", type=PluginType.CHANNEL, title="Instagram messaging",
                          adapters=(InstagramChannel,))
__all__ = ["ADAPTER", "integration", "InstagramChannel"]
