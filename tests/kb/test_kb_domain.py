"""The knowledge base's pure rules: locales, slugs, Markdown rendered and sanitised, search words and
stems, the FTS5 expression, snippets made safe, the rate limit."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from threadline.domain.errors import ValidationFailed
from threadline.domain.ratelimit import RateLimiter
from threadline.kb import domain


def test_locales_are_parsed_checked_and_picked() -> None:
    assert domain.parse_locales("en, ES ,it,pt_BR,bad locale,,en") == ("en", "es", "it", "pt-br")
    assert domain.parse_locales("") == domain.DEFAULT_LOCALES
    assert domain.check_locale("ES", ("en", "es")) == "es"
    with pytest.raises(ValidationFailed) as err:
        domain.check_locale("xx", ("en", "es"))
    assert err.value.field == "locale" and "en, es" in err.value.message
    allowed = ("en", "es", "it")
    assert domain.pick_locale("it-IT,it;q=0.9,en;q=0.5", allowed) == "it"
    assert domain.pick_locale("fr-FR, es;q=0.4, en;q=0.3", allowed) == "es"
    assert domain.pick_locale("de", allowed) == "en"
    assert domain.pick_locale(None, allowed) == "en"
    assert domain.pick_locale("es;q=abc, it;q=0.2", allowed) == "it"


def test_slugs() -> None:
    assert domain.slugify("¿Olvidó la contraseña?") == "olvido-la-contrasena"
    assert domain.slugify("Città & spedizioni!") == "citta-spedizioni"
    assert domain.slugify("!!!") == "article"
    assert len(domain.slugify("x" * 500)) == domain.MAX_SLUG
    assert domain.check_slug("reset-password") == "reset-password"
    for bad in ("", "a--b", "-a", "two words", "a" * 121, "ñ"):
        with pytest.raises(ValidationFailed):
            domain.check_slug(bad)


class Elements(HTMLParser):
    """The elements and attributes an HTML text really has (text that looks like a tag is not one)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def assert_safe(html: str) -> None:
    for tag, attrs in Elements(html).tags:
        assert tag in domain.ALLOWED_TAGS, tag
        assert not any(name.startswith("on") or name == "style" for name in attrs), (tag, attrs)
        for name in ("href", "src"):
            assert not (attrs.get(name) or "").strip().lower().startswith(("javascript:", "data:", "vbscript:"))


def test_markdown_is_rendered_and_sanitised() -> None:
    html = domain.render("# Title\n\nSome **bold** and [a link](https://example.com).\n\n"
                         "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n"
                         "[bad](javascript:alert(1)) ![pic](/help/images/abc)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html and "<table>" in html
    assert 'href="https://example.com"' in html and 'rel="noopener noreferrer nofollow"' in html
    assert '<img src="/help/images/abc" alt="pic">' in html
    assert "&lt;script&gt;" in html  # raw HTML is shown as text, never run
    assert_safe(html)
    assert [t for t, _ in Elements(html).tags].count("img") == 1
    for attack in ('<a href="javascript:alert(1)">x</a>', '<iframe src="https://evil"></iframe>',
                   '<svg onload=alert(1)>', '<p style="x" onclick="y">z</p>', "[x](JaVaScRiPt:alert(1))",
                   "![x](javascript:alert(1))", "[x](data:text/html;base64,PHNjcmlwdD4=)",
                   "<scr<script>ipt>alert(1)</script>", "`<script>`\n\n```\n<script>x</script>\n```"):
        assert_safe(domain.render(attack))


def test_plain_text_and_description() -> None:
    text = domain.plain_text("# Reset\n\nGo to **Settings** &amp; press `Reset`.\n\n<b>raw</b>")
    assert text == "Reset Go to Settings & press Reset. <b>raw</b>"
    assert domain.description("", "word " * 100).endswith("…") and len(domain.description("", "word " * 100)) <= 160
    assert domain.description("Short summary", "ignored") == "Short summary"


def test_query_words_stop_words_and_stems() -> None:
    q = domain.parse_query("¿Cómo cambio mi contraseña?", "es")
    assert q.words == ("cambio", "contraseña")
    assert q.stems == ("cambi", "contraseñ")
    assert domain.parse_query("how do I", "en").words == ("how", "do", "i")  # only stop words: all kept
    assert domain.parse_query("   ", "en").empty
    long = domain.parse_query(" ".join(f"w{i}" for i in range(50)), "en")
    assert len(long.words) == domain.MAX_TERMS
    assert domain.parse_query("fatture spedizioni", "it").stems == ("fattur", "spedizion")
    assert domain.stems("xx", ["Words"]) == ["words"]  # no stemmer for the language: lower case only


def test_fts5_expression_quotes_and_folds() -> None:
    q = domain.parse_query('contraseña "x" OR NEAR(a b)', "es")
    match = domain.fts5_match(q, "es", ("public",))
    assert match.startswith('facets : "loces" AND (facets : "vispublic") AND (')
    assert '"contrasena"*' in match and 'stems : "contrasen"' in match
    assert '""' not in match  # the quotes of the query never reach the expression (words only)
    assert " OR " in domain.fts5_match(q, "es", ("public", "internal"), any_word=True)
    assert domain.pg_tsquery(domain.parse_query("reset password", "en")) == "reset & password:*"
    assert domain.pg_tsquery(domain.parse_query("reset password", "en"), any_word=True) == "reset | password:*"


def test_snippets_are_escaped() -> None:
    raw = f"use {domain.MARK_START}<script>{domain.MARK_END} & more"
    assert domain.safe_snippet(raw) == "use <mark>&lt;script&gt;</mark> &amp; more"
    assert domain.safe_snippet(None) == ""


def test_visitor_key_and_rate_limit() -> None:
    a = domain.visitor_key("secret", "1.2.3.4", "Firefox")
    assert a == domain.visitor_key("secret", "1.2.3.4", "Firefox") and len(a) == 32 and "1.2.3.4" not in a
    assert a != domain.visitor_key("secret", "1.2.3.5", "Firefox")
    limiter = RateLimiter()  # the help center's limiter: domain/ratelimit.py
    assert all(limiter.allow("k", 3, now=0.0) for _ in range(3))
    assert not limiter.allow("k", 3, now=1.0)
    assert limiter.allow("k", 3, now=61.0)


def test_help_center_words() -> None:
    assert domain.words_for("es")["search"] == "Buscar"
    assert domain.words_for("it")["search"] == "Cerca"
    assert domain.words_for("pt-br")["search"] == "Search"  # no words for it yet: English
    assert domain.status_of(None, "a", "b", "c", (None, None, None)) == "draft"
    assert domain.status_of(1, "a", "b", "c", ("a", "b", "c")) == "published"
    assert domain.status_of(1, "a2", "b", "c", ("a", "b", "c")) == "changed"


def test_fields_lose_control_and_invisible_characters() -> None:
    assert domain.check_text("Reset\x00 the\u202e  password\n", "title", 200) == "Reset the password"
    assert domain.clean_body("line\x00 one\n\tline\x07 two\r\n") == "line one\n\tline two\r\n"
    with pytest.raises(ValidationFailed):
        domain.check_text("\u200b\x00 ", "title", 200, required=True)
    with pytest.raises(ValidationFailed):
        domain.check_text("x" * 201, "title", 200)
    assert domain.is_slug("a-b") and not domain.is_slug("a\x00b") and not domain.is_slug("x" * 121)
