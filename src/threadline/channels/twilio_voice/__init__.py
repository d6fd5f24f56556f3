"""Twilio Programmable Voice: the channel instance of a Twilio number (call control: ``threadline/voice``)."""

from threadline.channels.twilio_voice.adapter import TwilioVoiceChannel, TwilioVoiceConfig
from threadline.plugins import Integration, PluginType

ADAPTER = TwilioVoiceChannel
integration = Integration(name="twilio_voice", type=PluginType.TELEPHONY, title="Phone (Twilio Voice)",
                          adapters=(TwilioVoiceChannel,))
__all__ = ["ADAPTER", "integration", "TwilioVoiceChannel", "TwilioVoiceConfig"]
