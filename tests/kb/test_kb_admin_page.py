"""The desk's knowledge base page (/admin/kb): a supervisor writes an article as a draft, edits it,
publishes it (it shows on the help center), unpublishes it; an agent may not open the page."""

from __future__ import annotations

import httpx

from tests.conftest import login, seed_basics


async def test_supervisor_writes_and_publishes_from_the_desk(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await login(c, "sup@example.com")
        page = await c.get("/admin/kb")
        assert page.status_code == 200 and "No articles yet." in page.text
        r = await c.post("/admin/kb", data={"csrf_token": csrf, "locale": "es", "title": "Gastos de envío",
                                            "body": "Gratis desde 50 €.", "visibility": "public"})
        assert r.status_code == 303 and "ok=" in r.headers["location"], r.headers["location"]
        article_id = (await c.get("/api/v1/kb/articles")).json()[0]["id"]
        edit = await c.get(f"/admin/kb?article={article_id}&locale=es")
        assert 'name="title" value="Gastos de envío"' in edit.text
        r = await c.post(f"/admin/kb/{article_id}/es", data={
            "csrf_token": csrf, "title": "Gastos de envío", "summary": "Cuánto cuesta", "slug": "",
            "body": "Gratis desde **50 €**.", "visibility": "public", "category_id": "", "publish": "1"})
        assert r.status_code == 303 and r.headers["location"].startswith(f"/admin/kb?article={article_id}&locale=es&ok=")
        help_page = await c.get("/help/es/articles/gastos-de-envio")
        assert help_page.status_code == 200 and "<strong>50 €</strong>" in help_page.text
        bad = await c.post(f"/admin/kb/{article_id}/es", data={"csrf_token": csrf, "title": "", "body": "x"})
        assert bad.status_code == 303 and "error=" in bad.headers["location"]
        r = await c.post(f"/admin/kb/{article_id}/es", data={
            "csrf_token": csrf, "title": "Gastos de envío", "body": "x", "visibility": "public", "unpublish": "1"})
        assert (await c.get("/help/es/articles/gastos-de-envio")).status_code == 404
        assert (await c.post("/admin/kb", data={"csrf_token": "wrong", "locale": "es", "title": "T"})).status_code == 403
    async with httpx.AsyncClient(base_url=sqlite_server.url) as agent:
        csrf = await login(agent, "alice@example.com")
        assert (await agent.get("/admin/kb")).status_code == 403
        assert (await agent.post("/admin/kb", data={"csrf_token": csrf, "locale": "es", "title": "T"})).status_code == 403
