"""The knowledge base over real HTTP: who may do what (anonymous, agent, supervisor, admin), an article's
life (draft, publish, edit keeps the published text, unpublish, delete) with the index in step, search
with accent folding and stems in es/it, internal articles kept from visitors, bad input as 4xx, feedback
and searches without results in the reports, the widget's CORS."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import login, seed_basics

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


async def _client(server, email: str | None) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    c = httpx.AsyncClient(base_url=server.url)
    if email:
        await login(c, email)
    return c


async def _article(c: httpx.AsyncClient, **extra: object) -> dict:
    body = {"locale": "es", "title": "Restablecer la contraseña",
            "body": "Si olvidaste tu **contraseña**, pulsa *¿Olvidaste la contraseña?* en la página de acceso.",
            "summary": "Cómo recuperar el acceso", **extra}
    r = await c.post("/api/v1/kb/articles", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def test_auth_matrix(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    admin = await _client(sqlite_server, "admin@example.com")
    art = await _article(admin, publish=True)
    cat = (await admin.post("/api/v1/kb/categories", json={"slug": "cuenta", "names": {"es": "Cuenta"}})).json()
    a = art["id"]
    reads = [("GET", "/api/v1/kb/categories"), ("GET", "/api/v1/kb/articles"), ("GET", f"/api/v1/kb/articles/{a}"),
             ("GET", "/api/v1/kb/search?q=contrasena&locale=es"),
             ("GET", f"/api/v1/kb/articles/{a}/translations/es/preview")]
    writes = [("POST", "/api/v1/kb/categories", {"slug": "x", "names": {"en": "X"}}),
              ("PATCH", f"/api/v1/kb/categories/{cat['id']}", {"position": 2}),
              ("POST", "/api/v1/kb/articles", {"locale": "en", "title": "T"}),
              ("PATCH", f"/api/v1/kb/articles/{a}", {"position": 1}),
              ("PUT", f"/api/v1/kb/articles/{a}/translations/it", {"title": "Reimpostare la password"}),
              ("POST", f"/api/v1/kb/articles/{a}/translations/es/publish", None),
              ("POST", f"/api/v1/kb/articles/{a}/translations/es/unpublish", None)]
    reports = [("GET", "/api/v1/kb/reports/feedback"), ("GET", "/api/v1/kb/reports/searches-without-results")]
    anon, agent, sup = (await _client(sqlite_server, None), await _client(sqlite_server, "alice@example.com"),
                        await _client(sqlite_server, "sup@example.com"))
    try:
        for method, url in reads + reports:
            assert (await anon.request(method, url)).status_code == 401, url
        for method, url, body in writes:
            assert (await anon.request(method, url, json=body)).status_code == 401, url
        for method, url in reads:
            assert (await agent.request(method, url)).status_code == 200, url
        for method, url in reports:
            assert (await agent.request(method, url)).status_code == 403, url
        for method, url, body in writes:
            r = await agent.request(method, url, json=body)
            assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json", url
        for who in (sup, admin):
            for method, url, body in writes:
                r = await who.request(method, url, json=body if body is None or "slug" not in body
                                      else {**body, "slug": f"x{id(who)}"})
                assert r.status_code in (200, 201), (url, r.text)
            for method, url in reads + reports:
                assert (await who.request(method, url)).status_code == 200, url
        assert (await agent.delete(f"/api/v1/kb/articles/{a}")).status_code == 403
        assert (await sup.delete(f"/api/v1/kb/categories/{cat['id']}")).status_code == 204
        assert (await sup.post("/api/v1/kb/images", content=PNG, headers={"content-type": "image/png"})).status_code == 201
        assert (await agent.post("/api/v1/kb/images", content=PNG, headers={"content-type": "image/png"})).status_code == 403
        # public endpoints need no one
        assert (await anon.get("/api/v1/kb/public/search?q=contrasena&locale=es")).status_code == 200
        assert (await admin.delete(f"/api/v1/kb/articles/{a}")).status_code == 204
    finally:
        for c in (anon, agent, sup, admin):
            await c.aclose()


async def test_article_lifecycle_and_search(server) -> None:  # SQLite and PostgreSQL
    await seed_basics(server.services)
    async with httpx.AsyncClient(base_url=server.url) as c, httpx.AsyncClient(base_url=server.url) as anon:
        await login(c, "admin@example.com")
        cat = (await c.post("/api/v1/kb/categories", json={"slug": "account", "names": {
            "en": "Account", "es": "Cuenta", "it": "Account"}})).json()
        art = await _article(c, category_id=cat["id"])
        a = art["id"]
        tr = art["translations"][0]
        assert tr["status"] == "draft" and tr["slug"] == "restablecer-la-contrasena" and tr["url"] is None

        def search(q: str, locale: str = "es", who: httpx.AsyncClient = anon) -> list[dict]:
            path = "/api/v1/kb/public/search" if who is anon else "/api/v1/kb/search"
            return who.get(path, params={"q": q, "locale": locale})  # type: ignore[return-value]

        assert (await search("contrasena")).json()["results"] == []  # a draft is not searchable
        pub = await c.post(f"/api/v1/kb/articles/{a}/translations/es/publish")
        assert pub.status_code == 200 and pub.json()["translations"][0]["status"] == "published"
        assert pub.json()["translations"][0]["url"].endswith("/help/es/articles/restablecer-la-contrasena")

        hits = (await search("contrasena")).json()["results"]  # accent folding
        assert [h["article_id"] for h in hits] == [a]
        assert "<mark>" in hits[0]["snippet_html"] and "<mark>" in hits[0]["title_html"]
        assert [h["article_id"] for h in (await search("contraseñas olvidadas")).json()["results"]] == [a]  # stems
        assert [h["article_id"] for h in (await search("Olvidaste")).json()["results"]] == [a]
        assert (await search("contrasena", "en")).json()["results"] == []  # per locale

        # an Italian version: stems and accents in Italian
        r = await c.put(f"/api/v1/kb/articles/{a}/translations/it", json={
            "title": "Reimpostare la password", "body": "Per cambiare la password della città, apri le impostazioni."})
        assert r.status_code == 200
        await c.post(f"/api/v1/kb/articles/{a}/translations/it/publish")
        assert [h["article_id"] for h in (await search("citta impostazione", "it")).json()["results"]] == [a]

        # an edit of a published article keeps the published text until it is published
        r = await c.put(f"/api/v1/kb/articles/{a}/translations/es",
                        json={"title": "Cambiar la clave", "body": "Nuevo texto sobre la clave secreta."})
        es = next(t for t in r.json()["translations"] if t["locale"] == "es")
        assert es["status"] == "changed" and es["published_title"] == "Restablecer la contraseña"
        assert [h["title"] for h in (await search("contrasena")).json()["results"]] == ["Restablecer la contraseña"]
        assert (await search("clave")).json()["results"] == []
        page = await anon.get("/help/es/articles/restablecer-la-contrasena")
        assert page.status_code == 200 and "Restablecer la contraseña" in page.text and "clave" not in page.text
        await c.post(f"/api/v1/kb/articles/{a}/translations/es/publish")
        assert [h["title"] for h in (await search("clave")).json()["results"]] == ["Cambiar la clave"]
        assert (await search("contrasena")).json()["results"] == []  # the index followed the new text

        # internal: agents find it, visitors never (API, help center, sitemap)
        await c.patch(f"/api/v1/kb/articles/{a}", json={"visibility": "internal"})
        assert (await search("clave")).json()["results"] == []
        agent_hits = (await search("clave", who=c)).json()["results"]
        assert agent_hits[0]["internal"] is True and agent_hits[0]["url"] is None
        assert (await anon.get("/help/es/articles/restablecer-la-contrasena")).status_code == 404
        assert "restablecer" not in (await anon.get("/help/sitemap.xml")).text
        await c.patch(f"/api/v1/kb/articles/{a}", json={"visibility": "public"})
        assert len((await search("clave")).json()["results"]) == 1

        # unpublish: out of search and the help center; delete: gone
        await c.post(f"/api/v1/kb/articles/{a}/translations/es/unpublish")
        assert (await search("clave")).json()["results"] == []
        assert (await anon.get("/help/es/articles/restablecer-la-contrasena")).status_code == 404
        assert len((await search("password", "it")).json()["results"]) == 1
        assert (await c.delete(f"/api/v1/kb/articles/{a}")).status_code == 204
        assert (await search("password", "it")).json()["results"] == []
        assert (await c.get(f"/api/v1/kb/articles/{a}")).status_code == 404


async def test_bad_input_is_4xx(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        art = await _article(c)
        a = art["id"]
        cases = [
            ("GET", "/api/v1/kb/articles/99999999999999999999", None, 422),
            ("GET", "/api/v1/kb/articles/0", None, 422),
            ("GET", "/api/v1/kb/articles/2147483647", None, 404),
            ("POST", "/api/v1/kb/articles", {"locale": "xx", "title": "T"}, 422),
            ("POST", "/api/v1/kb/articles", {"locale": "en", "title": "T" * 201}, 422),
            ("POST", "/api/v1/kb/articles", {"locale": "en", "title": ""}, 422),
            ("POST", "/api/v1/kb/articles", {"locale": "en", "title": "T", "category_id": 2**40}, 422),
            ("POST", "/api/v1/kb/articles", {"locale": "en", "title": "T", "category_id": 77}, 422),
            ("POST", "/api/v1/kb/articles", {"locale": "en", "title": "T", "position": 10**30}, 422),
            ("POST", "/api/v1/kb/articles", {"locale": "en", "title": "T", "visibility": "secret"}, 422),
            ("POST", "/api/v1/kb/articles", {"locale": "en", "title": "T", "slug": "Bad Slug"}, 422),
            ("POST", "/api/v1/kb/articles", {"locale": "en", "title": "T", "body": "x" * 100_001}, 422),
            ("POST", "/api/v1/kb/articles", {"locale": "en", "title": "T", "extra": 1}, 422),
            ("POST", "/api/v1/kb/articles", {"locale": "es", "title": "T", "slug": "restablecer-la-contrasena"}, 409),
            ("PUT", f"/api/v1/kb/articles/{a}/translations/klingon", {"title": "x"}, 422),
            ("PUT", f"/api/v1/kb/articles/{a}/translations/en", {"body": "no title yet"}, 422),
            ("POST", f"/api/v1/kb/articles/{a}/translations/it/publish", None, 404),
            ("POST", f"/api/v1/kb/articles/{a}/translations/{'x' * 40}/publish", None, 422),
            ("GET", "/api/v1/kb/search?q=" + "x" * 201, None, 422),
            ("GET", "/api/v1/kb/search?q=hola&locale=zz", None, 422),
            ("GET", "/api/v1/kb/public/search?q=hola&locale=zz", None, 422),
            ("GET", "/api/v1/kb/public/search?q=hola&limit=99999999999999999999", None, 422),
            ("POST", "/api/v1/kb/categories", {"slug": "a", "names": {}}, 422),
            ("POST", "/api/v1/kb/categories", {"slug": "a", "names": {"xx": "A"}}, 422),
            ("POST", "/api/v1/kb/categories", {"slug": "a", "names": {"en": "A" * 101}}, 422),
            ("POST", "/api/v1/kb/public/feedback", {"article_id": a, "locale": "es", "helpful": True}, 404),
            ("POST", "/api/v1/kb/public/feedback", {"article_id": 2**31, "locale": "es", "helpful": True}, 422),
            ("POST", "/api/v1/kb/images", b"<svg onload=alert(1)>", 422),
        ]
        for method, url, body, status in cases:
            kwargs: dict = {"content": body, "headers": {"content-type": "image/png"}} if isinstance(body, bytes) \
                else {"json": body}
            r = await c.request(method, url, **kwargs)
            assert r.status_code == status, (method, url, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json" and r.json()["detail"], url
        # the help center answers 404 pages, never 500
        for path in ("/help/zz", "/help/es/articles/nope", "/help/es/categories/nope", "/help/es/articles/" + "a" * 300,
                     "/help/images/xyz", "/help/zz/search?q=x"):
            assert (await c.get(path)).status_code == 404, path


async def test_feedback_and_searches_without_results(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c, httpx.AsyncClient(base_url=sqlite_server.url) as v:
        await login(c, "admin@example.com")
        a = (await _article(c, publish=True))["id"]
        for helpful in (True, False, False):  # one visitor: the last vote counts
            r = await v.post("/api/v1/kb/public/feedback", json={"article_id": a, "locale": "es", "helpful": helpful})
            assert r.status_code == 204
        other = await v.post("/help/es/articles/restablecer-la-contrasena/feedback", data={"helpful": "yes"},
                             headers={"user-agent": "another browser"})
        assert other.status_code == 303 and other.headers["location"].endswith("?voted=1#feedback")
        report = (await c.get("/api/v1/kb/reports/feedback")).json()
        assert report == [{"article_id": a, "locale": "es", "slug": "restablecer-la-contrasena",
                           "title": "Restablecer la contraseña", "helpful": 1, "not_helpful": 1}]

        for q in ("Factura duplicada", "factura   DUPLICADA", "facturá duplicada"):
            assert (await v.get("/api/v1/kb/public/search", params={"q": q, "locale": "es"})).json()["results"] == []
        assert "Ningún artículo" in (await v.get("/help/es/search", params={"q": "envío internacional"})).text
        await c.get("/api/v1/kb/search", params={"q": "agentes no cuentan", "locale": "es"})  # agents' not recorded
        misses = (await c.get("/api/v1/kb/reports/searches-without-results")).json()
        assert [(m["query"], m["count"]) for m in misses] == [("factura duplicada", 3), ("envio internacional", 1)]
        r = await c.delete("/api/v1/kb/reports/searches-without-results",
                           params={"locale": "es", "query": "factura duplicada"})
        assert r.status_code == 204
        assert len((await c.get("/api/v1/kb/reports/searches-without-results?locale=es")).json()) == 1


async def test_widget_cors(sqlite_server) -> None:
    from threadline.actions import channels as channel_actions

    services = sqlite_server.services
    await seed_basics(services)
    async with services.db.transaction() as s:
        channel = await channel_actions.create_channel(s, services.box, kind="webchat", name="Site",
                                                       config={"allowed_origins": ["https://shop.example"]})
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        await _article(c, publish=True)
        url = "/api/v1/kb/public/search?q=contrasena&locale=es"
        ok = await c.get(f"{url}&channel={channel.key}", headers={"origin": "https://shop.example"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://shop.example"
        assert len(ok.json()["results"]) == 1 and ok.json()["results"][0]["url"].startswith("http")
        refused = await c.get(f"{url}&channel={channel.key}", headers={"origin": "https://evil.example"})
        # refused, with the reason readable by that site (its console says why), as the widget's endpoints do
        assert refused.status_code == 403 and "may not" in refused.json()["detail"]
        assert (await c.get(url, headers={"origin": "https://shop.example"})).status_code == 403  # no channel named
        assert (await c.get(url)).status_code == 200  # not a browser on another site


@pytest.mark.parametrize("accept, expected", [("es-ES,es;q=0.9", "/help/es"), ("it", "/help/it"), ("de", "/help/en")])
async def test_help_center_picks_the_locale(sqlite_server, accept: str, expected: str) -> None:
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        r = await c.get("/help", headers={"accept-language": accept})
        assert r.status_code == 302 and r.headers["location"] == expected
