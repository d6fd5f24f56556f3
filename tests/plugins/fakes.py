"""Integration packages a test installs through fake entry points (tests/plugins/)."""

from __future__ import annotations

from pydantic import BaseModel

from threadline.channels.base import ChannelAdapter, RawRequest
from threadline.domain.messages import InboundMessage, OutboundMessage, SendReceipt, StatusUpdate
from threadline.plugins import Integration, PluginType


class NoConfig(BaseModel):
    pass


class _Adapter(ChannelAdapter):
    Config = NoConfig

    def verify(self, req: RawRequest) -> None:
        return None

    def parse(self, req: RawRequest) -> list[InboundMessage | StatusUpdate]:
        return []

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        return SendReceipt(provider_id="1")


class PigeonChannel(_Adapter):
    kind = "pigeon"
    title = "Carrier pigeon"


class RivalPigeonChannel(_Adapter):
    kind = "pigeon"
    title = "Another carrier pigeon"


class EmailLookalike(_Adapter):
    kind = "email"
    title = "Email, but ours"


class LegacyFaxChannel(_Adapter):
    kind = "fax"
    title = "Fax"


pigeon = Integration(name="pigeon", type=PluginType.CHANNEL, title="Carrier pigeon", adapters=(PigeonChannel,))
rival = Integration(name="rival_pigeon", type=PluginType.CHANNEL, title="Rival", adapters=(RivalPigeonChannel,))
same_name = Integration(name="pigeon", type=PluginType.CRM, title="A CRM named like the pigeon")
lookalike = Integration(name="mail2", type=PluginType.CHANNEL, title="Mail 2", adapters=(EmailLookalike,))
# built without validation, as a careless package might: the registry validates again at load
bad_manifest = Integration.model_construct(name="Bad Name", type=PluginType.CHANNEL, title=" ", adapters=(),
                                           setup=None, migrations=None)
crm_with_adapter = Integration.model_construct(name="crm", type=PluginType.CRM, title="CRM",
                                               adapters=(PigeonChannel,), setup=None, migrations=None)
not_a_manifest = {"name": "dict", "type": "channel"}
