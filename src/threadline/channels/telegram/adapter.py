"""Telegram Bot API (kind ``telegram``).

Inbound: Telegram POSTs one ``Update`` as JSON to the URL given to ``setWebhook``, with the header
``X-Telegram-Bot-Api-Secret-Token`` equal to the ``secret_token`` given there (exact match, no HMAC).
``message``, ``edited_message``, ``business_message`` and ``callback_query`` (a pressed button) become
customer messages; ``message_id`` is unique only within a chat, so messages are keyed ``{chat_id}:{message_id}``
and the whole request by ``update_id``. The sender is the chat id, a handle identity of this channel (a
contact shared by the user about themselves also gives their phone number). Bots get no read receipts.

Outbound: ``POST {api}/bot{token}/sendMessage`` (``reply_parameters`` when answering a message);
429 carries ``parameters.retry_after``; 403 (the user blocked the bot) and 400 are permanent.
"""

from __future__ import annotations

import hmac
import json
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from threadline.channels._http import call, fetch, json_or_empty
from threadline.channels.base import (
    BadPayload,
    Capabilities,
    ChannelAdapter,
    ChannelError,
    InvalidSignature,
    PermanentSendError,
    RawRequest,
    RetryableSendError,
)
from threadline.domain.contacts import IdentityKind, IdentityValue, normalise_phone
from threadline.domain.errors import ValidationFailed
from threadline.domain.messages import (
    Attachment,
    DeliveryStatus,
    InboundMessage,
    OutboundMessage,
    Sender,
    SendReceipt,
    StatusUpdate,
)

MESSAGE_KEYS = ("message", "edited_message", "business_message", "edited_business_message")
MEDIA = {"document": "application/octet-stream", "voice": "audio/ogg", "audio": "audio/mpeg",
         "video": "video/mp4", "video_note": "video/mp4", "animation": "video/mp4", "sticker": "image/webp"}


class TelegramConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot_token: SecretStr = Field(description="The token @BotFather gave, 123456:ABC-…")
    secret_token: SecretStr = Field(min_length=16, max_length=256,
                                    description="Sent by Telegram in X-Telegram-Bot-Api-Secret-Token (setWebhook); "
                                    "16-256 of A-Z a-z 0-9 _ -")
    api_base_url: str = Field(default="https://api.telegram.org", description="Bot API server")

    @field_validator("bot_token")
    @classmethod
    def _token(cls, v: SecretStr) -> SecretStr:
        raw = v.get_secret_value()
        head, _, tail = raw.partition(":")
        if not head.isdigit() or len(tail) < 20:
            raise ValueError("bot_token looks like 123456789:AA… (from @BotFather)")
        return v

    @field_validator("secret_token")
    @classmethod
    def _secret(cls, v: SecretStr) -> SecretStr:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", v.get_secret_value()):
            raise ValueError("secret_token may only contain A-Z, a-z, 0-9, _ and -")
        return v

    @field_validator("api_base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        if not (v.startswith("https://") or v.startswith("http://")):
            raise ValueError("api_base_url must start with https:// or http://")
        return v.rstrip("/")


def _name(user: dict[str, Any]) -> str:
    return " ".join(str(user.get(k)) for k in ("first_name", "last_name") if user.get(k)) or str(
        user.get("username") or "")


class TelegramChannel(ChannelAdapter):
    kind = "telegram"
    title = "Telegram bot"
    icon = "send"
    Config = TelegramConfig
    secret_headers = frozenset({"x-telegram-bot-api-secret-token"})
    capabilities = Capabilities(max_text_length=4096, attachments=True, max_attachment_bytes=50 * 1024 * 1024,
                                identity_kinds=("handle",), typing=True, work_class="messaging")
    config: TelegramConfig

    def verify(self, req: RawRequest) -> None:
        got = req.header("x-telegram-bot-api-secret-token")
        if not got:
            raise InvalidSignature("missing X-Telegram-Bot-Api-Secret-Token header")
        if not hmac.compare_digest(got.encode(), self.config.secret_token.get_secret_value().encode()):
            raise InvalidSignature("X-Telegram-Bot-Api-Secret-Token does not match the channel's secret token")

    def parse(self, req: RawRequest) -> list[InboundMessage | StatusUpdate]:
        try:
            update: Any = json.loads(req.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadPayload(f"body is not valid JSON: {exc}") from None
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            raise BadPayload("not a Telegram Update (no update_id)")
        for key in MESSAGE_KEYS:
            if isinstance(update.get(key), dict):
                return [self._message(update[key], edited=key.startswith("edited"))]
        cq = update.get("callback_query")
        if isinstance(cq, dict):
            return [self._callback(cq)]
        return []  # my_chat_member, polls, channel posts…: acknowledged, not customer messages

    def dedupe_key(self, items: list[InboundMessage | StatusUpdate], req: RawRequest) -> str:
        try:
            return f"update:{json.loads(req.body)['update_id']}"
        except (ValueError, KeyError, TypeError):
            return super().dedupe_key(items, req)

    def _sender(self, chat: dict[str, Any], user: dict[str, Any], contact: dict[str, Any] | None) -> Sender:
        if chat.get("id") is None:
            raise BadPayload("a message without chat.id")
        identities = [IdentityValue(IdentityKind.HANDLE, str(chat["id"]), self.scope)]
        if contact and contact.get("user_id") == user.get("id") and contact.get("phone_number"):
            try:  # the user shared their own number (request_contact button): Telegram vouches for it
                identities.append(IdentityValue(IdentityKind.PHONE,
                                                normalise_phone("+" + str(contact["phone_number"]).lstrip("+"))))
            except ValidationFailed:
                pass
        return Sender(tuple(identities), _name(user) or _name(chat))

    def _message(self, m: dict[str, Any], *, edited: bool) -> InboundMessage:
        chat = m.get("chat") if isinstance(m.get("chat"), dict) else {}
        user = m.get("from") if isinstance(m.get("from"), dict) else {}
        if "message_id" not in m:
            raise BadPayload("a message without message_id")
        key = f"{chat.get('id')}:{m['message_id']}"
        text = str(m.get("text") or m.get("caption") or "")
        extra: dict[str, object] = {"channel": "telegram", "chat_id": chat.get("id"), "message_id": m["message_id"]}
        attachments: list[Attachment] = []
        if isinstance(m.get("photo"), list) and m["photo"]:
            best = max(m["photo"], key=lambda p: (p.get("file_size") or 0, p.get("width") or 0))
            attachments.append(Attachment(f"telegram-file:{best.get('file_id')}", "image/jpeg", "photo.jpg",
                                          best.get("file_size")))
        for kind, ctype in MEDIA.items():
            f = m.get(kind)
            if isinstance(f, dict) and f.get("file_id"):
                attachments.append(Attachment(f"telegram-file:{f['file_id']}", str(f.get("mime_type") or ctype),
                                              str(f.get("file_name") or kind), f.get("file_size")))
        contact = m.get("contact") if isinstance(m.get("contact"), dict) else None
        if contact:
            extra["contact"] = contact
            text = text or f"Shared contact: {_name(contact)} {contact.get('phone_number', '')}".strip()
        loc = m.get("location") if isinstance(m.get("location"), dict) else None
        if loc:
            extra["location"] = loc
            text = text or f"Location: {loc.get('latitude')}, {loc.get('longitude')}"
        references: tuple[str, ...] = ()
        reply = m.get("reply_to_message")
        if isinstance(reply, dict) and "message_id" in reply:
            references = (f"{chat.get('id')}:{reply['message_id']}",)
            extra["reply_to"] = references[0]
        if edited:
            key = f"{key}:edit:{m.get('edit_date', '')}"
            extra["edited"] = True
            text = f"(edited) {text}"
        if not text.strip() and not attachments:
            text = "[a Telegram message Threadline cannot show]"
        sent = m.get("edit_date") if edited else m.get("date")
        return InboundMessage(provider_id=key, sender=self._sender(chat, user, contact), text=text,
                              attachments=tuple(attachments), extra=extra, references=references,
                              media_pending=tuple(a.url for a in attachments),  # downloaded after the commit
                              sent_at=datetime.fromtimestamp(sent, UTC) if isinstance(sent, int) else None)

    def _callback(self, cq: dict[str, Any]) -> InboundMessage:
        user = cq.get("from") if isinstance(cq.get("from"), dict) else {}
        msg = cq.get("message") if isinstance(cq.get("message"), dict) else {}
        chat = msg.get("chat") if isinstance(msg.get("chat"), dict) else {"id": user.get("id")}
        refs = (f"{chat.get('id')}:{msg['message_id']}",) if "message_id" in msg else ()
        return InboundMessage(provider_id=f"callback:{cq.get('id')}", sender=self._sender(chat, user, None),
                              text=str(cq.get("data") or ""), references=refs,
                              extra={"channel": "telegram", "button": {"data": cq.get("data")},
                                     "chat_id": chat.get("id")})

    # --- outbound ------------------------------------------------------------------------------

    def _url(self, method: str) -> str:
        return f"{self.config.api_base_url}/bot{self.config.bot_token.get_secret_value()}/{method}"

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        chat_id = msg.to.value
        if len(msg.attachments) > 1:
            raise PermanentSendError("Telegram sends one attachment per message; send them one by one")
        body: dict[str, Any] = {"chat_id": chat_id}
        method = "sendMessage"
        upload: dict[str, tuple[str, bytes, str]] | None = None
        if msg.attachments:
            a = msg.attachments[0]
            method, field = ("sendPhoto", "photo") if a.content_type.startswith("image/") else ("sendDocument",
                                                                                                  "document")
            if a.data is not None:  # a file stored in Threadline: uploaded (multipart)
                upload = {field: (a.name or "file", a.data, a.content_type or "application/octet-stream")}
            elif a.url.startswith(("https://", "http://")):
                body[field] = a.url
            else:
                raise PermanentSendError(f"{a.name or 'the attachment'} is neither stored here nor at a public URL")
            if msg.text:
                body["caption"] = msg.text
        else:
            body["text"] = msg.text
        ref = msg.reply_to_provider_id or ""
        ref_chat, _, ref_mid = ref.partition(":")
        if ref_chat == chat_id and ref_mid.isdigit():
            body["reply_parameters"] = {"message_id": int(ref_mid), "allow_sending_without_reply": True}
        if upload is not None:
            form = {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in body.items()}
            resp = await call(self.http, "POST", self._url(method), provider="Telegram", data=form, files=upload)
        else:
            resp = await call(self.http, "POST", self._url(method), provider="Telegram", json=body)
        answer = json_or_empty(resp)
        if resp.status_code == 429 or resp.status_code >= 500:
            wait = (answer.get("parameters") or {}).get("retry_after")
            raise RetryableSendError(f"Telegram error {resp.status_code}: {answer.get('description') or ''}".strip(),
                                     retry_after=float(wait) if isinstance(wait, int | float) else None)
        if resp.status_code >= 400 or not answer.get("ok"):
            raise PermanentSendError(f"Telegram error {answer.get('error_code') or resp.status_code}: "
                                     f"{answer.get('description') or 'refused'}")
        result = answer.get("result") or {}
        if not isinstance(result, dict) or "message_id" not in result:
            raise RetryableSendError("Telegram answered without a message_id")
        return SendReceipt(provider_id=f"{(result.get('chat') or {}).get('id', chat_id)}:{result['message_id']}",
                           status=DeliveryStatus.SENT)

    async def download(self, url: str, max_bytes: int) -> tuple[bytes, str]:
        """``telegram-file:{file_id}``: getFile gives a path valid for an hour, fetched from the file endpoint
        (the Bot API serves files up to 20 MB)."""
        file_id = url.removeprefix("telegram-file:")
        if file_id == url or not file_id:
            raise PermanentSendError(f"not a Telegram file reference: {url[:100]}")
        resp = await call(self.http, "POST", self._url("getFile"), provider="Telegram", json={"file_id": file_id})
        answer = json_or_empty(resp)
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryableSendError(f"Telegram error {resp.status_code}: {answer.get('description') or ''}")
        path = (answer.get("result") or {}).get("file_path") if answer.get("ok") else None
        if not path:
            raise PermanentSendError(f"Telegram cannot give this file: {answer.get('description') or 'no file_path'}")
        token = self.config.bot_token.get_secret_value()
        data, ctype = await fetch(self.http, f"{self.config.api_base_url}/file/bot{token}/{path}", provider="Telegram",
                                  max_bytes=max_bytes)
        return data, ctype

    async def check(self) -> list[str]:  # type: ignore[override]
        try:
            resp = await call(self.http, "POST", self._url("getMe"), provider="Telegram")
        except RetryableSendError as exc:
            raise ChannelError(str(exc)) from None
        answer = json_or_empty(resp)
        if resp.status_code >= 400 or not answer.get("ok"):
            raise ChannelError(f"Telegram refused the bot token: {answer.get('description') or resp.status_code}")
        bot = answer.get("result") or {}
        return [f"Telegram bot @{bot.get('username')} ({bot.get('first_name')})"]

    async def connect(self) -> list[str]:
        """Point the bot at this channel's hook URL with the secret token (setWebhook)."""
        if not self.hook_url.startswith("https://"):
            raise ChannelError("Telegram only calls https:// URLs; set THREADLINE_PUBLIC_BASE_URL to one")
        resp = await call(self.http, "POST", self._url("setWebhook"), provider="Telegram",
                          json={"url": self.hook_url, "secret_token": self.config.secret_token.get_secret_value(),
                                "allowed_updates": ["message", "edited_message", "callback_query",
                                                    "business_message"]})
        answer = json_or_empty(resp)
        if not answer.get("ok"):
            raise ChannelError(f"setWebhook failed: {answer.get('description') or resp.status_code}")
        return [f"webhook set to {self.hook_url}"]
