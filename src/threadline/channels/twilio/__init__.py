"""Twilio Messaging: SMS/MMS (``twilio``) and WhatsApp via Twilio (``twilio_whatsapp``)."""

from threadline.channels.twilio.adapter import TwilioChannel, TwilioConfig, TwilioWhatsAppChannel

ADAPTER = TwilioChannel
__all__ = ["ADAPTER", "TwilioChannel", "TwilioConfig", "TwilioWhatsAppChannel"]
