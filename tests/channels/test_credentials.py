"""``check()``: the credentials test an admin runs before saving a channel (POST /api/v1/channels/test),
against real-shaped provider answers: who the credentials belong to, or the provider's refusal."""

from __future__ import annotations

import httpx
import pytest

from threadline.channels.base import ChannelError
from threadline.channels.registry import adapters

from .harness import harnesses


async def check(kind: str, status: int, body: dict, **config: object) -> list[str]:
    h = harnesses()[kind]
    cls = adapters()[kind]

    def answer(req: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        adapter = cls(cls.Config.model_validate({**h.config, **config}), http, scope="0")
        return await adapter.check()  # type: ignore[return-value]


INVALID_TOKEN = {"error": {"message": "Invalid OAuth access token - Cannot parse access token", "type": "OAuthException",
                           "code": 190, "fbtrace_id": "A1b2"}}


async def test_whatsapp() -> None:
    ok = await check("whatsapp", 200, {"display_phone_number": "+1 555-078-3881", "verified_name": "Acme Support",
                                       "id": "106540352242922"})
    assert ok == ["WhatsApp number +1 555-078-3881 (Acme Support)"]
    with pytest.raises(ChannelError, match="190"):
        await check("whatsapp", 400, INVALID_TOKEN)


async def test_messenger_checks_the_token_is_the_pages() -> None:
    ok = await check("messenger", 200, {"id": "108886302101133", "name": "Acme Shoes"})
    assert ok == ["Messenger: Acme Shoes (108886302101133)"]
    with pytest.raises(ChannelError, match="not 108886302101133"):
        await check("messenger", 200, {"id": "999", "name": "Another Page"})
    with pytest.raises(ChannelError, match="Invalid OAuth"):
        await check("messenger", 400, INVALID_TOKEN)


async def test_telegram() -> None:
    ok = await check("telegram", 200, {"ok": True, "result": {"id": 987654321, "is_bot": True,
                                                              "first_name": "Acme Support",
                                                              "username": "acme_support_bot"}})
    assert ok == ["Telegram bot @acme_support_bot (Acme Support)"]
    with pytest.raises(ChannelError, match="Unauthorized"):
        await check("telegram", 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})


def test_config_validation_names_the_problem() -> None:
    tg = adapters()["telegram"].Config
    with pytest.raises(ValueError, match="BotFather"):
        tg.model_validate({"bot_token": "nope", "secret_token": "s" * 20})
    with pytest.raises(ValueError, match="A-Z"):
        tg.model_validate({"bot_token": harnesses()["telegram"].config["bot_token"], "secret_token": "bad token!" * 2})
    tw = adapters()["twilio"].Config
    with pytest.raises(ValueError, match="from_number or messaging_service_sid"):
        tw.model_validate({"account_sid": "AC" + "0" * 32, "auth_token": "t" * 32})
    assert tw.model_validate({"account_sid": "AC" + "0" * 32, "auth_token": "t" * 32,
                              "from_number": "whatsapp:+1 (415) 523-8886"}).from_number == "+14155238886"
