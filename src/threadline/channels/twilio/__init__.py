"""Twilio Messaging: SMS/MMS (``twilio``) and WhatsApp via Twilio (``twilio_whatsapp``)."""

from threadline.channels.twilio.adapter import TwilioChannel, TwilioConfig, TwilioWhatsAppChannel
from threadline.plugins import Integration, PluginType

ADAPTER = TwilioChannel
integration = Integration(name="twilio", type=PluginType.CHANNEL, title="Twilio messaging (SMS/MMS, WhatsApp)",
                          adapters=(TwilioChannel, TwilioWhatsAppChannel))
__all__ = ["ADAPTER", "integration", "TwilioChannel", "TwilioConfig", "TwilioWhatsAppChannel"]
