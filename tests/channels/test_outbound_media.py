"""Files stored in Threadline (private, so no provider can fetch them by URL) are uploaded with the message:
Telegram multipart, WhatsApp's media endpoint then the media id, Messenger ``filedata``; Twilio, which only
fetches public URLs, refuses them with a reason the agent can act on."""

from __future__ import annotations

import json

import httpx
import pytest

from threadline.channels.base import PermanentSendError
from threadline.channels.registry import adapters
from threadline.domain.messages import Attachment, OutboundMessage

from .harness import harnesses

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 100
STORED = Attachment("/api/v1/attachments/abc", "image/png", "receipt.png", len(PNG), data=PNG)


async def send(kind: str, answer) -> list[httpx.Request]:  # type: ignore[no-untyped-def]
    h = harnesses()[kind]
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        req.read()
        seen.append(req)
        return answer(req)

    cls = adapters()[kind]
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        adapter = cls(cls.Config.model_validate(h.config), http, scope="1")
        await adapter.send(OutboundMessage(1, 1, h.to, "Your receipt", attachments=(STORED,)))
    return seen


async def test_telegram_uploads_the_photo_with_its_caption() -> None:
    h = harnesses()["telegram"]
    [req] = await send("telegram", lambda r: httpx.Response(200, json=h.ok.body))
    assert req.url.path.endswith("/sendPhoto")
    assert req.headers["content-type"].startswith("multipart/form-data")
    assert PNG in req.content and b'name="caption"' in req.content and b"Your receipt" in req.content


async def test_whatsapp_uploads_then_sends_by_media_id() -> None:
    h = harnesses()["whatsapp"]

    def answer(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/media"):
            return httpx.Response(200, json={"id": "1037543291543636"})
        return httpx.Response(200, json=h.ok.body)

    upload, message = await send("whatsapp", answer)
    assert upload.url.path == "/v21.0/106540352242922/media" and PNG in upload.content
    body = json.loads(message.content)
    assert body["type"] == "image" and body["image"] == {"id": "1037543291543636", "caption": "Your receipt"}


async def test_messenger_sends_the_text_then_the_file() -> None:
    h = harnesses()["messenger"]
    text, file = await send("messenger", lambda r: httpx.Response(200, json=h.ok.body))
    assert json.loads(text.content)["message"] == {"text": "Your receipt"}
    assert b'name="filedata"' in file.content and PNG in file.content


async def test_twilio_refuses_a_private_file_with_the_reason() -> None:
    with pytest.raises(PermanentSendError, match="public https URL"):
        await send("twilio", lambda r: httpx.Response(201, json=harnesses()["twilio"].ok.body))
