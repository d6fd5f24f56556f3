"""Meta WhatsApp Cloud API channel."""

from threadline.channels.whatsapp.adapter import WhatsAppChannel, WhatsAppConfig
from threadline.plugins import Integration, PluginType

ADAPTER = WhatsAppChannel
integration = Integration(name="whatsapp", type=PluginType.CHANNEL, title="WhatsApp (Cloud API)",
                          adapters=(WhatsAppChannel,))
__all__ = ["ADAPTER", "integration", "WhatsAppChannel", "WhatsAppConfig"]
