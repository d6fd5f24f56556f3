"""Web chat channel: the embeddable widget's channel kind (``webchat``), and everything it runs.

The package, layered inside: ``adapter`` (verify/parse/send, pure); ``repo`` (its queries) and ``actions``
(typing, read receipts); ``web/`` (the visitors' endpoints and websocket, the widget script, the agents'
typing/read API); ``setup`` (the hook that mounts them through the host). CSAT ratings are the core's
(actions/csat.py): the desk and the customer 360 read them."""

from threadline.channels.webchat.adapter import VisitorSession, WebChatChannel, WebChatConfig, identity_hash
from threadline.channels.webchat.setup import setup
from threadline.plugins import Integration, PluginType

ADAPTER = WebChatChannel
integration = Integration(name="webchat", type=PluginType.CHANNEL, title="Web chat",
                          adapters=(WebChatChannel,), setup=setup)
__all__ = ["ADAPTER", "integration", "VisitorSession", "WebChatChannel", "WebChatConfig", "identity_hash"]
