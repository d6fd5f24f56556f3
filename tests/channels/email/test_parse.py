"""The email adapter's pure side: every fixture of the corpus becomes the expected timeline entry; bad
input is read with a flag, never an exception that would lose it; webhooks are verified and parsed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import time
import zipfile
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from threadline.channels.base import InvalidSignature, RawRequest
from threadline.channels.email import EmailChannel, EmailChannelConfig
from threadline.channels.email.mime import MailLimits, parse_mail, strip_reply
from threadline.domain.contacts import IdentityKind
from threadline.domain.messages import DeliveryStatus, InboundMessage, OutboundMessage, StatusUpdate

FIXTURES = Path(__file__).parent / "fixtures"


def adapter(**config: object) -> EmailChannel:
    cfg = EmailChannelConfig.model_validate({"address": "support@acme.test", **config})
    return EmailChannel(cfg, httpx.AsyncClient(), scope="1")


def smtp_req(raw: bytes, to: str = "support@acme.test", mail_from: str = "x@y.example") -> RawRequest:
    return RawRequest("SMTP", f"smtp://{to}", {"x-envelope-from": mail_from, "x-envelope-to": to}, raw)


def inbound(name: str, **config: object) -> InboundMessage:
    items = adapter(**config).parse(smtp_req((FIXTURES / name).read_bytes()))
    assert len(items) == 1 and isinstance(items[0], InboundMessage)
    return items[0]


# fixture → (sender, name, timeline text, subject, references, attachments (name, type), extra checks)
CORPUS = {
    "gmail_reply.eml": ("maria.rossi@gmail.com", "Maria Rossi", "Still broken.", "Re: Router keeps rebooting",
                        ("<tl.7.41.aaaaaaaaaaaa@acme.test>",), []),
    "outlook_reply.eml": ("f.beranger@contoso.example", "François Béranger",
                          "Bonjour,\n\nLe montant est toujours faux : 120 € au lieu de 100 €.\n\nCordialement,\nFrançois",
                          "RE: Facture n° 4521 – erreur",
                          ("<tl.9.50.bbbbbbbbbbbb@acme.test>", "<first-customer-mail@contoso.example>"), []),
    "latin1_signature.eml": ("jose.munoz@example.es", "José Muñoz", "Hola, ¿por qué no tengo señal en el baño?",
                             "Pregunta sobre la señal", (), []),
    "koi8r_base64.eml": ("ivan@example.ru", "Иван Петров", "Здравствуйте! Не работает интернет с утра.",
                         "Нет интернета", (), []),
    "forwarded.eml": ("lena@shop.example", "Lena Fischer", None, "Fwd: Your order 88231 has shipped", (),
                      [("shipping notice.eml", "message/rfc822")]),
    "auto_reply.eml": ("tom.baker@corp.example", "Tom Baker",
                       "I am out of the office until 20 January with limited access to email.",
                       "Automatic reply: Re: Your ticket", ("<tl.5.30.dddddddddddd@acme.test>",), []),
    "inline_image.eml": ("ana@cliente.example", "Ana Lima", "The error is in the picture.", "Screenshot of the error",
                         (), [("image.png", "image/png"), ("invoice.pdf", "application/pdf")]),
    "malformed.eml": ("broken@mailer.example", "", "Body with an unknown charset and no closing boundary.", None, (),
                      [("data.bin", "application/octet-stream")]),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_fixture_becomes_the_expected_timeline_entry(name: str) -> None:
    sender, display, text, subject, refs, files = CORPUS[name]
    msg = inbound(name)
    assert msg.sender.identities[0].kind is IdentityKind.EMAIL and msg.sender.identities[0].value == sender
    assert msg.sender.name == display
    if text is not None:
        assert msg.text == text
    email = msg.email
    assert isinstance(email, dict)
    if subject is not None:
        assert email["subject"] == subject
    assert msg.references == refs
    assert [(a.name, a.content_type) for a in msg.attachments] == files
    assert all(a.data is not None and a.size == len(a.data) for a in msg.attachments)
    assert msg.provider_id.startswith("<") and msg.provider_id.endswith(">")
    assert bool(msg.extra.get("auto_reply")) == (name == "auto_reply.eml")


def test_quotes_are_cut_but_the_original_stays_available() -> None:
    msg = inbound("gmail_reply.eml")
    email = msg.email
    assert "Please restart it." in email["text_full"] and "Please restart it." not in msg.text
    assert "Please restart it." in email["html"]  # the sanitised HTML keeps the whole mail
    assert msg.thread_hint == "<tl.7.41.aaaaaaaaaaaa@acme.test>"
    outlook = inbound("outlook_reply.eml")
    assert "Merci, nous regardons." in outlook.email["text_full"]
    assert outlook.email["cc"] == ["chloe.martin@contoso.example"]
    assert "Tel. 600" not in inbound("latin1_signature.eml").text  # the "-- " signature is cut


def test_forwarded_text_is_kept_whole() -> None:
    msg = inbound("forwarded.eml")
    assert msg.text.startswith("The parcel never arrived, see below.")
    assert "Tracking number: ZX-1234." in msg.text


def test_html_is_sanitised_and_inline_images_keep_their_content_id() -> None:
    msg = inbound("inline_image.eml")
    html = msg.email["html"]
    assert "<script" not in html and "onclick" not in html and "javascript:" not in html and "<style" not in html
    assert 'src="cid:shot1@cliente.example"' in html
    image = msg.attachments[0]
    assert image.content_id == "shot1@cliente.example" and image.data and image.data.startswith(b"\x89PNG")


def test_a_bounce_fails_the_original_message_and_flags_the_address() -> None:
    items = adapter().parse(smtp_req((FIXTURES / "bounce.eml").read_bytes(), mail_from=""))
    assert len(items) == 1 and isinstance(items[0], StatusUpdate)
    update = items[0]
    assert update.provider_id == "<tl.3.17.cccccccccccc@acme.test>"
    assert update.status is DeliveryStatus.FAILED
    assert update.error and "5.1.1" in update.error and "User unknown" in update.error
    assert update.identity_flag == update.error


def test_a_delay_notice_changes_nothing() -> None:
    raw = (FIXTURES / "bounce.eml").read_bytes().replace(b"Action: failed", b"Action: delayed") \
        .replace(b"Status: 5.1.1", b"Status: 4.4.1")
    assert adapter().parse(smtp_req(raw)) == []


@pytest.mark.parametrize("header,value", [("Auto-Submitted", "auto-generated"), ("Precedence", "bulk"),
                                          ("X-Autoreply", "yes"), ("List-Id", "<news.shop.example>")])
def test_loop_signals_mark_the_message_as_automatic(header: str, value: str) -> None:
    raw = f"From: a@shop.example\r\nTo: support@acme.test\r\nSubject: hi\r\n{header}: {value}\r\n\r\nbody\r\n".encode()
    msg = adapter().parse(smtp_req(raw))[0]
    assert isinstance(msg, InboundMessage) and msg.extra["auto_reply"] is True
    plain = adapter().parse(smtp_req(b"From: a@shop.example\r\nTo: support@acme.test\r\n\r\nbody\r\n"))[0]
    assert isinstance(plain, InboundMessage) and "auto_reply" not in plain.extra


def test_reply_token_and_subject_tag_point_at_the_conversation() -> None:
    raw = b"From: a@shop.example\r\nTo: Support <support+c42@acme.test>\r\nSubject: more\r\n\r\nbody\r\n"
    msg = adapter().parse(smtp_req(raw, to="support+c42@acme.test"))[0]
    assert isinstance(msg, InboundMessage) and msg.conversation_id == 42
    tagged = adapter().parse(smtp_req(b"From: a@shop.example\r\nSubject: Re: Help [#77]\r\n\r\nx\r\n"))[0]
    assert isinstance(tagged, InboundMessage) and tagged.conversation_id == 77
    stranger = adapter().parse(smtp_req(b"From: a@shop.example\r\nTo: other+c5@acme.test\r\n\r\nx\r\n"))[0]
    assert isinstance(stranger, InboundMessage) and stranger.conversation_id is None


# --- bad input: read with a flag, never raised -------------------------------------------------

def test_absurd_headers_are_flagged_not_parsed() -> None:
    raw = b"From: a@shop.example\r\nX-Junk: " + b"A" * 300_000 + b"\r\n\r\nbody\r\n"
    mail = parse_mail(raw)
    assert mail.flags == ["headers_too_large"] and mail.message_id.startswith("<sha256-")


def test_too_many_parts_and_deep_nesting_are_cut_with_a_flag() -> None:
    msg = EmailMessage()
    msg["From"] = "a@shop.example"
    msg.set_content("hello")
    for i in range(30):
        msg.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=f"f{i}.bin")
    mail = parse_mail(msg.as_bytes(), MailLimits(max_parts=10))
    assert "too_many_parts" in mail.flags and len(mail.parts) < 10 and mail.text == "hello"
    nested = b"From: a@shop.example\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    for d in range(1, 30):
        nested += f"--b{d - 1}\r\nContent-Type: multipart/mixed; boundary=b{d}\r\n\r\n".encode()
    assert "too_deep" in parse_mail(nested, MailLimits(max_depth=12)).flags


def test_oversized_attachments_are_listed_and_left_in_the_raw_mail() -> None:
    msg = EmailMessage()
    msg["From"] = "a@shop.example"
    msg["Message-ID"] = "<big@shop.example>"
    msg.set_content("see attached")
    msg.add_attachment(b"\0" * 3000, maintype="application", subtype="octet-stream", filename="big.bin")
    item = adapter(max_attachment_bytes=1000).parse(smtp_req(msg.as_bytes()))[0]
    assert isinstance(item, InboundMessage) and item.attachments == ()
    assert item.email["skipped_attachments"] == [
        {"name": "big.bin", "content_type": "application/octet-stream", "size": 3000, "reason": "too large"}]
    assert "attachment_too_large" in item.email["flags"]


def test_a_zip_bomb_is_kept_as_a_small_file_and_never_opened() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.txt", b"\0" * 50_000_000)
    bomb = buf.getvalue()
    assert len(bomb) < 100_000
    msg = EmailMessage()
    msg["From"] = "a@shop.example"
    msg.set_content("zip")
    msg.add_attachment(bomb, maintype="application", subtype="zip", filename="bomb.zip")
    item = adapter().parse(smtp_req(msg.as_bytes()))[0]
    assert isinstance(item, InboundMessage)
    assert [(a.name, a.size) for a in item.attachments] == [("bomb.zip", len(bomb))]


def test_garbage_is_parsed_into_something_or_refused_with_a_reason() -> None:
    mail = parse_mail(b"\xff\xfe\x00garbage without headers")
    assert mail.message_id.startswith("<sha256-")
    from threadline.channels.base import BadPayload

    with pytest.raises(BadPayload, match="no valid sender"):
        adapter().parse(smtp_req(b"\xff\xfe\x00garbage without headers", mail_from=""))


def test_strip_reply_keeps_a_mail_that_is_only_a_quote() -> None:
    assert strip_reply("> only quoted\n> text") == "> only quoted\n> text"
    assert strip_reply("Thanks!\n\nSent from my iPhone") == "Thanks!"


# --- webhooks ----------------------------------------------------------------------------------

def _multipart(fields: dict[str, bytes | tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "xYzZY"
    out = b""
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, ctype, data = value
            out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    f"Content-Type: {ctype}\r\n\r\n").encode() + data + b"\r\n"
        else:
            out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_mailgun_signature_matches_the_documented_vector() -> None:
    sig = hmac.new(b"key-example", b"1529006854a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
                   hashlib.sha256).hexdigest()
    assert sig == "034634357816b50bd07f40acde38686ff7e40f8e154283bd8cfbf0aef6430d60"


def test_mailgun_posts_are_verified_and_parsed() -> None:
    mg = adapter(inbound="mailgun", mailgun_signing_key="key-example")
    ts, token = str(int(time.time())), "a" * 50
    sig = hmac.new(b"key-example", (ts + token).encode(), hashlib.sha256).hexdigest()
    body, ctype = _multipart({
        "timestamp": ts.encode(), "token": token.encode(), "signature": sig.encode(),
        "message-headers": b'[["From", "Ana <ana@cliente.example>"], ["Subject", "Hola"], '
                           b'["Message-Id", "<mg-1@cliente.example>"], ["In-Reply-To", "<tl.1.2.x@acme.test>"]]',
        "body-plain": b"Necesito ayuda", "attachment-1": ("notes.txt", "text/plain", b"some notes"),
    })
    req = RawRequest("POST", "https://x/hooks/k", {"content-type": ctype}, body)
    mg.verify(req)
    msg = mg.parse(req)[0]
    assert isinstance(msg, InboundMessage)
    assert (msg.provider_id, msg.text, msg.references) == ("<mg-1@cliente.example>", "Necesito ayuda",
                                                           ("<tl.1.2.x@acme.test>",))
    assert [(a.name, a.data) for a in msg.attachments] == [("notes.txt", b"some notes")]
    # the Message-ID and a fingerprint of From/Date/Subject, the same however often the MIME is rebuilt
    assert mg.dedupe_key([], req).startswith("<mg-1@cliente.example> ")
    assert mg.dedupe_key([], req) == mg.dedupe_key([], req)
    forged = RawRequest("POST", "https://x/hooks/k", {"content-type": ctype}, body.replace(sig.encode(), b"0" * 64))
    with pytest.raises(InvalidSignature):
        mg.verify(forged)
    stale_ts = str(int(time.time()) - 3600)
    stale_sig = hmac.new(b"key-example", (stale_ts + token).encode(), hashlib.sha256).hexdigest()
    stale, ctype2 = _multipart({"timestamp": stale_ts.encode(), "token": token.encode(), "signature": stale_sig.encode()})
    with pytest.raises(InvalidSignature, match="stale"):
        mg.verify(RawRequest("POST", "https://x/hooks/k", {"content-type": ctype2}, stale))


def test_sendgrid_raw_and_parsed_posts() -> None:
    sg = adapter(inbound="sendgrid", sendgrid_basic_auth="sg:pw")
    raw_body, ctype = _multipart({"email": (FIXTURES / "latin1_signature.eml").read_bytes(), "to": b"support@acme.test"})
    auth = {"authorization": "Basic " + base64.b64encode(b"sg:pw").decode(), "content-type": ctype}
    req = RawRequest("POST", "https://x/hooks/k", auth, raw_body)
    sg.verify(req)
    msg = sg.parse(req)[0]
    assert isinstance(msg, InboundMessage) and msg.provider_id == "<latin1-0001@example.es>"
    with pytest.raises(InvalidSignature):
        sg.verify(RawRequest("POST", "https://x/hooks/k", {"content-type": ctype}, raw_body))
    parsed_body, ctype = _multipart({
        "headers": b"From: Lu <lu@shop.example>\r\nSubject: Parsed\r\nMessage-ID: <sg-2@shop.example>\r\n",
        "text": b"parsed text", "html": b"<p>parsed <b>text</b></p>", "from": b"Lu <lu@shop.example>",
    })
    msg = sg.parse(RawRequest("POST", "https://x/hooks/k", {"content-type": ctype}, parsed_body))[0]
    assert isinstance(msg, InboundMessage) and (msg.provider_id, msg.text) == ("<sg-2@shop.example>", "parsed text")
    assert msg.email["html"].strip() == "<p>parsed <b>text</b></p>"


def test_smtp_channels_refuse_webhook_posts() -> None:
    with pytest.raises(InvalidSignature, match="SMTP"):
        adapter().verify(RawRequest("POST", "https://x/hooks/k", {}, b"email=x"))


# --- outbound composition ---------------------------------------------------------------------

def test_a_reply_threads_under_the_customer_mail() -> None:
    from threadline.domain.contacts import IdentityValue

    ch = adapter(from_name="{agent} at Acme", signature="Acme Support\n+1 555 0100", subject_tag=True)
    customer = inbound("outlook_reply.eml")
    out = OutboundMessage(message_id=12, conversation_id=9, to=IdentityValue(IdentityKind.EMAIL,
                          "f.beranger@contoso.example"), text="We fixed it.\n\nSorry <3", author_name="Alice",
                          reply_to_provider_id=customer.provider_id, reply_to_meta=customer.stored_meta())
    mail = ch.compose(out)
    assert mail["Message-ID"] == ch.message_id_for(out) and mail["Message-ID"].endswith("@acme.test>")
    assert mail["In-Reply-To"] == customer.provider_id
    assert mail["References"].split() == ["<first-customer-mail@contoso.example>", "<tl.9.50.bbbbbbbbbbbb@acme.test>",
                                          customer.provider_id]
    assert mail["Subject"] == "RE: Facture n° 4521 – erreur [#9]"
    assert mail["From"] == "Alice at Acme <support@acme.test>"
    assert mail["Reply-To"] == "Alice at Acme <support+c9@acme.test>"
    assert mail["Cc"] == "chloe.martin@contoso.example"
    assert mail.get_content_type() == "multipart/alternative"
    plain, html = (p.get_content() for p in mail.iter_parts())
    assert plain.startswith("We fixed it.") and "-- \nAcme Support" in plain
    assert "Sorry &lt;3" in html and "<script" not in html


def test_an_http_request_cannot_pass_for_an_internal_smtp_one() -> None:
    forged = RawRequest("SMTP", "https://x/hooks/k", {}, b"From: a@b.example\r\n\r\nhi\r\n")
    with pytest.raises(InvalidSignature):
        adapter().verify(forged)
    adapter().verify(smtp_req(b"From: a@b.example\r\n\r\nhi\r\n"))  # the receiver's own request passes


# Replies from several clients and languages: the timeline keeps the customer's new text only.
QUOTED = {
    "gmail_es_two_line.eml": "Sigue sin funcionar, ya lo reinicié dos veces.",  # "El … (<…>)\nescribió:"
    "gmail_it_two_line.eml": "Grazie, ora funziona!\nUn saluto,\nGiulia",  # "Il giorno … <…>\nha scritto:"
    "gmail_fr_reply.eml": "Bonjour,\n\nC'est réglé, merci !",  # "Le … a écrit :" with no-break spaces
    "apple_mail_de_reply.eml": "Hallo,\n\ndie Rechnung stimmt jetzt.\n\nViele Grüße\nLena",  # "Am … schrieb …:"
    "apple_mail_en_wrapped.eml": "Still broken after the update.",  # "On …\nwrote:" inside the quote
    "gmail_pt_br_reply.eml": "Oi, o pedido ainda não chegou.",  # "Em … <…>\nescreveu:"
    "gmail_nl_reply.eml": "Dank je, het werkt weer.",  # "Op … schreef …:"
    "outlook_es_reply.eml": "Hola,\n\nEl pedido llegó incompleto: falta el cargador.\n\nSaludos,\nJuan",  # De:/Enviado:
    "outlook_it_reply.eml": "Buongiorno,\n\nla fattura riporta ancora l'importo sbagliato.\n\nCordiali saluti\n"
                            "Giulia Bianchi",  # Da:/Inviato:
    "outlook_de_reply.eml": "Guten Tag,\n\ndie Gutschrift fehlt noch.\n\nMit freundlichen Grüßen\nLena Fischer",
    "outlook_fr_reply.eml": "Bonjour,\n\nToujours pas reçu l'avoir.\n\nCordialement,\nFrançois",  # "De :/Envoyé :"
    "outlook_original_message.eml": "Thanks, that fixed it.\n\nMike",  # -----Original Message-----
}


@pytest.mark.parametrize("name", sorted(QUOTED))
def test_quoted_history_is_cut_in_every_client_and_language(name: str) -> None:
    msg = inbound(name)
    assert msg.text == QUOTED[name]
    email = msg.email
    assert isinstance(email, dict) and len(str(email["text_full"])) > len(msg.text)  # the whole mail is kept


@pytest.mark.parametrize("text", [
    "On Monday I wrote: the router is broken.\nIt still is.",  # an "On … wrote:" of the customer's own
    "El lunes escribió: mi hermano.\nGracias",
    "De: parte de mi jefe\nun saludo",  # a "De:" that starts no header block
])
def test_the_customers_own_words_are_not_taken_for_a_quote(text: str) -> None:
    assert strip_reply(text) == text


def test_only_images_the_html_shows_are_inline() -> None:
    msg = inline = inbound("inline_image.eml")
    assert [(a.name, a.inline) for a in inline.attachments] == [("image.png", True), ("invoice.pdf", False)]
    # the same image with a Content-ID the HTML never shows (Apple Mail numbers every attachment) is a file
    raw = (FIXTURES / "inline_image.eml").read_bytes().replace(b'src="cid:shot1@cliente.example"', b'src="x.png"')
    msg = adapter().parse(smtp_req(raw))[0]
    assert isinstance(msg, InboundMessage)
    assert [(a.name, a.inline) for a in msg.attachments] == [("image.png", False), ("invoice.pdf", False)]
