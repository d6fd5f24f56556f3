"""Generic API channel: any system can post customer messages to Threadline and receive replies."""

from threadline.channels.api.adapter import ApiChannel, ApiChannelConfig
from threadline.plugins import Integration, PluginType

ADAPTER = ApiChannel
integration = Integration(name="api", type=PluginType.CHANNEL, title="API (generic)",
                          adapters=(ApiChannel,))
__all__ = ["ADAPTER", "integration", "ApiChannel", "ApiChannelConfig"]
