"""What an adapter tells an admin to do to connect an instance, and the desk icon it asks for: hooks the
core reads instead of naming channel kinds."""

from __future__ import annotations

from threadline.channels.base import ChannelAdapter, ConnectHint
from threadline.channels.registry import adapters, get_adapter_class
from threadline.web.desk.common import channel_icon_name


def test_a_provider_channel_shows_its_hook_url_and_web_chat_its_snippet() -> None:
    base, key = "https://support.example.com", "k3y"
    twilio, webchat = get_adapter_class("twilio"), get_adapter_class("webchat")
    assert twilio is not None and webchat is not None
    assert twilio.connect_hint(base, key) == ConnectHint("Inbound URL", f"{base}/hooks/{key}")
    hint = webchat.connect_hint(base, key)
    assert hint.snippet and hint.label == "Paste before </body> on your site:"
    assert hint.value == f'<script src="{base}/widget.js" data-channel="{key}" async></script>'


def test_every_adapter_names_an_icon_the_desk_has() -> None:
    assert {kind: cls.icon for kind, cls in adapters().items()} == {
        "api": "code", "email": "mail", "instagram": "chat", "messenger": "chat", "telegram": "send",
        "twilio": "phone", "twilio_whatsapp": "phone", "twilio_voice": "phone", "pbx": "phone", "asterisk": "phone", "webchat": "chat", "whatsapp": "phone"}
    assert ChannelAdapter.icon == "chat"
    assert channel_icon_name("voice") == "phone" and channel_icon_name("no-such-kind") == "chat"
