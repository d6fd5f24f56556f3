"""Instagram messaging channel."""

from threadline.channels.instagram.adapter import InstagramChannel

ADAPTER = InstagramChannel
__all__ = ["ADAPTER", "InstagramChannel"]
