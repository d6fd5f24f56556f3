"""Asterisk through ARI, the Asterisk REST Interface (kind ``asterisk``).

Asterisk hands calls to a Stasis application (``exten => _X.,1,Stasis(threadline)`` in the dialplan);
Threadline connects to its events websocket (``ws://host:8088/ari/events?app=threadline``) and drives each
call by REST: answer, play prompts, collect keys, music on hold, a mixing bridge with the agent's phone,
which it originates into the same app. There are no webhooks (``verify`` refuses every request): the
transport is a trusted loopback or VPN link, authenticated with an ARI user (``ari.conf``).

This adapter holds the credentials and the REST client, declares the ``voice`` work class and refuses
text; the voice package's ARI loop (``threadline/voice/worker/ari.py``) owns the calls.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from threadline.channels._http import call, fetch, json_or_empty, retry_after
from threadline.channels.base import (
    Capabilities,
    ChannelAdapter,
    ConnectHint,
    InvalidSignature,
    Parsed,
    PermanentSendError,
    RawRequest,
    RetryableSendError,
)
from threadline.domain.messages import OutboundMessage, SendReceipt


class AsteriskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ari_url: str = Field(max_length=300, description="Asterisk's HTTP server (http.conf), e.g. http://pbx.lan:8088")
    username: str = Field(min_length=1, max_length=100, description="The ARI user (ari.conf)")
    password: SecretStr = Field(min_length=1, max_length=200, description="The ARI user's password")
    app: str = Field(default="threadline", pattern=r"^[A-Za-z0-9_.-]{1,80}$",
                     description="The Stasis application name the dialplan sends calls to")
    language: str = Field(default="en-US", pattern=r"^[a-z]{2}(-[A-Z]{2})?$",
                          description="Default language of what callers hear (en-US, es-ES, it-IT)")
    flow_id: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                description="The IVR flow callers go through (none: straight to the queue)")
    agent_endpoint_template: str = Field(default="PJSIP/{extension}", max_length=200,
                                         description="The endpoint Asterisk dials for an agent; {extension} is "
                                         "their extension (agent_extensions, else their e-mail's local part)")
    agent_extensions: dict[str, str] = Field(default_factory=dict,
                                             description="Agents' extensions by Threadline user id")
    our_number: str = Field(default="", max_length=40, description="The number callers dial (for the timeline)")
    prompts_url: str | None = Field(default=None, max_length=500,
                                    description="Where Asterisk fetches Threadline's spoken prompts (default: "
                                    "{public URL}/hooks/{key}/voice/prompts)")
    announce_every_seconds: int = Field(default=30, ge=5, le=600,
                                        description="How often a queued caller hears their place and wait")
    moh_class: str | None = Field(default=None, max_length=80, description="Music on hold class (musiconhold.conf)")
    callback_key: str | None = Field(default=None, pattern=r"^[0-9*#]$", description="The key a queued caller "
                                     "presses to be called back instead of waiting (needs outbound_endpoint_template)")
    outbound_endpoint_template: str | None = Field(
        default=None, max_length=200, description="How Asterisk dials a customer back, with {number} (E.164) or "
        "{digits} (without +), e.g. PJSIP/{digits}@trunk; unset: no callbacks")

    def outbound_endpoint(self, number: str) -> str | None:
        if not self.outbound_endpoint_template:
            return None
        return self.outbound_endpoint_template.format(number=number, digits=number.lstrip("+"))

    @field_validator("ari_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not (v.startswith("https://") or v.startswith("http://")):
            raise ValueError("ari_url must start with http:// or https://")
        return v.rstrip("/").removesuffix("/ari")

    @field_validator("agent_endpoint_template")
    @classmethod
    def _template(cls, v: str) -> str:
        if "{extension}" not in v:
            raise ValueError("agent_endpoint_template must contain {extension}")
        return v


class AsteriskChannel(ChannelAdapter):
    kind = "asterisk"
    title = "Phone (Asterisk ARI)"
    icon = "phone"
    Config = AsteriskConfig
    capabilities = Capabilities(max_text_length=0, attachments=False, identity_kinds=("phone",), work_class="voice")
    secret_destinations = {"password": ("ari_url",)}
    config: AsteriskConfig

    @classmethod
    def connect_hint(cls, base_url: str, key: str) -> ConnectHint:
        return ConnectHint("Dialplan (extensions.conf): send calls to the Stasis app",
                           "exten => _X.,1,Stasis(threadline)\n same => n,Hangup()", snippet=True)

    def verify(self, req: RawRequest) -> None:
        raise InvalidSignature("an Asterisk channel takes no webhooks: Threadline connects to ARI itself")

    def parse(self, req: RawRequest) -> list[Parsed]:
        return []

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        raise PermanentSendError("this is a phone line: it cannot carry text. Call the customer back, or "
                                 "reply on another of their channels (SMS, e-mail)")

    # --- ARI ----------------------------------------------------------------------------------------

    def events_url(self) -> str:
        """The events websocket of the app (credentials as ``api_key``, which ARI accepts there)."""
        parts = urlsplit(self.config.ari_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        key = quote(f"{self.config.username}:{self.config.password.get_secret_value()}", safe=":")
        query = f"app={quote(self.config.app)}&api_key={key}"
        return urlunsplit((scheme, parts.netloc, parts.path + "/ari/events", query, ""))

    def agent_endpoint(self, agent_id: int, email: str) -> str:
        extension = self.config.agent_extensions.get(str(agent_id)) or email.split("@")[0]
        return self.config.agent_endpoint_template.format(extension=extension)

    async def _ari(self, method: str, path: str, params: dict[str, Any] | None = None, *,
                   missing_ok: bool = False) -> dict[str, Any]:
        url = f"{self.config.ari_url}/ari{path}"
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        resp = await call(self.http, method, url, provider="Asterisk", params=clean,
                          auth=(self.config.username, self.config.password.get_secret_value()))
        if resp.status_code == 404 and missing_ok:
            return {}
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryableSendError(f"Asterisk answered {resp.status_code}", retry_after(resp))
        if resp.status_code >= 400:
            body = json_or_empty(resp)
            raise PermanentSendError(f"Asterisk refused {method} {path}: {resp.status_code} "
                                     f"{body.get('message', '')}".strip())
        return json_or_empty(resp)

    async def answer(self, channel_id: str) -> None:
        await self._ari("POST", f"/channels/{channel_id}/answer")

    async def play(self, channel_id: str, media: str | list[str], *, playback_id: str | None = None,
                   lang: str | None = None) -> str:
        """Queue media on the channel (``sound:hello-world``, ``sound:http://…/x.wav``, ``recording:…``);
        the playback's id, which its ``PlaybackFinished`` event names."""
        media = ",".join(media) if isinstance(media, list) else media
        path = f"/channels/{channel_id}/play" + (f"/{playback_id}" if playback_id else "")
        body = await self._ari("POST", path, {"media": media, "lang": lang})
        return str(body.get("id", playback_id or ""))

    async def stop_playback(self, playback_id: str) -> None:
        await self._ari("DELETE", f"/playbacks/{playback_id}", missing_ok=True)

    async def start_moh(self, channel_id: str, moh_class: str | None = None) -> None:
        await self._ari("POST", f"/channels/{channel_id}/moh", {"mohClass": moh_class})

    async def stop_moh(self, channel_id: str) -> None:
        await self._ari("DELETE", f"/channels/{channel_id}/moh", missing_ok=True)

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self._ari("DELETE", f"/channels/{channel_id}", {"reason": reason}, missing_ok=True)

    async def create_bridge(self, bridge_id: str, kind: str = "mixing", name: str | None = None) -> str:
        """Create (or, with the same id, update) a bridge; its id."""
        body = await self._ari("POST", f"/bridges/{bridge_id}", {"type": kind, "name": name})
        return str(body.get("id", bridge_id))

    async def add_to_bridge(self, bridge_id: str, *channel_ids: str) -> None:
        await self._ari("POST", f"/bridges/{bridge_id}/addChannel", {"channel": ",".join(channel_ids)})

    async def remove_from_bridge(self, bridge_id: str, channel_id: str) -> None:
        await self._ari("POST", f"/bridges/{bridge_id}/removeChannel", {"channel": channel_id}, missing_ok=True)

    async def pause_recording(self, name: str, paused: bool) -> None:
        """Pause a live recording (the paused span is left out of the file) or go on recording."""
        await self._ari("POST" if paused else "DELETE", f"/recordings/live/{name}/pause")

    async def bridge_moh(self, bridge_id: str, on: bool, moh_class: str | None = None) -> None:
        if on:
            await self._ari("POST", f"/bridges/{bridge_id}/moh", {"mohClass": moh_class})
        else:
            await self._ari("DELETE", f"/bridges/{bridge_id}/moh", missing_ok=True)

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self._ari("DELETE", f"/bridges/{bridge_id}", missing_ok=True)

    async def originate(self, endpoint: str, *, app_args: str, channel_id: str | None = None,
                        caller_id: str | None = None, timeout: int = 30) -> str:
        """Dial ``endpoint`` (``PJSIP/1001``); when it answers it enters this Stasis app with ``app_args``."""
        body = await self._ari("POST", "/channels", {"endpoint": endpoint, "app": self.config.app,
                                                     "appArgs": app_args, "callerId": caller_id,
                                                     "timeout": timeout, "channelId": channel_id})
        return str(body.get("id", channel_id or ""))

    async def record(self, channel_id: str, name: str, *, max_seconds: int = 120, beep: bool = True,
                     fmt: str = "wav") -> None:
        await self._ari("POST", f"/channels/{channel_id}/record",
                        {"name": name, "format": fmt, "maxDurationSeconds": max_seconds,
                         "beep": "true" if beep else "false", "ifExists": "overwrite", "terminateOn": "#"})

    async def record_bridge(self, bridge_id: str, name: str, fmt: str = "wav") -> None:
        """Record everything said in the bridge (both parties), until the bridge goes: ``RecordingFinished``
        names it; it is then a stored recording (``/recordings/stored/{name}``)."""
        await self._ari("POST", f"/bridges/{bridge_id}/record",
                        {"name": name, "format": fmt, "maxDurationSeconds": 0, "beep": "false",
                         "ifExists": "overwrite"})

    async def fetch_recording(self, url: str, max_bytes: int = 200 * 1024 * 1024) -> tuple[bytes, str]:
        """A stored recording's audio (``{ari_url}/ari/recordings/stored/{name}/file``, as the voice loop
        keeps it for a voicemail), only from this ARI server."""
        if not url.startswith(f"{self.config.ari_url}/ari/recordings/stored/"):
            raise PermanentSendError("the recording is not a stored recording of this Asterisk server")
        return await fetch(self.http, url, provider="Asterisk", max_bytes=max_bytes,
                           auth=(self.config.username, self.config.password.get_secret_value()))

    async def snoop(self, channel_id: str, *, spy: str = "both", whisper: str = "none",
                    app_args: str = "", snoop_id: str | None = None) -> str:
        """A channel that listens to (``spy``) or speaks into (``whisper``) ``channel_id``, in this app."""
        body = await self._ari("POST", f"/channels/{channel_id}/snoop",
                               {"spy": spy, "whisper": whisper, "app": self.config.app, "appArgs": app_args,
                                "snoopId": snoop_id})
        return str(body.get("id", snoop_id or ""))
