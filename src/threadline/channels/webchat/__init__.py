"""Web chat channel: the embeddable widget's channel kind (``webchat``)."""

from threadline.channels.webchat.adapter import VisitorSession, WebChatChannel, WebChatConfig, identity_hash

ADAPTER = WebChatChannel
__all__ = ["ADAPTER", "VisitorSession", "WebChatChannel", "WebChatConfig", "identity_hash"]
