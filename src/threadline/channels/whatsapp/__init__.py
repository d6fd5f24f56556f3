"""Meta WhatsApp Cloud API channel."""

from threadline.channels.whatsapp.adapter import WhatsAppChannel, WhatsAppConfig

ADAPTER = WhatsAppChannel
__all__ = ["ADAPTER", "WhatsAppChannel", "WhatsAppConfig"]
