"""Asterisk through ARI (a Stasis app): full call control by REST and an events websocket
(``threadline/voice/worker/ari.py`` runs the calls)."""

from threadline.channels.asterisk.adapter import AsteriskChannel, AsteriskConfig
from threadline.plugins import Integration, PluginType

ADAPTER = AsteriskChannel
integration = Integration(name="asterisk", type=PluginType.TELEPHONY, title="Phone (Asterisk ARI)",
                          adapters=(AsteriskChannel,))
__all__ = ["ADAPTER", "integration", "AsteriskChannel", "AsteriskConfig"]
