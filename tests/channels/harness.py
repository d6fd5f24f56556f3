"""How to drive each messaging adapter in tests: a valid config, how its provider signs a request, the
recorded fixtures, and the provider's real-shaped answers (success, 429, 5xx, a permanent 4xx).

Used by the contract test (every registered adapter) and by the end-to-end tests (a fake provider on
loopback answers with the same payloads)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

from threadline.domain.contacts import IdentityKind, IdentityValue
from threadline.security import sign as api_sign

HERE = Path(__file__).parent
TWILIO_SID = "AC0123456789abcdef0123456789abcdef"
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
META_SECRET = "test_app_secret"
TELEGRAM_SECRET = "tg-secret-token-0123456789"
TELEGRAM_TOKEN = "987654321:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@dataclass(frozen=True)
class Reply:
    status: int
    body: object
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Harness:
    kind: str
    config: dict[str, object]
    fixtures: Path | None
    # headers the provider sends for this body at this URL, signed with ``secret`` (None: the right one)
    signer: Callable[[bytes, str, str | None], dict[str, str]]
    to: IdentityValue
    ok: Reply
    throttled: Reply
    server_error: Reply
    refused: Reply
    refused_reason: str  # a piece of the provider's reason the agent must see
    throttled_retry_after: float | None = None
    signs_body: bool = True  # Telegram's secret token is a shared header, not a signature over the body

    def files(self) -> list[Path]:
        if self.fixtures is None:
            return []
        return sorted(p for p in self.fixtures.iterdir() if p.suffix in (".json", ".form"))

    def headers(self, body: bytes, url: str, secret: str | None = None) -> dict[str, str]:
        return self.signer(body, url, secret)


def twilio_headers(body: bytes, url: str, secret: str | None = None) -> dict[str, str]:
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    sig = RequestValidator(secret or TWILIO_TOKEN).compute_signature(url, params)
    return {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": sig,
            "i-twilio-idempotency-token": hashlib.md5(body).hexdigest()}


def meta_headers(body: bytes, url: str, secret: str | None = None) -> dict[str, str]:
    digest = hmac.new((secret or META_SECRET).encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"}


def telegram_headers(body: bytes, url: str, secret: str | None = None) -> dict[str, str]:
    return {"content-type": "application/json", "x-telegram-bot-api-secret-token": secret or TELEGRAM_SECRET}


def api_headers(body: bytes, url: str, secret: str | None = None) -> dict[str, str]:
    ts = str(int(time.time()))
    return {"content-type": "application/json", "x-threadline-timestamp": ts,
            "x-threadline-signature": api_sign(secret or "s3cret-s3cret-s3cret", body, ts)}


def twilio_config(base: str = "https://api.twilio.com") -> dict[str, object]:
    return {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN, "from_number": "+15005550006",
            "api_base_url": base}


def whatsapp_config(base: str = "https://graph.facebook.com") -> dict[str, object]:
    return {"phone_number_id": "106540352242922", "access_token": "EAAJB" + "x" * 40, "app_secret": META_SECRET,
            "verify_token": "verify-me-please", "graph_base_url": base}


def messenger_config(base: str = "https://graph.facebook.com", page_id: str = "108886302101133"
                     ) -> dict[str, object]:
    return {"page_id": page_id, "page_access_token": "EAAG" + "p" * 40, "app_secret": META_SECRET,
            "verify_token": "verify-me-please", "graph_base_url": base}


def telegram_config(base: str = "https://api.telegram.org") -> dict[str, object]:
    return {"bot_token": TELEGRAM_TOKEN, "secret_token": TELEGRAM_SECRET, "api_base_url": base}


TWILIO_OK = Reply(201, {"account_sid": TWILIO_SID, "api_version": "2010-04-01", "body": "Hello",
                        "date_created": "Tue, 24 Nov 2026 13:00:00 +0000", "direction": "outbound-api",
                        "error_code": None, "error_message": None, "from": "+15005550006", "num_media": "0",
                        "num_segments": "1", "price": None, "sid": "SM" + "e" * 32, "status": "queued",
                        "to": "+14155551234", "uri": f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/SM{'e' * 32}.json"})
TWILIO_429 = Reply(429, {"code": 20429, "message": "Too Many Requests", "more_info":
                         "https://www.twilio.com/docs/errors/20429", "status": 429}, {"retry-after": "3"})
TWILIO_500 = Reply(500, {"code": 20500, "message": "Internal Server Error", "more_info":
                         "https://www.twilio.com/docs/errors/20500", "status": 500})
TWILIO_400 = Reply(400, {"code": 21211, "message": "The 'To' number +1415555 is not a valid phone number.",
                         "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})
META_429 = Reply(400, {"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429,
                                 "error_data": {"messaging_product": "whatsapp", "details":
                                                "Cloud API message throughput has been reached."},
                                 "fbtrace_id": "AbCdEfGh123"}})
META_500 = Reply(500, {"error": {"message": "An unknown error has occurred.", "type": "OAuthException", "code": 1,
                                 "is_transient": True, "fbtrace_id": "AbCdEfGh124"}})
WA_400 = Reply(400, {"error": {"message": "(#131030) Recipient phone number not in allowed list",
                               "type": "OAuthException", "code": 131030,
                               "error_data": {"messaging_product": "whatsapp", "details":
                                              "Recipient phone number not in allowed list: Add recipient phone number "
                                              "to recipient list and try again."}, "fbtrace_id": "AbCdEfGh125"}})
MESSENGER_400 = Reply(400, {"error": {"message": "(#551) This person isn't available right now.",
                                      "type": "OAuthException", "code": 551, "error_subcode": 1545041,
                                      "fbtrace_id": "AbCdEfGh126"}})
MESSENGER_429 = Reply(429, {"error": {"message": "(#613) Calls to this api have exceeded the rate limit.",
                                      "type": "OAuthException", "code": 613, "fbtrace_id": "AbCdEfGh127"}})


def harnesses() -> dict[str, Harness]:
    return {
        "twilio": Harness("twilio", twilio_config(), HERE / "twilio" / "fixtures", twilio_headers,
                          IdentityValue(IdentityKind.PHONE, "+14155551234"), TWILIO_OK, TWILIO_429, TWILIO_500,
                          TWILIO_400, "21211", throttled_retry_after=3.0),
        "twilio_whatsapp": Harness("twilio_whatsapp", twilio_config(), HERE / "twilio" / "fixtures", twilio_headers,
                                   IdentityValue(IdentityKind.PHONE, "+14155551234"), TWILIO_OK, TWILIO_429,
                                   TWILIO_500, TWILIO_400, "21211", throttled_retry_after=3.0),
        "whatsapp": Harness("whatsapp", whatsapp_config(), HERE / "whatsapp" / "fixtures", meta_headers,
                            IdentityValue(IdentityKind.PHONE, "+16505551234"),
                            Reply(200, {"messaging_product": "whatsapp", "contacts": [
                                {"input": "16505551234", "wa_id": "16505551234"}],
                                "messages": [{"id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"}]}),
                            META_429, META_500, WA_400, "131030"),
        "messenger": Harness("messenger", messenger_config(), HERE / "messenger" / "fixtures", meta_headers,
                             IdentityValue(IdentityKind.HANDLE, "6523845174373124", "1"),
                             Reply(200, {"recipient_id": "6523845174373124",
                                         "message_id": "m_out_1aB2cD3eF4gH5iJ6kL7mN8oP9qR0sT"}),
                             MESSENGER_429, META_500, MESSENGER_400, "isn't available"),
        "instagram": Harness("instagram", messenger_config(page_id="17841405822304914"),
                             HERE / "instagram" / "fixtures", meta_headers,
                             IdentityValue(IdentityKind.HANDLE, "1248827393286611", "1"),
                             Reply(200, {"recipient_id": "1248827393286611", "message_id": "aWdfZAG1faXRlbTox"}),
                             MESSENGER_429, META_500, MESSENGER_400, "isn't available"),
        "telegram": Harness("telegram", telegram_config(), HERE / "telegram" / "fixtures", telegram_headers,
                            IdentityValue(IdentityKind.HANDLE, "1111111", "1"),
                            Reply(200, {"ok": True, "result": {"message_id": 1371, "date": 1441646100,
                                                               "chat": {"id": 1111111, "type": "private"},
                                                               "from": {"id": 987654321, "is_bot": True,
                                                                        "first_name": "Acme Support"},
                                                               "text": "Hello"}}),
                            Reply(429, {"ok": False, "error_code": 429, "description":
                                        "Too Many Requests: retry after 5", "parameters": {"retry_after": 5}}),
                            Reply(502, "<html><head><title>502 Bad Gateway</title></head></html>"),
                            Reply(403, {"ok": False, "error_code": 403, "description":
                                        "Forbidden: bot was blocked by the user"}),
                            "blocked by the user", throttled_retry_after=5.0, signs_body=False),
        "api": Harness("api", {"secret": "s3cret-s3cret-s3cret", "webhook_url": "https://crm.example.com/hook"},
                       None, api_headers, IdentityValue(IdentityKind.HANDLE, "cust-1", "1"),
                       Reply(200, {"id": "crm-1"}), Reply(429, {"error": "slow down"}, {"retry-after": "7"}),
                       Reply(503, {"error": "down"}), Reply(422, {"error": "unknown customer"}), "unknown customer",
                       throttled_retry_after=7.0),
    }


def body_of(reply: Reply) -> bytes:
    return reply.body.encode() if isinstance(reply.body, str) else json.dumps(reply.body).encode()
