"""Web chat channel: the embeddable widget's channel kind (``webchat``)."""

from threadline.channels.webchat.adapter import VisitorSession, WebChatChannel, WebChatConfig, identity_hash
from threadline.plugins import Integration, PluginType

ADAPTER = WebChatChannel
integration = Integration(name="webchat", type=PluginType.CHANNEL, title="Web chat",
                          adapters=(WebChatChannel,))
__all__ = ["ADAPTER", "integration", "VisitorSession", "WebChatChannel", "WebChatConfig", "identity_hash"]
