"""Generic API channel: any system can post customer messages to Threadline and receive replies."""

from threadline.channels.api.adapter import ApiChannel, ApiChannelConfig

ADAPTER = ApiChannel
__all__ = ["ADAPTER", "ApiChannel", "ApiChannelConfig"]
