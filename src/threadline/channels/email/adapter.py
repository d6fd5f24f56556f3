"""The email channel: one support address; mail in by SMTP, IMAP, SendGrid or Mailgun; replies by SMTP.

Inbound requests reach ``parse`` in four shapes, all turned into the same raw RFC 5322 bytes first:

- ``SMTP``: from the embedded receiver (inbound.py); ``body`` is the mail, headers carry the envelope.
- ``IMAP``: from the poller (inbound.py); ``body`` is the mail.
- ``POST`` with ``inbound = "sendgrid"``: Inbound Parse ``multipart/form-data`` (raw ``email`` field, or the
  parsed fields); no signature exists, so the secret hook URL (plus optional basic auth) is the credential.
- ``POST`` with ``inbound = "mailgun"``: ``body-mime`` or the parsed fields; HMAC-SHA256 of
  timestamp+token with the webhook signing key, refused when older than ten minutes.

Threading: the Message-ID is the provider id; In-Reply-To and References (newest first) are the
``references`` the core joins on; then a ``support+c<id>@`` reply token or a ``[#<id>]`` subject tag.
Replies carry a Message-ID we make (the provider id of the outbound message), In-Reply-To and References.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import ssl
import time
import urllib.parse
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser, HeaderParser
from email.utils import format_datetime, formataddr
from functools import cached_property
from typing import Any

import aiosmtplib

from threadline.channels.base import (
    BadPayload,
    Capabilities,
    ChannelAdapter,
    ChannelError,
    InvalidSignature,
    PermanentSendError,
    RawRequest,
    ReplayNonce,
    RetryableSendError,
)
from threadline.channels.email.config import EmailChannelConfig
from threadline.channels.email.mime import (
    INVENTED_ID_DOMAIN,
    MailLimits,
    ParsedMail,
    dedupe_key,
    parse_mail,
    raw_identity,
)
from threadline.domain.contacts import IdentityKind, normalise_identity
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

MAILGUN_MAX_AGE = 600
SUBJECT_TAG = re.compile(r"\[#(\d{1,12})\]")
MAX_REFERENCES = 20


def _form_fields(req: RawRequest) -> dict[str, list[tuple[bytes, str, str]]]:
    """A POSTed form: name → [(value bytes, filename, content type)]; multipart or urlencoded."""
    ctype = req.header("content-type")
    out: dict[str, list[tuple[bytes, str, str]]] = {}
    if ctype.lower().startswith("multipart/form-data"):
        msg = BytesParser(policy=policy.HTTP).parsebytes(b"Content-Type: " + ctype.encode("latin-1") +
                                                         b"\r\n\r\n" + req.body)
        if not msg.is_multipart():
            raise BadPayload("multipart/form-data body without parts")
        for part in msg.iter_parts():  # type: ignore[attr-defined]
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            data = part.get_payload(decode=True) or b""
            out.setdefault(str(name), []).append((data, part.get_filename() or "", part.get_content_type()))
        return out
    for name, values in urllib.parse.parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True).items():
        out[name] = [(v.encode(), "", "text/plain") for v in values]
    return out


def _first(fields: dict[str, list[tuple[bytes, str, str]]], name: str) -> str:
    values = fields.get(name)
    return values[0][0].decode("utf-8", "replace") if values else ""


def _rebuild(headers: list[tuple[str, str]], text: str, html_body: str,
             files: list[tuple[bytes, str, str]]) -> bytes:
    """A provider's parsed fields back into one MIME message, so every path shares one parser."""
    msg = EmailMessage(policy=policy.SMTP)
    keep = {"from", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references", "reply-to",
            "auto-submitted", "precedence", "x-autoreply", "list-id", "return-path", "delivered-to"}
    for name, value in headers:
        if name.lower() in keep and name.lower() not in {k.lower() for k in msg.keys()}:
            try:
                msg[name] = value
            except (ValueError, TypeError):
                continue
    msg.set_content(text or "")
    if html_body:
        msg.add_alternative(html_body, subtype="html")
    for data, filename, ctype in files:
        main, _, sub = (ctype or "application/octet-stream").partition("/")
        msg.add_attachment(data, maintype=main or "application", subtype=sub or "octet-stream",
                           filename=filename or "attachment")
    return msg.as_bytes()


def _without_via(name: str) -> str:
    """ "Jane Doe via Typeform" / "Jane Doe (via Website)" → "Jane Doe"; a robot's name → ""."""
    name = re.sub(r"\s*\(?\bvia\b.*$", "", name, flags=re.I).strip()
    return "" if re.search(r"no.?reply|do.?not.?reply|wordpress|mailer|notification|forms?\b", name, re.I) else name


class EmailChannel(ChannelAdapter):
    kind = "email"
    title = "Email"
    icon = "mail"
    Config = EmailChannelConfig
    secret_destinations = {"mailgun_signing_key": (), "sendgrid_basic_auth": ()}  # check inbound posts only
    capabilities = Capabilities(max_text_length=200_000, attachments=True, max_attachment_bytes=10 * 1024 * 1024,
                                identity_kinds=("email",), work_class="email")
    config: EmailChannelConfig

    # --- inbound ---------------------------------------------------------------------------------

    def verify(self, req: RawRequest) -> None:
        if req.method in ("SMTP", "IMAP") and req.url.startswith(("smtp://", "imap://")):
            return  # built by our own receiver or poller; an HTTP request's URL is always http(s)://
        if self.config.inbound == "mailgun":
            fields = _form_fields(req)
            ts, token, sig = _first(fields, "timestamp"), _first(fields, "token"), _first(fields, "signature")
            key = self.config.mailgun_signing_key
            if key is None:
                raise InvalidSignature("this channel has no Mailgun webhook signing key configured")
            if not (ts and token and sig):
                raise InvalidSignature("missing timestamp, token or signature")
            expected = hmac.new(key.get_secret_value().encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, sig.lower()):
                raise InvalidSignature("the Mailgun signature does not match")
            try:
                if abs(time.time() - int(ts)) > MAILGUN_MAX_AGE:
                    raise InvalidSignature("stale request: the Mailgun timestamp is more than 10 minutes old")
            except ValueError:
                raise InvalidSignature("the Mailgun timestamp is not a number") from None
            return
        if self.config.inbound == "sendgrid":
            expected_auth = self.config.sendgrid_basic_auth
            if expected_auth is not None:
                import base64

                want = "Basic " + base64.b64encode(expected_auth.get_secret_value().encode()).decode()
                if not hmac.compare_digest(req.header("authorization").encode(), want.encode()):
                    raise InvalidSignature("missing or wrong basic auth credentials")
            return
        raise InvalidSignature(f"this email channel receives by {self.config.inbound.upper()}, not by webhook")

    def replay_nonce(self, req: RawRequest) -> ReplayNonce | None:
        """Mailgun's ``token`` signs one delivery: seen again with another mail, it is a replay (Mailgun
        advises caching tokens). Kept for twice the age window, as the timestamp may be ahead of us too."""
        if self.config.inbound != "mailgun" or req.method in ("SMTP", "IMAP"):
            return None
        token = _first(_form_fields(req), "token")
        return ReplayNonce(token[:200], 2 * MAILGUN_MAX_AGE) if token else None

    def raw_mail(self, req: RawRequest) -> bytes:
        """The RFC 5322 bytes of an inbound request, whatever shape it came in."""
        if req.method in ("SMTP", "IMAP"):
            return req.body
        fields = _form_fields(req)
        if self.config.inbound == "sendgrid":
            if "email" in fields:
                return fields["email"][0][0]
            headers = [(k, v) for k, v in HeaderParser(policy=policy.compat32).parsestr(
                _first(fields, "headers")).items()]
            if not any(k.lower() == "from" for k, _ in headers) and _first(fields, "from"):
                headers += [("From", _first(fields, "from")), ("To", _first(fields, "to")),
                            ("Subject", _first(fields, "subject"))]
            files = [fields[k][0] for k in sorted(fields) if re.fullmatch(r"attachment\d+", k)]
            return _rebuild(headers, _first(fields, "text"), _first(fields, "html"), files)
        if "body-mime" in fields:
            return fields["body-mime"][0][0]
        try:
            pairs = json.loads(_first(fields, "message-headers") or "[]")
            headers = [(str(k), str(v)) for k, v in pairs]
        except (ValueError, TypeError):
            raise BadPayload("message-headers is not a JSON list of [name, value] pairs") from None
        if not any(k.lower() == "from" for k, _ in headers):
            headers += [("From", _first(fields, "from") or _first(fields, "sender")),
                        ("Subject", _first(fields, "subject"))]
        files = [fields[k][0] for k in sorted(fields) if re.fullmatch(r"attachment-\d+", k)]
        return _rebuild(headers, _first(fields, "body-plain"), _first(fields, "body-html"), files)

    def dedupe_key(self, items: list[InboundMessage | StatusUpdate], req: RawRequest) -> str:
        """The mail's Message-ID (or a digest of the bytes) and a fingerprint of its From, Date and Subject:
        a redelivered mail is stored once, a different mail reusing the Message-ID is stored too."""
        return dedupe_key(self.raw_mail(req))

    def parse(self, req: RawRequest) -> list[InboundMessage | StatusUpdate]:
        raw = self.raw_mail(req)
        limits = MailLimits(max_attachment_bytes=self.config.max_attachment_bytes)
        mail = parse_mail(raw, limits, envelope_from=req.header("x-envelope-from", "-") if req.method == "SMTP"
                          else None)
        if mail.bounce is not None:
            b = mail.bounce
            if not b.hard:
                return []  # a delay notice: the server keeps trying; nothing to show
            reason = f"bounced: {b.status} {b.diagnostic}".strip()
            return [StatusUpdate(provider_id=b.original_message_id, status=DeliveryStatus.FAILED, error=reason,
                                 identity_flag=reason)]
        return [self._inbound(mail, req, raw_identity(raw)[1])]

    def customer_address(self, mail: ParsedMail) -> str:
        """Who the customer is: a single Reply-To that differs from From wins (a contact form or a shop sends
        from no-reply@ and puts the customer in Reply-To; a person who sets a Reply-To asks for the answers
        there), except one of our own addresses and list mail (a list's Reply-To is the list). Several
        Reply-To addresses: the From."""
        if len(mail.reply_to) == 1 and mail.reply_to[0] != mail.from_addr and mail.auto_reply_reason != \
                "mailing list" and not self._ours(mail.reply_to[0]):
            return mail.reply_to[0]
        return mail.from_addr

    def _ours(self, address: str) -> bool:
        local, _, domain = address.lower().partition("@")
        return domain == self.config.domain and local.split("+", 1)[0] == self.config.local_part

    @staticmethod
    def inbox_key(provider_id: str, meta: dict[str, Any]) -> str:
        """The inbox key of the mail behind a stored message (its raw original), whatever the message's
        provider id became (a Message-ID reused by another mail gets ``#<fingerprint>``)."""
        email = meta.get("email") if isinstance(meta.get("email"), dict) else {}
        fingerprint = str(email.get("fingerprint") or "")  # type: ignore[union-attr]
        if not fingerprint:
            return provider_id  # stored before mails were keyed with their fingerprint
        return f"{provider_id.split('#', 1)[0][:280]} {fingerprint}"

    def _inbound(self, mail: ParsedMail, req: RawRequest, fingerprint: str) -> InboundMessage:
        customer = self.customer_address(mail)
        candidates = [customer, mail.from_addr, *mail.reply_to[:1], req.header("x-envelope-from")]
        ident = None
        for addr in candidates:
            try:
                ident = normalise_identity(IdentityKind.EMAIL, addr) if addr else None
            except ValidationFailed:
                ident = None
            if ident is not None:
                break
        if ident is None:
            raise BadPayload("the mail has no valid sender address (From, Reply-To or envelope sender)")
        via_reply_to = ident.value != mail.from_addr and ident.value in mail.reply_to
        recipients = [*req.header("x-envelope-to").split(","), *mail.delivered_to, *mail.to, *mail.cc]
        conv_hint = self._token(recipients)
        if conv_hint is None:
            tag = SUBJECT_TAG.search(mail.subject)
            conv_hint = int(tag.group(1)) if tag else None
        ours = {self.config.address}
        meta: dict[str, Any] = {
            "subject": mail.subject, "from": mail.from_addr, "from_name": mail.from_name, "to": mail.to,
            "cc": [a for a in mail.cc if a not in ours], "message_id": mail.header_message_id,
            "in_reply_to": mail.in_reply_to, "references": mail.references, "fingerprint": fingerprint,
        }
        if mail.reply_to:
            meta["reply_to"] = mail.reply_to
        if via_reply_to:  # the customer is the Reply-To; From (a form's robot) is kept above
            meta["customer"] = ident.value
        if mail.html:
            meta["html"] = mail.html
        if mail.text_full and mail.text_full != mail.text:
            meta["text_full"] = mail.text_full
        if mail.auto_reply:
            meta["auto_reply_reason"] = mail.auto_reply_reason
        if mail.automatic:
            meta["automatic"] = True
        if mail.flags:
            meta["flags"] = mail.flags
        if mail.skipped:
            meta["skipped_attachments"] = mail.skipped
        text = mail.text
        if not text and not mail.parts:
            text = mail.subject or "(empty email)"
        name = (mail.reply_to_name or _without_via(mail.from_name)) if via_reply_to else mail.from_name
        return InboundMessage(
            provider_id=mail.message_id[:300],
            sender=Sender(identities=(ident,), name=name[:200]),
            text=text,
            attachments=tuple(Attachment(url=f"cid:{p.content_id}" if p.content_id else "", content_type=p.content_type,
                                         name=p.name, size=len(p.data), data=p.data, content_id=p.content_id,
                                         inline=p.inline)
                              for p in mail.parts),
            sent_at=mail.date,
            thread_hint=mail.in_reply_to or None,
            email=meta, extra={"auto_reply": True} if mail.auto_reply else {},
            conversation_id=conv_hint,
            references=mail.thread_refs,
            automatic=mail.automatic,
        )

    @cached_property
    def _token_re(self) -> re.Pattern[str]:
        return re.compile(rf"^{re.escape(self.config.local_part)}\+c(\d{{1,12}})@{re.escape(self.config.domain)}$",
                          re.I)

    def _token(self, recipients: list[str]) -> int | None:
        for addr in recipients:
            found = self._token_re.match(addr.strip().strip("<>"))
            if found:
                return int(found.group(1))
        return None

    # --- outbound --------------------------------------------------------------------------------

    def message_id_for(self, msg: OutboundMessage) -> str:
        """Deterministic, so a retried send after a lost answer repeats the same Message-ID."""
        h = hashlib.sha256(f"{self.scope}:{msg.message_id}:{self.config.address}".encode()).hexdigest()[:12]
        return f"<tl.{msg.conversation_id}.{msg.message_id}.{h}@{self.config.domain}>"

    def compose(self, msg: OutboundMessage, *, now: datetime | None = None) -> EmailMessage:
        if msg.to.kind is not IdentityKind.EMAIL:
            raise PermanentSendError(f"cannot email a {msg.to.kind.value} identity; pick an email address")
        meta = msg.reply_to_meta.get("email") if isinstance(msg.reply_to_meta.get("email"), dict) else {}
        assert isinstance(meta, dict)
        cfg = self.config
        out = EmailMessage(policy=policy.SMTP)
        name = cfg.from_name.replace("{agent}", msg.author_name).strip() if cfg.from_name else msg.author_name
        out["From"] = formataddr((name, cfg.address)) if name else cfg.address
        out["To"] = msg.to.value
        if cfg.reply_all:
            cc = [a for a in meta.get("cc", []) + meta.get("to", [])
                  if isinstance(a, str) and a.lower() not in {cfg.address, msg.to.value}
                  and not a.lower().startswith(cfg.local_part + "+")]
            if cc:
                out["Cc"] = ", ".join(dict.fromkeys(cc))
        standalone = not msg.conversation_id  # a message of no conversation (a verification code): no threading
        subject = msg.subject if standalone else ""
        subject = subject or str(meta.get("subject") or "").strip() or "Your request"
        if not standalone and not re.match(r"^(re|aw|sv|antw)\s*:", subject, re.I):
            subject = f"Re: {subject}"
        if cfg.subject_tag and not standalone and f"[#{msg.conversation_id}]" not in subject:
            subject = f"{subject} [#{msg.conversation_id}]"
        out["Subject"] = subject
        out["Date"] = format_datetime(now or datetime.now(UTC))
        out["Message-ID"] = self.message_id_for(msg)
        # Threading (RFC 5322 §3.6.4): In-Reply-To only names the customer's Message-ID when their mail had
        # one (never the digest Threadline keys a mail without one by); References carry theirs on.
        parent = str(meta.get("message_id") or "") if "message_id" in meta else (msg.reply_to_provider_id or "")
        if parent.endswith(INVENTED_ID_DOMAIN):
            parent = ""
        refs = [r for r in meta.get("references", []) if isinstance(r, str)] if msg.reply_to_provider_id else []
        if not refs and msg.reply_to_provider_id and meta.get("in_reply_to"):
            refs = [str(meta["in_reply_to"])]
        if parent:
            refs = [*refs, parent]
        if len(refs) > MAX_REFERENCES:  # keep the root and the newest (RFC 5322 allows trimming)
            refs = [refs[0], *refs[-(MAX_REFERENCES - 1):]]
        if parent:
            out["In-Reply-To"] = parent
        if refs:
            out["References"] = " ".join(refs)
        if cfg.plus_addressing and not standalone:
            out["Reply-To"] = formataddr((name, f"{cfg.local_part}+c{msg.conversation_id}@{cfg.domain}"))
        out["X-Auto-Response-Suppress"] = "OOF, AutoReply"
        body = msg.text + (f"\n\n-- \n{cfg.signature}" if cfg.signature else "")
        extra_files = [a for a in msg.attachments if a.data is None]
        if extra_files:
            body += "\n\n" + "\n".join(f"[attachment: {a.name or a.url}]" for a in extra_files)
        out.set_content(body)
        paragraphs = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in msg.text.split("\n\n"))
        sig = f'<p style="color:#666">-- <br>{html.escape(cfg.signature).replace(chr(10), "<br>")}</p>' \
            if cfg.signature else ""
        out.add_alternative(f"<!DOCTYPE html><html><body>{paragraphs}{sig}</body></html>", subtype="html")
        for a in msg.attachments:
            if a.data is not None:
                main, _, sub = (a.content_type or "application/octet-stream").partition("/")
                out.add_attachment(a.data, maintype=main, subtype=sub or "octet-stream", filename=a.name or "file")
        return out

    def _tls(self, verify: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _smtp_client(self) -> aiosmtplib.SMTP:
        cfg = self.config
        if not cfg.smtp_host:
            raise PermanentSendError("this email channel has no outbound SMTP server configured")
        return aiosmtplib.SMTP(
            hostname=cfg.smtp_host, port=cfg.smtp_port, timeout=cfg.smtp_timeout_seconds,
            use_tls=cfg.smtp_security == "tls", start_tls=cfg.smtp_security == "starttls",
            tls_context=self._tls(cfg.smtp_verify_tls) if cfg.smtp_security != "none" else None,
            username=cfg.smtp_username or None,
            password=cfg.smtp_password.get_secret_value() if cfg.smtp_password else None)

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        mail = self.compose(msg)
        client = self._smtp_client()
        try:
            async with client:
                await client.send_message(mail, sender=self.config.address, recipients=[
                    msg.to.value, *[a.strip() for a in str(mail.get("Cc", "")).split(",") if a.strip()]])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if any(c < 500 for c in codes):
                raise RetryableSendError(f"recipient deferred: {text}") from None
            raise PermanentSendError(f"recipient refused: {text}") from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise RetryableSendError(f"the SMTP server refused the login: {exc.code} {exc.message}") from None
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentSendError(f"the SMTP server refused the message: {exc.code} {exc.message}") from None
            raise RetryableSendError(f"the SMTP server deferred the message: {exc.code} {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise RetryableSendError(f"cannot reach the SMTP server: {exc.__class__.__name__}: {exc}") from None
        return SendReceipt(provider_id=str(mail["Message-ID"]), status=DeliveryStatus.SENT)

    # --- admin: test connection ------------------------------------------------------------------

    async def check(self) -> list[str]:
        """Log in to the configured SMTP and IMAP servers; raise ChannelError saying what the server refused."""
        done: list[str] = []
        if self.config.smtp_host:
            try:
                client = self._smtp_client()
                async with client:
                    await client.noop()
            except aiosmtplib.SMTPAuthenticationError as exc:
                raise ChannelError(f"SMTP {self.config.smtp_host}: login refused ({exc.code} {exc.message})") from None
            except aiosmtplib.SMTPResponseException as exc:
                raise ChannelError(f"SMTP {self.config.smtp_host}: {exc.code} {exc.message}") from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                raise ChannelError(f"SMTP {self.config.smtp_host}:{self.config.smtp_port}: cannot connect "
                                   f"({exc.__class__.__name__}: {exc})") from None
            how = {"starttls": " (STARTTLS)", "tls": " (TLS)", "none": ""}[self.config.smtp_security]
            login = " and logged in" if self.config.smtp_username else ""
            done.append(f"SMTP {self.config.smtp_host}:{self.config.smtp_port}: connected{how}{login}")
        if self.config.inbound == "imap" or self.config.imap_host:
            from threadline.channels.email.imap import ImapError, open_mailbox

            try:
                box = await open_mailbox(self.config, timeout=self.config.smtp_timeout_seconds)
                await box.close()
            except ImapError as exc:
                raise ChannelError(str(exc)) from None
            done.append(f"IMAP {self.config.imap_host}:{self.config.imap_port}: logged in, folder "
                        f"{self.config.imap_folder!r} opened (UIDVALIDITY {box.uidvalidity})")
        if not done:
            raise ChannelError("nothing to test: set smtp_host and/or imap_host")
        return done
