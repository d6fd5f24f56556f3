"""Read one RFC 5322 message into what the timeline needs. Pure: bytes in, a ``ParsedMail`` out.

Robust by design: a header that cannot be decoded, an unknown charset, a broken MIME structure or an
absurd size never raises; the problem is recorded in ``flags`` and the best reading is returned. The raw
bytes stay in the inbox item whatever happens, so nothing is lost.

- Text: the first ``text/plain`` body part (else the HTML part turned into text), decoded with its
  charset; quoted replies and signatures are cut for the timeline (``text``) while ``text_full`` keeps it all.
- HTML: sanitised with nh3 (Ammonia) for display; ``cid:`` image links are kept so the caller can point
  them at the stored inline images.
- Attachments and inline images: bytes, type, name, Content-ID; parts over the size limit are listed in
  ``skipped`` and left in the raw mail. Archives are never opened, so a zip bomb is just a small file.
- Threading: Message-ID, In-Reply-To, References.
- Loops: ``auto_reply`` (RFC 3834 Auto-Submitted, Precedence, X-Autoreply, list mail, null sender): never
  answered automatically. ``automatic`` (out-of-office, auto-generated, bulk, bounces: everything but list
  mail and ``X-Auto-Response-Suppress``, which humans' mail may carry) is also recorded quietly.
- Bounces: RFC 3464 delivery status notifications → ``bounce`` (original Message-ID, status, recipient).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

import nh3

MSGID_RE = re.compile(r"<[^<>\s]{1,900}>")


@dataclass(frozen=True)
class MailLimits:
    max_header_bytes: int = 256 * 1024  # a header block past this is not parsed (raw kept, flagged)
    max_parts: int = 200
    max_depth: int = 12
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_html_chars: int = 500_000
    max_text_chars: int = 65_536


@dataclass
class MailPart:
    name: str
    content_type: str
    data: bytes
    content_id: str = ""
    inline: bool = False


@dataclass
class Bounce:
    original_message_id: str
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # e.g. 5.1.1
    recipient: str
    diagnostic: str

    @property
    def hard(self) -> bool:
        return self.action == "failed" or self.status.startswith("5")


@dataclass
class ParsedMail:
    message_id: str
    subject: str = ""
    from_name: str = ""
    from_addr: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    reply_to_name: str = ""  # the display name of the first Reply-To address
    header_message_id: str = ""  # the Message-ID header; "" when the mail has none (message_id is then a digest)
    delivered_to: list[str] = field(default_factory=list)
    date: datetime | None = None
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)  # as in the header: oldest first
    text: str = ""  # for the timeline: quotes and signature cut
    text_full: str = ""
    html: str = ""  # sanitised
    parts: list[MailPart] = field(default_factory=list)
    skipped: list[dict[str, object]] = field(default_factory=list)  # attachments left in the raw mail
    auto_reply: bool = False
    auto_reply_reason: str = ""
    automatic: bool = False  # an automatic reply or notice: recorded without reopening or routing anything
    bounce: Bounce | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def thread_refs(self) -> tuple[str, ...]:
        """Earlier messages this one answers, strongest first: In-Reply-To, then References newest first."""
        out: list[str] = []
        for ref in [self.in_reply_to, *reversed(self.references)]:
            if ref and ref not in out:
                out.append(ref)
        return tuple(out[:50])


def header_block_size(raw: bytes) -> int:
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return i
    return len(raw)


INVENTED_ID_DOMAIN = "@threadline.invalid>"


def raw_message_id(raw: bytes) -> str:
    """The Message-ID without parsing the body (cheap), or a digest of the bytes."""
    return raw_identity(raw)[0]


def raw_identity(raw: bytes) -> tuple[str, str]:
    """(Message-ID or a digest of the bytes, fingerprint), from the headers only (cheap: the dedupe key).

    The fingerprint is a digest of the From address, Date and Subject: what every redelivery of one mail keeps
    (a retried SMTP transaction, another MX relay, a provider's retried webhook whose MIME is rebuilt), and
    what a different mail that reuses a Message-ID (forged, or a broken mailer's fixed id) does not."""
    if header_block_size(raw) <= MailLimits.max_header_bytes:
        try:
            headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
            found = MSGID_RE.search(str(headers.get("message-id", "") or ""))
            if found:
                return found.group(0), mail_fingerprint(
                    ",".join(a.lower() for _, a in getaddresses([_unraw(str(v)) for v in
                                                                   headers.get_all("from", failobj=[])])),
                    str(headers.get("date", "") or ""), str(headers.get("subject", "") or ""))
        except Exception:  # noqa: BLE001 - fall back to the digest
            pass
    digest = hashlib.sha256(raw).hexdigest()
    return f"<sha256-{digest[:40]}{INVENTED_ID_DOMAIN}", digest[:16]


def mail_fingerprint(sender: str, date: str, subject: str) -> str:
    text = "\n".join(" ".join(_unraw(v).split()) for v in (sender, date, subject))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def dedupe_key(raw: bytes) -> str:
    """A mail's inbox key: its Message-ID and fingerprint, so a redelivery is dropped and a different mail
    reusing the Message-ID is not."""
    message_id, fingerprint = raw_identity(raw)
    return f"{message_id[:280]} {fingerprint}"


def _unraw(value: str) -> str:
    """compat32 keeps 8-bit header bytes as surrogate escapes: read them as UTF-8, else Windows-1252."""
    if not any("\udc80" <= c <= "\udcff" for c in value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def decode_words(value: str, flags: list[str] | None = None, name: str = "") -> str:
    """RFC 2047 encoded words (=?charset?Q|B?…?=) to text, whitespace folded."""
    value = _unraw(str(value))
    if "=?" in value:
        try:
            value = str(make_header(decode_header(value)))
        except (LookupError, ValueError, UnicodeError, HeaderParseError):
            if flags is not None:
                flags.append(f"bad_header:{name}")
    return " ".join(value.split())


def _h(msg: Message, name: str, flags: list[str]) -> str:
    """A header decoded to text; undecodable ones are read raw and flagged."""
    value = msg.get(name)
    return "" if value is None else decode_words(str(value), flags, name)


def _addresses(msg: Message, name: str, flags: list[str]) -> list[tuple[str, str]]:
    values = [_unraw(str(v)) for v in msg.get_all(name, failobj=[])]
    out = []
    for display, addr in getaddresses(values):  # split first: a decoded name may hold a comma
        addr = addr.strip()
        if "@" in addr:
            out.append((decode_words(display, flags, name).strip(), addr.lower()))
    return out


def _decode(part: Message, flags: list[str]) -> str:
    try:
        data = part.get_payload(decode=True) or b""
    except Exception:  # noqa: BLE001
        flags.append("bad_transfer_encoding")
        data = str(part.get_payload()).encode("utf-8", "replace")
    if not isinstance(data, bytes):
        data = str(data).encode("utf-8", "replace")
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        flags.append(f"unknown_charset:{charset[:40]}")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", errors="replace")


class _TextOfHtml(HTMLParser):
    BLOCK = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "blockquote", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.quote = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = dict(attrs).get("class") or ""
        if tag in ("style", "script", "head", "title"):
            self.skip += 1
        elif tag == "blockquote" or "gmail_quote" in classes or "moz-cite-prefix" in classes:
            self.quote += 1 if tag in ("blockquote", "div") else 0
            self.out.append("\n\x00QUOTE\x00\n")
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title") and self.skip:
            self.skip -= 1
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """(text with quotes, text before the first quote block) of an HTML body."""
    p = _TextOfHtml()
    try:
        p.feed(html)
        p.close()
    except Exception:  # noqa: BLE001 - best effort
        pass
    joined = "".join(p.out)
    lines = [" ".join(line.split()) for line in joined.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    full = text.replace("\x00QUOTE\x00", "").strip()
    return re.sub(r"\n{3,}", "\n\n", full), text.split("\x00QUOTE\x00", 1)[0].strip()


def sanitise_html(html: str) -> str:
    return nh3.clean(html, url_schemes={"http", "https", "mailto", "cid"},
                     link_rel="noopener noreferrer nofollow")


# --- quoted replies and signatures -------------------------------------------------------------
#
# Written here rather than taken from a library: quotequail has no Italian attribution nor the localized
# Outlook blocks ("Da:/Inviato:", "De :/Envoyé :"), mail-parser-reply needs the languages chosen up front
# and also cuts at phrases such as "Best regards", which would eat the customer's own closing lines.

_SP = r"[\s\u00a0\u202f]"  # French puts a (narrow) no-break space before the colon
# Attribution lines ("On <date>, <name> wrote:"), the way Gmail, Apple Mail, Outlook mobile and Thunderbird
# write them in each language; clients wrap long ones over two or three lines, so up to three are joined.
_ATTRIBUTIONS = [re.compile(p, re.I | re.S) for p in (
    r"^On\b.{0,300}\bwrote" + _SP + r"?:$",  # English
    r"^Le\b.{0,300}\ba" + _SP + r"+écrit" + _SP + r"*:$",  # French
    r"^Am\b.{0,300}\bschrieb\b.{0,300}:$",  # German
    r"^El\b.{0,300}\bescribió" + _SP + r"*:$",  # Spanish
    r"^Il\b.{0,300}\bha" + _SP + r"+scritto" + _SP + r"*:$",  # Italian
    r"^Em\b.{0,300}\bescreveu" + _SP + r"*:$",  # Portuguese
    r"^Op\b.{0,300}\b(?:schreef\b.{0,300}|het volgende geschreven" + _SP + r"*):$",  # Dutch
    r"^(?:Den|På)\b.{0,300}\bskrev\b.{0,300}:$",  # Swedish, Danish, Norwegian
    r"^(?:W dniu|Dnia)\b.{0,300}\bnapisał(?:a|\(a\))?" + _SP + r"*:$",  # Polish
    r"^.{0,300}\bнаписал(?:а|\(а\))?" + _SP + r"*:$",  # Russian
)]
_ATTRIBUTION_START = re.compile(r"^\s*(On|Le|Am|El|Il|Em|Op|Den|På|W dniu|Dnia)\b|написал", re.I)
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(Original Message|Ursprüngliche Nachricht|Mensaje original|Messaggio originale|"
    r"Message d'origine|Mensagem original|Oorspronkelijk bericht|Originalmeddelande|Oryginalna wiadomość|"
    r"Исходное сообщение)\s*-{2,}\s*$", re.I)
_RULE = re.compile(r"^\s*_{20,}\s*$")  # Outlook on the web: a rule, then the From:/Sent: block
# Outlook's header block of the quoted mail: "From:" then, within a few lines, "Sent:"/"Date:" (or "To:" and
# "Subject:"), in the client's language; labels may be bold (*From:*) or spaced before the colon (French).
_LABEL = r"^\s*\*?(?:{})" + _SP + r"?\*?:\*?(?:" + _SP + r"|$)"
_OUTLOOK_FROM = re.compile(_LABEL.format("From|De|Von|Da|Van|Från|Fra|Od|От"), re.I)
_OUTLOOK_SENT = re.compile(_LABEL.format(
    "Sent|Date|Envoyé|Gesendet|Datum|Inviato|Data|Enviado(?: el)?|Enviada|Fecha|Verzonden|Skickat|Sendt|"
    "Wysłano|Отправлено"), re.I)
_OUTLOOK_OTHER = re.compile(_LABEL.format("To|À|A|An|Para|Aan|Till|Til|Do|Кому|Subject|Objet|Betreff|Oggetto|"
                                          "Asunto|Assunto|Onderwerp|Ämne|Emne|Temat|Тема|Cc"), re.I)
_FORWARD = re.compile(
    r"^\s*-{2,}\s*(Forwarded message|Begin forwarded message|Weitergeleitete Nachricht|Mensaje reenviado|"
    r"Messaggio inoltrato|Message transféré|Mensagem encaminhada|Doorgestuurd bericht)|"
    r"^\s*(Begin forwarded message|Anfang der weitergeleiteten|Inicio del mensaje reenviado|"
    r"Inizio messaggio inoltrato|Début du message réexpédié|Início da mensagem encaminhada)", re.I)
_MOBILE_SIG = re.compile(
    r"^\s*(Sent from my \w+|Get Outlook for \w+|Envoyé de mon \w+|Von meinem \w+ gesendet|Gesendet von meinem|"
    r"Enviado desde mi \w+|Inviato da(l mio)? \w+|Enviado do meu \w+|Verzonden met mijn \w+|"
    r"Verstuurd vanaf mijn \w+|Skickat från min \w+)", re.I)


def _attribution(lines: list[str], i: int) -> bool:
    """Whether an attribution starts at line ``i`` (alone or wrapped over the next lines). It must carry a
    digit (its date or time) or be followed by ">" quoted lines, so "On Monday I wrote:" in the customer's
    own text is not one."""
    if not _ATTRIBUTION_START.search(lines[i]):
        return False
    joined = lines[i].strip()
    for k in range(3):
        if k:
            if i + k >= len(lines) or not lines[i + k].strip():
                return False
            nxt = lines[i + k].strip()
            joined += nxt if joined.endswith(("<", "(", "[")) or nxt.startswith((">", ")", "]")) else " " + nxt
        if any(p.match(joined) for p in _ATTRIBUTIONS):
            after = next((x for x in lines[i + k + 1:] if x.strip()), "")
            return bool(re.search(r"\d", joined)) or after.lstrip().startswith(">")
    return False


def _outlook_block(lines: list[str], i: int) -> bool:
    if not _OUTLOOK_FROM.match(lines[i]):
        return False
    following = lines[i + 1:i + 5]
    return any(_OUTLOOK_SENT.match(n) for n in following) or \
        sum(bool(_OUTLOOK_OTHER.match(n)) for n in following) >= 2


def strip_reply(text: str) -> str:
    """The new part of a reply: cut at the quote's attribution ("On … wrote:", "El … escribió:", "Il … ha
    scritto:", "Le … a écrit :", "Am … schrieb …:", "Em … escreveu:", "Op … schreef …:"… also wrapped over
    two lines), at Outlook's "From:/Sent:" block (localized: "De:/Enviado:", "Da:/Inviato:", "Von:/Gesendet:",
    "De :/Envoyé :"…), at "-----Original Message-----" (localized), at trailing ">" lines, and at the "-- "
    signature separator. A forwarded message is kept whole (the forwarded text is what the customer sends)."""
    lines = text.replace("\r\n", "\n").split("\n")
    cut = len(lines)
    for i, line in enumerate(lines):
        if _FORWARD.match(line):
            break
        if _SEPARATOR.match(line) or _RULE.match(line) or _attribution(lines, i) or _outlook_block(lines, i):
            cut = i
            break
        if line.rstrip() == "--" and line.startswith("-- ") or line == "-- ":
            cut = i
            break
        if line.startswith(">") and all(not x.strip() or x.startswith(">") for x in lines[i:]):
            cut = i
            break
    kept = lines[:cut]
    while kept and _MOBILE_SIG.match(kept[-1] or "x") is None and not kept[-1].strip():
        kept.pop()
    if kept and _MOBILE_SIG.match(kept[-1]):
        kept.pop()
    out = "\n".join(kept).strip()
    return out or text.strip()


# --- loops and bounces -------------------------------------------------------------------------

# Subjects of out-of-office replies from clients that send no header saying so (Outlook/Exchange add
# Auto-Submitted; some older servers and webmails only change the subject), in the main languages.
# (Only forms no person writes at the start of a subject: "Absence …" or "Fuori sede …" could be a customer's.)
_AUTO_SUBJECTS = ("auto:", "automatic reply", "autoreply", "auto-reply", "out of office", "out of the office",
                  "réponse automatique", "abwesenheitsnotiz", "automatische antwort", "respuesta automática",
                  "risposta automatica", "resposta automática", "automatisch antwoord")


def _auto_reply(msg: Message, flags: list[str], envelope_from: str | None) -> tuple[str, bool]:
    """(why the mail is automatic, whether it is an automatic *reply or notice*): list mail and
    ``X-Auto-Response-Suppress`` (which people's own mail may carry) only forbid answering it automatically;
    the rest is also recorded quietly (no reopening, no routing)."""
    auto = _h(msg, "auto-submitted", flags).lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}", True
    precedence = _h(msg, "precedence", flags).lower()
    if precedence in ("bulk", "junk", "auto_reply"):
        return f"Precedence: {precedence}", True
    for name in ("x-autoreply", "x-autorespond", "x-autogenerated"):
        if msg.get(name) is not None:
            return name, True
    if _h(msg, "return-path", flags).strip() == "<>" or envelope_from == "":
        return "null sender", True
    if msg.get_content_type() == "multipart/report":
        return "delivery report", True
    subject = _h(msg, "subject", flags).lower()
    if subject.startswith(_AUTO_SUBJECTS):
        return "subject", True
    if precedence == "list" or msg.get("list-id") is not None or msg.get("list-unsubscribe") is not None:
        return "mailing list", False
    if msg.get("x-auto-response-suppress") is not None:
        return "x-auto-response-suppress", False
    return "", False


def _bounce(msg: Message, flags: list[str]) -> Bounce | None:
    if msg.get_content_type() != "multipart/report" or \
            (msg.get_param("report-type") or "").lower() != "delivery-status":
        return None
    action = status = recipient = diagnostic = original = ""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            blocks = part.get_payload()
            if isinstance(blocks, list):
                for block in blocks[1:] or blocks:
                    if not isinstance(block, Message):
                        continue
                    action = action or str(block.get("action", "")).strip().lower()
                    status = status or str(block.get("status", "")).strip()
                    recipient = recipient or str(block.get("final-recipient", "")).split(";")[-1].strip()
                    diagnostic = diagnostic or " ".join(str(block.get("diagnostic-code", "")).split())
        elif ctype in ("message/rfc822", "message/global") and not original:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found = MSGID_RE.search(str(inner[0].get("message-id", "")))
                original = found.group(0) if found else ""
        elif ctype == "text/rfc822-headers" and not original:
            found = re.search(r"^message-id:\s*(<[^<>\s]+>)", _decode(part, flags), re.I | re.M)
            original = found.group(1) if found else ""
    if not original:
        flags.append("bounce_without_original_id")
        return None
    return Bounce(original, action or "failed", status, recipient.lower(), diagnostic[:500])


# --- the whole message -------------------------------------------------------------------------

def parse_mail(raw: bytes, limits: MailLimits | None = None, *, envelope_from: str | None = None) -> ParsedMail:
    limits = limits or MailLimits()
    flags: list[str] = []
    if header_block_size(raw) > limits.max_header_bytes:
        return ParsedMail(message_id=raw_message_id(raw), text="(this email's headers are too large to read; "
                          "the original is kept)", flags=["headers_too_large"])
    # compat32: the modern policy's structured headers cost ~8 ms a mail; we decode the few we read
    msg = BytesParser(policy=policy.compat32).parsebytes(raw)
    flags.extend(sorted({f"defect:{d.__class__.__name__}" for d in msg.defects}))
    found = MSGID_RE.search(_h(msg, "message-id", flags))
    out = ParsedMail(message_id=found.group(0) if found else raw_message_id(raw),
                     header_message_id=found.group(0) if found else "")
    out.subject = _h(msg, "subject", flags)[:998]
    sender = _addresses(msg, "from", flags) or _addresses(msg, "sender", flags)
    if sender:
        out.from_name, out.from_addr = sender[0]
    out.to = [a for _, a in _addresses(msg, "to", flags)][:100]
    out.cc = [a for _, a in _addresses(msg, "cc", flags)][:100]
    reply_to = _addresses(msg, "reply-to", flags)[:10]
    out.reply_to = [a for _, a in reply_to]
    out.reply_to_name = reply_to[0][0] if reply_to else ""
    out.delivered_to = [a for _, a in _addresses(msg, "delivered-to", flags)][:10] + \
        [a for _, a in _addresses(msg, "x-original-to", flags)][:10]
    try:
        date = _h(msg, "date", flags)
        out.date = parsedate_to_datetime(date) if date else None
        if out.date is not None and out.date.tzinfo is None:
            out.date = None
    except (TypeError, ValueError, IndexError):
        flags.append("bad_date")
    found = MSGID_RE.search(_h(msg, "in-reply-to", flags))
    out.in_reply_to = found.group(0) if found else ""
    out.references = MSGID_RE.findall(_h(msg, "references", flags))[-50:]
    out.auto_reply_reason, out.automatic = _auto_reply(msg, flags, envelope_from)
    out.auto_reply = bool(out.auto_reply_reason)
    out.bounce = _bounce(msg, flags)

    plain: str | None = None
    html: str | None = None
    count = 0

    def walk(part: Message, depth: int) -> None:
        nonlocal plain, html, count
        count += 1
        if count > limits.max_parts:
            if "too_many_parts" not in flags:
                flags.append("too_many_parts")
            return
        if depth > limits.max_depth:
            if "too_deep" not in flags:
                flags.append("too_deep")
            return
        ctype = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        if part.is_multipart() and ctype.startswith("multipart/"):
            payload = part.get_payload()
            for sub in payload if isinstance(payload, list) else []:
                walk(sub, depth + 1)
            return
        try:
            filename = decode_words(part.get_filename() or "")
        except Exception:  # noqa: BLE001
            filename, _ = "attachment", flags.append("bad_filename")
        if disposition != "attachment" and not filename:
            if ctype == "text/plain" and plain is None:
                plain = _decode(part, flags)
                return
            if ctype == "text/html" and html is None:
                html = _decode(part, flags)
                return
        if out.bounce is not None and ctype in ("message/delivery-status", "text/rfc822-headers"):
            return
        if ctype.startswith("multipart/") or (ctype in ("text/plain", "text/html") and not filename
                                              and disposition != "attachment"):
            return  # a second body part of an alternative: nothing to keep
        if ctype in ("message/rfc822", "message/global"):
            data = part.as_bytes(policy=policy.compat32) if not isinstance(part.get_payload(), list) else \
                part.get_payload()[0].as_bytes(policy=policy.compat32)
            filename = filename or "forwarded.eml"
        else:
            try:
                data = part.get_payload(decode=True) or b""
            except Exception:  # noqa: BLE001
                flags.append("bad_transfer_encoding")
                data = b""
        cid = (str(part.get("content-id", "")) or "").strip().strip("<>")[:200]
        name = filename or (f"image.{ctype.split('/')[-1]}" if ctype.startswith("image/") else "attachment")
        if len(data) > limits.max_attachment_bytes:
            out.skipped.append({"name": name[:255], "content_type": ctype, "size": len(data),
                                "reason": "too large"})
            if "attachment_too_large" not in flags:
                flags.append("attachment_too_large")
            return
        out.parts.append(MailPart(name[:255], ctype, data, cid, inline=bool(cid) and disposition != "attachment"))

    walk(msg, 0)
    if plain is not None:
        out.text_full = plain
        out.text = strip_reply(plain)
    elif html is not None:
        out.text_full, before_quote = html_to_text(html)
        out.text = strip_reply(before_quote or out.text_full)
    if html is not None:
        if len(html) > limits.max_html_chars:
            flags.append("html_truncated")
        out.html = sanitise_html(html[:limits.max_html_chars])
    # An image is part of the body when the HTML shows it (cid:); one with a Content-ID the HTML never
    # references is a file like any other (Apple Mail gives every attachment a Content-ID).
    shown = {m.lower() for m in re.findall(r"cid:([^\s\"'<>)]+)", out.html, re.I)}
    for part in out.parts:
        part.inline = part.inline and part.content_id.lower() in shown
    out.text = out.text.strip()[:limits.max_text_chars]
    out.text_full = out.text_full.strip()[:limits.max_text_chars * 4]
    out.flags = flags
    return out
