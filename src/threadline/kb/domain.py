"""The knowledge base's pure rules: locales, slugs, the limits of a field, Markdown rendered to sanitised
HTML, the words of a search (folded, stemmed, stop words dropped) and the match expression built from
them, highlighted snippets made safe, visitors' feedback keys, and the help center's words in each
language. No I/O, no SQLAlchemy."""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

from threadline.domain.errors import ValidationFailed
from threadline.domain.text import clean_name

MAX_TITLE = 200
MAX_SUMMARY = 300
MAX_BODY = 100_000  # characters of Markdown
MAX_SLUG = 120
MAX_CATEGORY_NAME = 100
MAX_CATEGORY_DESCRIPTION = 500
MAX_QUERY = 200
MAX_TERMS = 12
VISIBILITIES = ("public", "internal")  # internal: agents only, never on the help center or the widget
STATUSES = ("draft", "published", "changed")  # changed: published, with a draft not published yet
DEFAULT_LOCALES = ("en", "es", "it")

_LOCALE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_WORD = re.compile(r"\w+", re.UNICODE)
# Snippet markers: private-use characters nobody types; the snippet is escaped, then they become <mark>.
MARK_START, MARK_END = "\ue000", "\ue001"


# ---------------------------------------------------------------------------------------------------
# Locales


def parse_locales(text: str | Iterable[str]) -> tuple[str, ...]:
    """The configured locales (``en,es,it``): lower case, well formed, first one the default."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in items:
        loc = raw.strip().lower().replace("_", "-")
        if loc and _LOCALE.match(loc) and loc not in out:
            out.append(loc)
    return tuple(out) or DEFAULT_LOCALES


def check_locale(locale: str, allowed: Sequence[str]) -> str:
    loc = (locale or "").strip().lower().replace("_", "-")
    if loc not in allowed:
        raise ValidationFailed(f"unknown locale '{locale[:20]}': the knowledge base has {', '.join(allowed)}",
                               field="locale")
    return loc


def language(locale: str) -> str:
    return locale.split("-", 1)[0]


def pick_locale(accept_language: str | None, allowed: Sequence[str]) -> str:
    """The best of ``allowed`` for an Accept-Language header (q-values honoured), else the first."""
    best: tuple[float, int, str] | None = None
    for i, part in enumerate((accept_language or "")[:500].split(",")):
        bits = part.strip().split(";")
        tag = bits[0].strip().lower().replace("_", "-")
        q = 1.0
        for b in bits[1:]:
            if b.strip().startswith("q="):
                try:
                    q = float(b.strip()[2:])
                except ValueError:
                    q = 0.0
        match = tag if tag in allowed else next((a for a in allowed if language(a) == language(tag)), None)
        if match and q > 0 and (best is None or (q, -i) > (best[0], best[1])):
            best = (q, -i, match)
    return best[2] if best else allowed[0]


# PostgreSQL text search configurations shipped with the server, by language; others use 'simple'.
PG_CONFIGS = {"en": "english", "es": "spanish", "it": "italian", "fr": "french", "de": "german",
              "pt": "portuguese", "nl": "dutch", "sv": "swedish", "da": "danish", "fi": "finnish",
              "no": "norwegian", "nb": "norwegian", "ru": "russian", "hu": "hungarian", "ro": "romanian",
              "tr": "turkish"}
# Snowball stemmers (the snowballstemmer package, pure Python) used for the SQLite index, by language.
STEMMERS = {"en": "english", "es": "spanish", "it": "italian", "fr": "french", "de": "german",
            "pt": "portuguese", "nl": "dutch", "sv": "swedish", "da": "danish", "fi": "finnish",
            "no": "norwegian", "nb": "norwegian", "ru": "russian", "hu": "hungarian", "ro": "romanian",
            "tr": "turkish", "ca": "catalan", "el": "greek", "pl": "polish", "cs": "czech"}


def pg_config(locale: str) -> str:
    return PG_CONFIGS.get(language(locale), "simple")


# ---------------------------------------------------------------------------------------------------
# Fields


def slugify(text: str) -> str:
    """An ASCII slug of a title: accents dropped, words joined by hyphens (``¿Olvidó la contraseña?`` →
    ``olvido-la-contrasena``)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")
    return slug[:MAX_SLUG].rstrip("-") or "article"


def is_slug(slug: str) -> bool:
    return len(slug) <= MAX_SLUG and bool(_SLUG.match(slug))


def check_slug(slug: str) -> str:
    slug = slug.strip().lower()
    if not slug or len(slug) > MAX_SLUG or not _SLUG.match(slug):
        raise ValidationFailed(f"a slug is 1 to {MAX_SLUG} lower-case letters, digits and single hyphens",
                               field="slug")
    return slug


def check_text(value: str, field: str, maximum: int, *, required: bool = False) -> str:
    """A one-line field (title, summary, a category's name): no control or invisible characters
    (``domain/text.py``), whitespace collapsed."""
    value = clean_name(value or "", maximum + 1)
    if required and not value:
        raise ValidationFailed(f"{field} is required", field=field)
    if len(value) > maximum:
        raise ValidationFailed(f"{field} is at most {maximum} characters", field=field)
    return value


def check_visibility(value: str) -> str:
    if value not in VISIBILITIES:
        raise ValidationFailed(f"visibility is one of {', '.join(VISIBILITIES)}", field="visibility")
    return value


def clean_body(markdown: str) -> str:
    """Markdown as written, without NUL and the other control characters but tab and newlines (PostgreSQL
    refuses NUL in text; none of them means anything in an article)."""
    return "".join(c for c in (markdown or "") if c >= " " or c in "\t\n\r")


def status_of(published_at: object, title: str, body: str, summary: str,
              published: tuple[str | None, str | None, str | None]) -> str:
    """draft (never published, or unpublished), published (the draft is what is out), changed."""
    if published_at is None:
        return "draft"
    return "published" if (title, body, summary) == published else "changed"


# ---------------------------------------------------------------------------------------------------
# Markdown → safe HTML

ALLOWED_TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
                "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody",
                "td", "th", "thead", "tr", "ul"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "th": {"align"}, "td": {"align"},
                      "ol": {"start"}, "code": {"class"}}


@lru_cache(maxsize=1)
def _md() -> MarkdownIt:
    # raw HTML in the Markdown is shown as text, never passed on; nh3 cleans what the renderer makes too
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table") \
        .enable("strikethrough")


def render(markdown: str) -> str:
    """The article's HTML: Markdown rendered with raw HTML off, then sanitised by nh3 (no script, no event
    handler, no javascript: URL, only the tags and attributes an article needs)."""
    raw = _md().render(markdown or "")
    return nh3.clean(raw, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
                     link_rel="noopener noreferrer nofollow", strip_comments=True)


def plain_text(markdown: str) -> str:
    """The words of an article, for the search index and the meta description (no markup)."""
    text = nh3.clean(_md().render(markdown or ""), tags=set(), attributes={})
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def description(summary: str, text: str, limit: int = 160) -> str:
    out = (summary or text or "").strip()
    return out if len(out) <= limit else out[: limit - 1].rsplit(" ", 1)[0] + "…"


# ---------------------------------------------------------------------------------------------------
# Search: words, stems, the FTS5 expression, snippets

STOP_WORDS = {
    "en": set("a an and are as at be by can do does for from how i in is it my of on or the to what when where "
              "why with you your me we our this that there".split()),
    "es": set("a al como con cual de del donde el ella en es esta este la las lo los me mi mis no o para pero "
              "por que qué se si sin su sus te tu un una uno y yo cómo dónde cuál puedo hay".split()),
    "it": set("a ad al alla alle che chi come con da dal dalla del della dei di dove e è ed gli i il in la le "
              "lo ma mi mio mia nel nella non o per più posso se si sono su tu un una uno".split()),
}


def fold(word: str) -> str:
    """Lower case without accents (what FTS5's ``remove_diacritics 2`` does to the indexed words)."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@lru_cache(maxsize=32)
def _stemmer(locale: str):  # type: ignore[no-untyped-def]  # noqa: ANN202
    name = STEMMERS.get(language(locale))
    if name is None:
        return None
    import snowballstemmer  # pure Python; imported when a language first needs it

    return snowballstemmer.stemmer(name)


def stems(locale: str, words: Sequence[str]) -> list[str]:
    """Snowball stems of lower-case words (unchanged where the language has no stemmer)."""
    stemmer = _stemmer(locale)
    lowered = [w.lower() for w in words]
    return list(stemmer.stemWords(lowered)) if stemmer else lowered


def stem_text(locale: str, text: str) -> str:
    """The stems of a text, for the index's ``stems`` column (SQLite)."""
    return " ".join(stems(locale, _WORD.findall(text)))


@dataclass(frozen=True)
class Query:
    """A visitor's search, taken apart: the words kept (lower case), their stems."""

    text: str
    words: tuple[str, ...]
    stems: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.words


def parse_query(text: str, locale: str) -> Query:
    """The words of a search: at most ``MAX_TERMS``, stop words of the language dropped (all of them kept
    when that leaves nothing), each cut to 40 characters; stemmed in the locale's language."""
    text = " ".join((text or "").split())[:MAX_QUERY]
    words = [w.lower()[:40] for w in _WORD.findall(text) if w.strip("_")]
    stop = STOP_WORDS.get(language(locale), set())
    kept = [w for w in words if w not in stop and fold(w) not in stop] or words
    unique: list[str] = []
    for w in kept:
        if w not in unique:
            unique.append(w)
    unique = unique[:MAX_TERMS]
    return Query(text=text, words=tuple(unique), stems=tuple(stems(locale, unique)))


def facet_tokens(locale: str, visibility: str) -> str:
    """The FTS5 ``facets`` column: the locale and the visibility as words, so a search matches them in
    the index instead of filtering rows afterwards (``loc`` + the locale's letters, ``vis`` + visibility)."""
    return f"loc{re.sub(r'[^a-z0-9]', '', locale)} vis{visibility}"


def _quote(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def fts5_match(query: Query, locale: str, visibilities: Sequence[str], *, any_word: bool = False) -> str:
    """The FTS5 expression: each word matches its stem in ``stems`` or, from 3 letters, itself as a prefix
    in the title and body (a visitor still typing); all words (``any_word``: at least one), within the
    locale and the visibilities allowed."""
    groups = []
    for word, stem in zip(query.words, query.stems, strict=True):
        word, stem = fold(word), fold(stem)
        raw = f"{_quote(word)}*" if len(word) >= 3 else _quote(word)
        groups.append(f"({{title body}} : {raw} OR stems : {_quote(stem)})")
    terms = (" OR " if any_word else " AND ").join(groups)
    loc = f"facets : {_quote(facet_tokens(locale, 'x').split()[0])}"
    vis = " OR ".join(f"facets : {_quote('vis' + v)}" for v in visibilities)
    return f"{loc} AND ({vis}) AND ({terms})"


def pg_tsquery(query: Query, *, any_word: bool = False) -> str:
    """A ``to_tsquery`` text: the words (only letters, digits and _ survive parsing) joined by & or |, the
    last one a prefix (``:*``) for a visitor still typing."""
    parts = [re.sub(r"\W", "", w) for w in query.words]
    parts = [p for p in parts if p]
    if not parts:
        return ""
    parts[-1] = parts[-1] + ":*" if len(parts[-1]) >= 3 else parts[-1]
    return (" | " if any_word else " & ").join(parts)


def safe_snippet(text: str | None) -> str:
    """A snippet from the database, escaped, with its markers turned into ``<mark>``."""
    escaped = html.escape(text or "", quote=False)
    return escaped.replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


# ---------------------------------------------------------------------------------------------------
# Visitors: feedback keys


def visitor_key(secret: str, ip: str, user_agent: str) -> str:
    """Who gave feedback, for one vote per visitor and article: a keyed hash of the address and browser,
    never the address itself."""
    return hmac.new(secret.encode(), f"kb|{ip}|{user_agent[:300]}".encode(), hashlib.sha256).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------------
# The help center's words

UI = {
    "en": {"help_center": "Help center", "search": "Search", "search_placeholder": "Search for answers",
           "categories": "Categories", "articles": "Articles", "results_for": "Results for",
           "no_results": "No article matches your search. Try other words.", "helpful": "Was this article helpful?",
           "yes": "Yes", "no": "No", "thanks": "Thanks for your feedback.", "updated": "Updated",
           "not_found": "This page does not exist.", "home": "Home", "language": "Language",
           "empty": "No articles yet.", "other": "Other articles", "popular": "Articles"},
    "es": {"help_center": "Centro de ayuda", "search": "Buscar", "search_placeholder": "Busca respuestas",
           "categories": "Categorías", "articles": "Artículos", "results_for": "Resultados para",
           "no_results": "Ningún artículo coincide con tu búsqueda. Prueba con otras palabras.",
           "helpful": "¿Te ha resultado útil este artículo?", "yes": "Sí", "no": "No",
           "thanks": "Gracias por tu opinión.", "updated": "Actualizado", "not_found": "Esta página no existe.",
           "home": "Inicio", "language": "Idioma", "empty": "Todavía no hay artículos.", "other": "Otros artículos",
           "popular": "Artículos"},
    "it": {"help_center": "Centro assistenza", "search": "Cerca", "search_placeholder": "Cerca una risposta",
           "categories": "Categorie", "articles": "Articoli", "results_for": "Risultati per",
           "no_results": "Nessun articolo corrisponde alla ricerca. Prova con altre parole.",
           "helpful": "Questo articolo ti è stato utile?", "yes": "Sì", "no": "No",
           "thanks": "Grazie per il tuo parere.", "updated": "Aggiornato", "not_found": "Questa pagina non esiste.",
           "home": "Home", "language": "Lingua", "empty": "Ancora nessun articolo.", "other": "Altri articoli",
           "popular": "Articoli"},
}
LANGUAGE_NAMES = {"en": "English", "es": "Español", "it": "Italiano", "fr": "Français", "de": "Deutsch",
                  "pt": "Português", "nl": "Nederlands"}


def words_for(locale: str) -> dict[str, str]:
    """The help center's words in a locale's language, English where it has none (or misses one)."""
    return {**UI["en"], **UI.get(language(locale), {})}


def language_name(locale: str) -> str:
    return LANGUAGE_NAMES.get(language(locale), locale)
