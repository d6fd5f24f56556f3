"""The public help center over real HTTP: localised pages with their <title>, meta description, canonical
link and hreflang alternates; categories, articles, search with highlighted snippets; a sitemap; the
desk's strict CSP; and an article with script in it never brings the script to a page."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx

from tests.conftest import login, seed_basics

EVIL = ("Pulsa el botón.\n\n<script>alert('x')</script>\n\n<img src=x onerror=alert(1)>\n\n"
        "[enlace](javascript:alert(1)) ![captura](/help/images/" + "a" * 64 + ")")


class Tags(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


async def _seed(c: httpx.AsyncClient) -> int:
    cat = (await c.post("/api/v1/kb/categories", json={
        "slug": "cuenta", "names": {"en": "Account", "es": "Cuenta", "it": "Account"},
        "descriptions": {"es": "Acceso y seguridad"}})).json()
    art = (await c.post("/api/v1/kb/articles", json={
        "locale": "es", "title": "Restablecer la contraseña", "summary": "Cómo recuperar el acceso a tu cuenta",
        "body": "Si olvidaste tu **contraseña**, pulsa «¿Olvidaste la contraseña?».\n\n" + EVIL,
        "category_id": cat["id"], "publish": True})).json()
    await c.put(f"/api/v1/kb/articles/{art['id']}/translations/it",
                json={"title": "Reimpostare la password", "body": "Se hai dimenticato la password…"})
    await c.post(f"/api/v1/kb/articles/{art['id']}/translations/it/publish")
    await c.post("/api/v1/kb/articles", json={"locale": "es", "title": "Notas internas de reembolso",
                                              "body": "Solo para agentes: contraseña maestra", "publish": True,
                                              "visibility": "internal", "category_id": cat["id"]})
    return art["id"]


async def test_pages_are_localised_indexable_and_safe(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    base = sqlite_server.services.settings.public_base_url
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        await _seed(c)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as v:
        home = await v.get("/help/es")
        assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
        assert "<title>Centro de ayuda</title>" in home.text and 'lang="es"' in home.text
        assert "Cuenta" in home.text and "Restablecer la contraseña" in home.text
        assert "Notas internas" not in home.text
        csp = home.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
        tags = Tags(home.text)
        assert not tags.find("script") and not [a for _, a in tags.tags if "style" in a]
        assert tags.find("link", rel="canonical")[0]["href"] == f"{base}/help/es"
        assert {a["hreflang"] for a in tags.find("link", rel="alternate")} == {"en", "es", "it", "x-default"}
        assert (await v.get("/help/static/help.css")).headers["content-type"].startswith("text/css")

        page = await v.get("/help/es/articles/restablecer-la-contrasena")
        assert page.status_code == 200
        tags = Tags(page.text)
        assert "<title>Restablecer la contraseña · Centro de ayuda</title>" in page.text
        assert tags.find("meta", name="description")[0]["content"] == "Cómo recuperar el acceso a tu cuenta"
        assert tags.find("link", rel="canonical")[0]["href"] == f"{base}/help/es/articles/restablecer-la-contrasena"
        alternates = {a["hreflang"]: a["href"] for a in tags.find("link", rel="alternate")}
        assert alternates["it"] == f"{base}/help/it/articles/reimpostare-la-password" and "en" not in alternates
        assert "<strong>contraseña</strong>" in page.text and "¿Te ha resultado útil este artículo?" in page.text
        # the script in the article never reaches the page as markup
        assert not tags.find("script")
        assert not [(t, a) for t, a in tags.tags if any(k.startswith("on") for k in a)]
        assert not [a for _, a in tags.tags if (a.get("href") or "").startswith("javascript:")]
        assert tags.find("img", alt="captura")
        assert "Cuenta" in page.text  # breadcrumb

        cat = await v.get("/help/es/categories/cuenta")
        assert cat.status_code == 200 and "Acceso y seguridad" in cat.text and "Notas internas" not in cat.text
        assert (await v.get("/help/en/categories/cuenta")).status_code == 404  # nothing published in en

        found = await v.get("/help/es/search", params={"q": "contrasena"})
        assert found.status_code == 200 and "<mark>" in found.text and "noindex" in found.text
        assert "Resultados para" in found.text and "Notas internas" not in found.text
        it = await v.get("/help/it/search", params={"q": "password dimenticata"})
        assert "Reimpostare la <mark>password</mark>" in it.text and "Risultati per" in it.text
        assert "<script>alert" not in (await v.get("/help/es/search", params={"q": "<script>alert(1)</script>"})).text

        sitemap = await v.get("/help/sitemap.xml")
        assert sitemap.headers["content-type"].startswith("application/xml")
        locs = re.findall(r"<loc>([^<]+)</loc>", sitemap.text)
        assert f"{base}/help/es/articles/restablecer-la-contrasena" in locs
        assert f"{base}/help/it/articles/reimpostare-la-password" in locs
        assert not [u for u in locs if "notas-internas" in u]
        assert 'hreflang="it"' in sitemap.text

        assert (await v.get("/help/es/articles/notas-internas-de-reembolso")).status_code == 404
        en = await v.get("/help/en")
        assert en.status_code == 200 and "No articles yet." in en.text


async def test_images_are_served_from_the_file_store(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        up = await c.post("/api/v1/kb/images", content=png, headers={"content-type": "image/png"})
        assert up.status_code == 201 and up.json()["markdown"] == f"![]({up.json()['url']})"
        assert (await c.post("/api/v1/kb/images", content=b"GIF89a" + b"\0" * 10,
                             headers={"content-type": "image/png"})).status_code == 422
    async with httpx.AsyncClient(base_url=sqlite_server.url) as v:
        got = await v.get(up.json()["url"])
        assert got.status_code == 200 and got.content == png and got.headers["content-type"] == "image/png"
        assert got.headers["x-content-type-options"] == "nosniff"
        assert (await v.get("/help/images/" + "0" * 64)).status_code == 404
