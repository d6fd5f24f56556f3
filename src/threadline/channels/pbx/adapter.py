"""Any PBX (Asterisk, FreeSWITCH, 3CX, …) through the generic CTI endpoint (kind ``pbx``).

The PBX (or a small script beside it) posts call events to ``{public_base_url}/hooks/{key}/cti`` as JSON
or a form, with the field names the generic CTI APIs of help desks use (``event`` newCall / answer /
hangup, ``callId``, ``direction``, ``from``, ``to``, ``user``, ``cause``): see ``threadline/voice/domain/calls.CtiEvent``.
It authenticates with the channel's token: ``Authorization: Bearer <token>`` (or ``?token=`` for PBXs
that can only configure a URL). Calls then appear in the timeline, the answering agent gets a screen pop
of the customer, and a missed call becomes a callback task. Text cannot be sent on a phone line.
"""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from threadline.channels.base import (
    BadPayload,
    Capabilities,
    ChannelAdapter,
    ConnectHint,
    InvalidSignature,
    Parsed,
    PermanentSendError,
    RawRequest,
)
from threadline.domain.messages import OutboundMessage, SendReceipt


class PbxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: SecretStr = Field(min_length=24, max_length=200,
                             description="The secret the PBX sends (Authorization: Bearer …); 24 characters or more")


class PbxChannel(ChannelAdapter):
    kind = "pbx"
    title = "Phone system (any PBX, CTI)"
    icon = "phone"
    Config = PbxConfig
    capabilities = Capabilities(max_text_length=0, attachments=False, identity_kinds=("phone",), work_class="voice")
    secret_destinations = {"token": ()}
    config: PbxConfig

    @classmethod
    def connect_hint(cls, base_url: str, key: str) -> ConnectHint:
        return ConnectHint("CTI events URL (POST, Authorization: Bearer <token>)", f"{base_url}/hooks/{key}/cti")

    def verify(self, req: RawRequest) -> None:
        given = req.header("authorization").removeprefix("Bearer ").strip() if \
            req.header("authorization").startswith("Bearer ") else ""
        if not given:
            given = dict(parse_qsl(urlsplit(req.url).query)).get("token", "")
        if not given:
            raise InvalidSignature("missing token (Authorization: Bearer <token>, or ?token=)")
        if not hmac.compare_digest(given.encode(), self.config.token.get_secret_value().encode()):
            raise InvalidSignature("wrong token")

    def event(self, req: RawRequest) -> dict[str, Any]:
        """The call event's fields (JSON or a form); the voice package checks them (``CtiEvent``)."""
        ctype = req.header("content-type").split(";")[0].strip().lower()
        try:
            if ctype == "application/json":
                data = json.loads(req.body)
            else:
                data = dict(parse_qsl(req.body.decode("utf-8"), keep_blank_values=True))
                if "user[]" in data:
                    data["user"] = [v for k, v in parse_qsl(req.body.decode("utf-8")) if k == "user[]"]
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise BadPayload(f"the body is neither JSON nor a form: {exc}") from None
        if not isinstance(data, dict):
            raise BadPayload("the body must be an object with an 'event' field")
        return data

    def parse(self, req: RawRequest) -> list[Parsed]:
        return []

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        raise PermanentSendError("this is a phone line: it cannot carry text. Call the customer back, or "
                                 "reply on another of their channels (SMS, e-mail)")
