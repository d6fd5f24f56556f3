"""Any PBX through the generic CTI endpoint (call events: ``threadline/voice``)."""

from threadline.channels.pbx.adapter import PbxChannel, PbxConfig
from threadline.plugins import Integration, PluginType

ADAPTER = PbxChannel
integration = Integration(name="pbx", type=PluginType.TELEPHONY, title="Phone system (any PBX, CTI)",
                          adapters=(PbxChannel,))
__all__ = ["ADAPTER", "integration", "PbxChannel", "PbxConfig"]
