"""Twilio Programmable Voice (kind ``twilio_voice``): the channel instance behind a Twilio phone number.

The number's "A call comes in" webhook points at ``{public_base_url}/hooks/{key}/voice`` and its status
callback at ``…/voice/status`` (the Channels page shows both). Every request is checked with the ``twilio``
library's ``RequestValidator`` against the public URL of the path it came to (``verify_request``), exactly
as the messaging channel checks its hook. Call control lives in the voice package (``threadline/voice``):
this adapter holds the credentials, declares the ``voice`` work class to routing, and refuses text.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from threadline.channels._http import call, json_or_empty, retry_after
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
from threadline.channels.twilio.adapter import api_base_url, describe_error, verify_signature
from threadline.domain.contacts import normalise_phone
from threadline.domain.errors import ValidationFailed
from threadline.domain.messages import OutboundMessage, SendReceipt

VOICE_PATH = "/voice"  # under the channel's hook URL


class TwilioVoiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$", description="Account SID (AC…), Twilio Console → Account info")
    auth_token: SecretStr = Field(min_length=16, description="Auth Token: signs the webhooks, authenticates REST calls")
    phone_number: str = Field(max_length=40, description="The Twilio number customers call, E.164 (+15005550006); "
                              "also the caller ID of callbacks and outbound calls")
    language: str = Field(default="en-US", pattern=r"^[a-z]{2}(-[A-Z]{2})?$",
                          description="Default language of what callers hear (en-US, es-ES, it-IT)")
    flow_id: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                description="The IVR flow callers go through (none: straight to the queue)")
    agent_endpoint: str = Field(default="client", pattern=r"^(client|phone)$",
                                description="How agents take calls: 'client' (the desk's softphone) or "
                                "'phone' (their own number, from agent_numbers; the softphone for agents "
                                "without one)")
    agent_numbers: dict[str, str] = Field(default_factory=dict, max_length=5000, description="Agents' own "
                                          "phone numbers by Threadline user id, e.g. {\"7\": \"+34600111222\"}")
    record: str = Field(default="never", pattern=r"^(never|always|on_demand)$",
                        description="Record answered calls: never, always, or on demand (the agent starts it)")
    announce_every_seconds: int = Field(default=30, ge=10, le=600,
                                        description="How often a queued caller hears their place and wait")
    callback_key: str | None = Field(default="1", pattern=r"^[0-9*#]$",
                                     description="The key a queued caller presses to be called back instead")
    hold_music_url: str | None = Field(default=None, max_length=500,
                                       description="Music queued callers hear between announcements (an MP3/WAV URL)")
    api_key_sid: str | None = Field(default=None, pattern=r"^SK[0-9a-fA-F]{32}$",
                                    description="An API key (SK…) that signs the desk softphone's access tokens")
    api_key_secret: SecretStr | None = Field(default=None, min_length=32, description="That API key's secret")
    twiml_app_sid: str | None = Field(default=None, pattern=r"^AP[0-9a-fA-F]{32}$",
                                      description="A TwiML App (AP…) for calls the softphone places (optional)")
    webhook_shared_key: SecretStr | None = Field(default=None, description="Only if webhooks are signed with a "
                                                 "SharedKey: its secret; otherwise the Auth Token signs")
    api_base_url: str = Field(default="https://api.twilio.com", description="Twilio REST API base URL")

    @field_validator("agent_numbers")
    @classmethod
    def _agent_numbers(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for user, number in v.items():
            if not user.isdigit() or len(user) > 10:
                raise ValueError(f"agent_numbers: {user!r} is not a user id")
            try:
                out[user] = normalise_phone(number)
            except ValidationFailed:
                raise ValueError(f"agent_numbers: {number!r} (user {user}) is not a phone number") from None
        return out

    def agent_to(self, agent_id: int) -> str:
        """Where Threadline rings an agent: their own number when the line says so and it has one, else the
        desk's softphone (a Twilio Client identity ``agent-{id}``)."""
        if self.agent_endpoint == "phone" and str(agent_id) in self.agent_numbers:
            return self.agent_numbers[str(agent_id)]
        return f"client:agent-{agent_id}"

    @field_validator("phone_number")
    @classmethod
    def _number(cls, v: str) -> str:
        try:
            return normalise_phone(v)
        except ValidationFailed:
            raise ValueError("phone_number must be an E.164 phone number such as +15005550006") from None

    @field_validator("api_base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        return api_base_url(v)


class TwilioVoiceChannel(ChannelAdapter):
    kind = "twilio_voice"
    title = "Phone (Twilio Voice)"
    icon = "phone"
    Config = TwilioVoiceConfig
    capabilities = Capabilities(max_text_length=0, attachments=False, identity_kinds=("phone",), work_class="voice")
    secret_destinations = {"auth_token": ("api_base_url",), "webhook_shared_key": (), "api_key_secret": ()}
    config: TwilioVoiceConfig

    @classmethod
    def connect_hint(cls, base_url: str, key: str) -> ConnectHint:
        return ConnectHint("Voice webhook (A call comes in, POST)", f"{base_url}/hooks/{key}{VOICE_PATH}")

    def verify(self, req: RawRequest) -> None:
        # the plain hook URL takes no voice requests (they go to …/voice…): refuse rather than guess
        raise InvalidSignature(f"a voice channel takes calls on its {VOICE_PATH} URL")

    def verify_request(self, req: RawRequest, suffix: str) -> None:
        """Check a voice webhook that came to ``hook_url + suffix`` (``/voice``, ``/voice/status``…)."""
        verify_signature(req, self.config.auth_token, self.config.webhook_shared_key,
                         self.hook_url + suffix if self.hook_url else "")

    def parse(self, req: RawRequest) -> list[Parsed]:
        return []

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        raise PermanentSendError("this is a phone line: it cannot carry text. Call the customer back, or "
                                 "reply on another of their channels (SMS, e-mail)")

    # --- call control (REST): the voice package's worker calls these ------------------------------

    async def _rest(self, path: str, data: dict[str, Any] | list[tuple[str, str]]) -> dict[str, Any]:
        url = f"{self.config.api_base_url}/2010-04-01/Accounts/{self.config.account_sid}{path}"
        if isinstance(data, list):  # repeated names (StatusCallbackEvent): httpx takes them as lists
            form: dict[str, list[str]] = {}
            for name, value in data:
                form.setdefault(name, []).append(value)
            data = form  # type: ignore[assignment]
        resp = await call(self.http, "POST", url, provider="Twilio", data=data,
                          auth=(self.config.account_sid, self.config.auth_token.get_secret_value()))
        body = json_or_empty(resp)
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryableSendError(f"Twilio answered {resp.status_code}", retry_after(resp))
        if resp.status_code >= 400:
            raise PermanentSendError(describe_error(str(body.get("code", "")), str(body.get("message", ""))))
        return body

    async def redirect(self, call_sid: str, twiml: str) -> None:
        """Give a live call new TwiML at once (it leaves its queue, joins a conference…)."""
        await self._rest(f"/Calls/{call_sid}.json", {"Twiml": twiml})

    async def end_call(self, call_sid: str) -> None:
        await self._rest(f"/Calls/{call_sid}.json", {"Status": "completed"})

    async def dial(self, to: str, twiml: str, status_callback: str) -> str:
        """Place an outbound call (a callback, click-to-call) from the channel's number; its CallSid."""
        data = [("To", to), ("From", self.config.phone_number), ("Twiml", twiml),
                ("StatusCallback", status_callback), ("StatusCallbackMethod", "POST")]
        data += [("StatusCallbackEvent", e) for e in ("initiated", "ringing", "answered", "completed")]
        body = await self._rest("/Calls.json", data)
        return str(body.get("sid", ""))

    async def add_participant(self, conference: str, to: str, *, label: str, status_callback: str,
                              coach: str | None = None, muted: bool = False,
                              conference_events: str | None = None) -> str:
        """Bring ``to`` (``client:agent-7`` or a number) into the named conference (created if needed);
        ``coach``: the CallSid this participant whispers to (only that agent hears them)."""
        data = [("From", self.config.phone_number), ("To", to), ("Label", label), ("Beep", "false"),
                ("StartConferenceOnEnter", "true"), ("EndConferenceOnExit", "false"),
                ("StatusCallback", status_callback), ("StatusCallbackMethod", "POST")]
        data += [("StatusCallbackEvent", e) for e in ("initiated", "ringing", "answered", "completed")]
        if conference_events:  # the conference may start with this participant: its events still come to us
            data += [("ConferenceStatusCallback", conference_events), ("ConferenceStatusCallbackMethod", "POST")]
            data += [("ConferenceStatusCallbackEvent", e) for e in ("start", "end", "join", "leave", "hold")]
        if coach:
            data += [("Coaching", "true"), ("CallSidToCoach", coach)]
        if muted:
            data.append(("Muted", "true"))
        body = await self._rest(f"/Conferences/{conference}/Participants.json", data)
        return str(body.get("call_sid", ""))

    async def update_participant(self, conference: str, who: str, fields: dict[str, str]) -> None:
        """Change a participant (``who``: its CallSid or label): Hold/HoldUrl, Muted, Coaching…"""
        await self._rest(f"/Conferences/{conference}/Participants/{who}.json", fields)

    async def remove_participant(self, conference: str, who: str) -> None:
        url = (f"{self.config.api_base_url}/2010-04-01/Accounts/{self.config.account_sid}"
               f"/Conferences/{conference}/Participants/{who}.json")
        resp = await call(self.http, "DELETE", url, provider="Twilio",
                          auth=(self.config.account_sid, self.config.auth_token.get_secret_value()))
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryableSendError(f"Twilio answered {resp.status_code}", retry_after(resp))
        if resp.status_code >= 400 and resp.status_code != 404:  # already gone is fine
            body = json_or_empty(resp)
            raise PermanentSendError(describe_error(str(body.get("code", "")), str(body.get("message", ""))))

    async def start_recording(self, call_sid: str, status_callback: str) -> str:
        """Record a call (both parties); its RecordingSid. Twilio posts the recording when it completes."""
        body = await self._rest(f"/Calls/{call_sid}/Recordings.json",
                                [("RecordingStatusCallback", status_callback), ("RecordingStatusCallbackMethod", "POST"),
                                 ("RecordingStatusCallbackEvent", "completed"), ("RecordingChannels", "dual")])
        return str(body.get("sid", ""))

    async def set_recording(self, call_sid: str, status: str) -> None:
        """Pause (leaving a marked gap: nothing of it is kept) or resume the call's current recording."""
        fields = {"Status": status}
        if status == "paused":
            fields["PauseBehavior"] = "skip"
        await self._rest(f"/Calls/{call_sid}/Recordings/Twilio.CURRENT.json", fields)

    def softphone_token(self, identity: str, ttl_seconds: int = 3600) -> str | None:
        """An access token for the Twilio Voice JS SDK in the desk (identity ``agent-{id}``), signed with
        the channel's API key; None when the channel has none."""
        if not self.config.api_key_sid or self.config.api_key_secret is None:
            return None
        from twilio.jwt.access_token import AccessToken  # noqa: PLC0415 - only the softphone needs it
        from twilio.jwt.access_token.grants import VoiceGrant  # noqa: PLC0415
        token = AccessToken(self.config.account_sid, self.config.api_key_sid,
                            self.config.api_key_secret.get_secret_value(), identity=identity, ttl=ttl_seconds)
        token.add_grant(VoiceGrant(incoming_allow=True, outgoing_application_sid=self.config.twiml_app_sid))
        return str(token.to_jwt())

    async def delete_recording(self, url: str) -> None:
        """Delete a recording at Twilio (its media and its record); gone already is fine."""
        sid = url.rstrip("/").rsplit("/", 1)[-1].split(".")[0]
        target = f"{self.config.api_base_url}/2010-04-01/Accounts/{self.config.account_sid}/Recordings/{sid}.json"
        resp = await call(self.http, "DELETE", target, provider="Twilio",
                          auth=(self.config.account_sid, self.config.auth_token.get_secret_value()))
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryableSendError(f"Twilio answered {resp.status_code}", retry_after(resp))
        if resp.status_code >= 400 and resp.status_code != 404:
            body = json_or_empty(resp)
            raise PermanentSendError(describe_error(str(body.get("code", "")), str(body.get("message", ""))))

    async def fetch_recording(self, url: str, max_bytes: int = 200 * 1024 * 1024) -> tuple[bytes, str]:
        """A recording's audio (WAV) from Twilio, with the account's credentials."""
        from threadline.channels._http import fetch  # noqa: PLC0415
        wav = url if url.endswith((".wav", ".mp3")) else url + ".wav"
        return await fetch(self.http, wav, provider="Twilio", max_bytes=max_bytes,
                           auth=(self.config.account_sid, self.config.auth_token.get_secret_value()))
