"""The flow builder in the desk admin (/admin/flows) over real HTTP: admins only, a flow built through
the form's own fields (read back from the page, as a browser would send them), a refused save with the
reason beside its node and the input kept, versions, the preview, restore, escaping."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import httpx
from tests.conftest import login, seed_basics

XSS = "<script>alert('x')</script>"


class _Form(HTMLParser):
    """The fields a browser would post from the builder form (#flow-form): inputs, checked boxes,
    textareas and each select's selected option. Buttons are left out: the test picks the ``op``."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._in_form = False
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == "flow-form":
            self._in_form = True
        if not self._in_form:
            return
        if tag == "input" and a.get("name"):
            if a.get("type") == "checkbox" and "checked" not in a:
                return
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "select" and a.get("name"):
            self._select, self._options = a["name"], []
        elif tag == "option" and self._select is not None:
            self._options.append((a.get("value", ""), "selected" in a))
        elif tag == "textarea" and a.get("name"):
            self._textarea, self._text = a["name"], ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._in_form:
            self._in_form = False
        elif tag == "select" and self._select is not None:
            chosen = next((v for v, sel in self._options if sel), self._options[0][0] if self._options else "")
            self.fields.append((self._select, chosen))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None


def form_of(html: str) -> dict[str, Any]:
    parser = _Form()
    parser.feed(html)
    out: dict[str, Any] = {}
    for name, value in parser.fields:
        if name in out:
            out[name] = [*(out[name] if isinstance(out[name], list) else [out[name]]), value]
        else:
            out[name] = value
    return out


def node_index(html: str, nid: str) -> int:
    m = re.search(rf'name="n(\d+)\.was" value="{re.escape(nid)}"', html)
    assert m, f"no card for {nid}"
    return int(m.group(1))


def card(html: str, nid: str) -> str:
    start = html.index(f'id="node-{nid}"')
    end = html.find('class="card flow-node', start + 10)
    return html[start:end if end > 0 else len(html)]


async def press(c: httpx.AsyncClient, flow_id: int, fields: dict[str, Any], op: str) -> httpx.Response:
    return await c.post(f"/admin/flows/{flow_id}", data={**fields, "op": op})


async def test_only_admins_open_or_change_flows(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await login(c, "admin@example.com")
        made = await c.post("/admin/flows", data={"csrf_token": csrf, "name": "Main", "kind": "ivr"})
        flow_id = int(made.headers["location"].split("?")[0].rsplit("/", 1)[1])
    for who in ("alice@example.com", "sup@example.com"):
        async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
            csrf = await login(c, who)
            assert (await c.get("/admin/flows")).status_code == 403
            assert (await c.get(f"/admin/flows/{flow_id}")).status_code == 403
            assert (await c.post("/admin/flows", data={"csrf_token": csrf, "name": "Mine"})).status_code == 403
            r = await c.post(f"/admin/flows/{flow_id}", data={"csrf_token": csrf, "op": "save", "start": "a",
                                                              "n0.id": "a", "n0.type": "hangup"})
            assert r.status_code == 403
            assert (await c.post(f"/admin/flows/{flow_id}/restore", data={"csrf_token": csrf,
                                                                          "version": "1"})).status_code == 403
    async with httpx.AsyncClient(base_url=sqlite_server.url) as anon:
        assert (await anon.get("/admin/flows")).headers["location"] == "/login"
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        stale = await c.post(f"/admin/flows/{flow_id}", data={"csrf_token": "stale", "op": "save"})
        assert stale.status_code == 403
        assert (await c.get("/api/v1/flows")).json()[0]["current_version"] == 0


async def test_build_refuse_save_preview_restore(sqlite_server) -> None:
    ids = await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await login(c, "admin@example.com")
        listing = await c.get("/admin/flows")
        assert listing.status_code == 200 and "New flow" in listing.text and 'href="/admin/flows"' in listing.text
        made = await c.post("/admin/flows", data={"csrf_token": csrf, "name": "Main line", "kind": "ivr",
                                                  "locales": "en, es"})
        assert made.status_code == 303
        flow_id = int(made.headers["location"].split("?")[0].rsplit("/", 1)[1])
        page = await c.get(made.headers["location"])
        assert page.status_code == 200 and 'name="n0.text.en"' in page.text and 'name="n0.text.es"' in page.text
        assert "no version saved yet" in page.text and 'role="alert"' not in page.text  # no red before any edit

        # Build: welcome (say) → main (menu: 1 Sales → sales, 2 Billing → billing), each step a button.
        f = form_of(page.text)
        f.update({"n0.text.en": "Welcome to Acme " + XSS, "n0.text.es": "Bienvenido a Acme",
                  "new_type": "menu", "new_id": "main"})
        page = await press(c, flow_id, f, "add_node")
        assert page.status_code == 200 and 'id="node-main"' in page.text
        assert "Welcome to Acme &lt;script&gt;" in page.text and XSS not in page.text  # the input was kept, escaped
        for nid in ("sales", "billing"):
            f = form_of(page.text)
            f.update({"new_type": "queue", "new_id": nid})
            page = await press(c, flow_id, f, "add_node")
        assert 'id="node-billing"' in page.text and f'<option value="{ids["general"]}" selected>general</option>' in page.text
        f = form_of(page.text)
        main = node_index(page.text, "main")
        page = await press(c, flow_id, f, f"add_option:{main}")
        f = form_of(page.text)
        billing = node_index(page.text, "billing")
        f.update({"n0.next": "main", f"n{main}.prompt.en": "Sales 1, billing 2.", f"n{main}.prompt.es": "Ventas 1, facturación 2.",
                  f"n{main}.o0.key": "1", f"n{main}.o0.label.en": "Sales", f"n{main}.o0.label.es": "Ventas",
                  f"n{main}.o0.next": "sales", f"n{main}.o1.key": "2", f"n{main}.o1.label.en": "Billing",
                  f"n{main}.o1.label.es": "Facturación", f"n{main}.no_match": "main",
                  f"n{billing}.queue_id": str(ids["billing"])})
        # Option 2 goes nowhere yet: refused, the reason beside the menu, the input kept
        refused = await press(c, flow_id, f, "save")
        assert refused.status_code == 422
        assert "has no &#39;options[2].next&#39;: a dead end" in card(refused.text, "main")
        assert "Ventas 1, facturación 2." in refused.text and "Not saved" in refused.text
        assert (await c.get("/api/v1/flows")).json()[0]["current_version"] == 0
        # Validate previews the same problems, nothing saved
        checked = await press(c, flow_id, form_of(refused.text), "validate")
        assert checked.status_code == 200 and "a dead end" in card(checked.text, "main")

        f = form_of(refused.text)
        f[f"n{main}.o1.next"] = "billing"
        ok = await press(c, flow_id, {**f, "note": "first cut"}, "validate")
        assert "No problems: this flow can be saved" in ok.text
        saved = await press(c, flow_id, f, "save")
        assert saved.status_code == 303 and "Version+1+saved" in saved.headers["location"]
        page = await c.get(saved.headers["location"])
        assert "version 1 is live" in page.text and "Save as version 2" in page.text
        # The preview: an outline from the start, the loop on no match shown as a way back
        outline = page.text[page.text.index('id="flow-outline"'):]
        outline = outline[:outline.index("</ul>")]
        assert "1. welcome: say &#39;Welcome to Acme &lt;script&gt;" in outline
        assert "2. main: menu &#39;Sales 1, billing 2.&#39;" in outline
        assert "1 Sales → 3. sales: queue general" in outline and "2 Billing → 4. billing: queue billing" in outline
        assert "no match → ↩ back to 2. main" in outline
        api = (await c.get(f"/api/v1/flows/{flow_id}")).json()
        assert api["current_version"] == 1 and api["definition"]["nodes"]["billing"]["queue_id"] == ids["billing"]
        assert api["definition"]["nodes"]["main"]["options"][1]["label"] == {"en": "Billing", "es": "Facturación"}

        # A second save: rename a node (its incoming exits follow), an unreachable node listed apart
        f = form_of(page.text)
        sales = node_index(page.text, "sales")
        f[f"n{sales}.id"] = "sales-team"
        f.update({"new_type": "hangup", "new_id": "bye"})
        page = await press(c, flow_id, f, "add_node")
        assert '<option value="sales-team" selected>' in card(page.text, "main")
        assert "bye: hang up" in page.text[page.text.index('id="flow-unreachable"'):]
        refused = await press(c, flow_id, form_of(page.text), "save")
        assert refused.status_code == 422 and "unreachable" in card(refused.text, "bye")
        f = form_of(refused.text)
        bye = node_index(refused.text, "bye")
        refused = await press(c, flow_id, f, f"remove_node:{bye}")
        saved = await press(c, flow_id, form_of(refused.text), "save")
        assert saved.status_code == 303 and "Version+2+saved" in saved.headers["location"]
        page = await c.get(f"/admin/flows/{flow_id}")
        assert "version 2 is live" in page.text and "Admin" in page.text[page.text.index('id="flow-versions"'):]

        # An older version, read-only, restored as the newest
        old = await c.get(f"/admin/flows/{flow_id}?version=1")
        assert old.status_code == 200 and "read-only" in old.text and "<fieldset class=\"flow-fieldset\" disabled>" in old.text
        assert 'value="sales"' in old.text and "Restore as version 3" in old.text
        restored = await c.post(f"/admin/flows/{flow_id}/restore", data={"csrf_token": csrf, "version": "1"})
        assert restored.status_code == 303 and "restored+as+version+3" in restored.headers["location"]
        api = (await c.get(f"/api/v1/flows/{flow_id}")).json()
        assert api["current_version"] == 3 and "sales" in api["definition"]["nodes"]
        assert (await c.get(f"/admin/flows/{flow_id}?version=9")).status_code == 404
        listing = await c.get("/admin/flows")
        assert "Main line" in listing.text and "v3" in listing.text


async def test_locales_types_and_json(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await login(c, "admin@example.com")
        made = await c.post("/admin/flows", data={"csrf_token": csrf, "name": "Bot", "kind": "bot"})
        flow_id = int(made.headers["location"].split("?")[0].rsplit("/", 1)[1])
        page = await c.get(f"/admin/flows/{flow_id}")
        f = form_of(page.text)
        f["new_locale"] = "it"
        page = await press(c, flow_id, f, "add_locale")
        assert 'name="n0.text.it"' in page.text
        f = form_of(page.text)
        f.update({"n0.text.en": "Hello", "n0.text.it": "Ciao", "n0.type": "hangup"})  # the type changes: words kept
        page = await press(c, flow_id, f, "refresh")
        assert 'name="n0.next"' not in page.text and "Goodbye" in page.text and ">Ciao</textarea>" in page.text
        for kind in ("collect", "verify", "hours", "branch", "set", "language", "voicemail", "handoff"):
            f = form_of(page.text)
            f.update({"new_type": kind})
            page = await press(c, flow_id, f, "add_node")
            assert page.status_code == 200 and f'id="node-{kind}"' in page.text
        assert 'name="n3.h.mon.0.from" value="09:00"' in page.text  # hours: weekday rows
        f = form_of(page.text)
        f["raw_json"] = '{"start": "a", "locales": ["en"], "nodes": {"a": {"type": "hangup", "text": {"en": "Bye"}}}}'
        page = await press(c, flow_id, f, "load_json")
        assert "JSON loaded" in page.text and 'id="node-a"' in page.text and 'id="node-collect"' not in page.text
        saved = await press(c, flow_id, form_of(page.text), "save")
        assert saved.status_code == 303
        bad = await press(c, flow_id, {**form_of(page.text), "raw_json": "{nope"}, "load_json")
        assert "That is not JSON" in bad.text
