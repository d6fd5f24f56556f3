"""The IVR builder's form (admin page /admin/flows/{id}) read back into a flow definition, and the
builder's edits (add a node, an option, a locale…) applied to it.

The page posts plain form fields, one per input, so it works without JavaScript and without a JSON
textarea: ``start``, ``default_locale``, ``locale`` (repeated, in order) and per node ``n{i}.id``,
``n{i}.was`` (its id when the page was drawn: a renamed node takes its incoming exits along), ``n{i}.type``
and the fields of its type — texts as ``n{i}.prompt.{locale}``, rows as ``n{i}.o{j}.key`` (menu options),
``n{i}.c{j}.values`` (branch cases), ``n{i}.a{j}.name`` (attributes set), ``n{i}.l{j}.key`` (language
options), opening hours as ``n{i}.h.{day}.{k}.from``/``to``.

What comes back is a *draft*: the definition's JSON shape, as typed. It is not validated here: a number
that is not one stays text, so the page shows it again and the flow's validation names the field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from threadline.flows.domain import DAYS, NODE_TYPES

HOUR_SPANS = 2  # opening spans per day in the form (a morning and an afternoon)
TYPE_ORDER = ("say", "menu", "collect", "verify", "hours", "branch", "set", "language", "queue", "voicemail",
              "handoff", "hangup")
assert set(TYPE_ORDER) == NODE_TYPES
TARGET_FIELDS = ("next", "no_match", "fail", "ok", "open", "closed", "default")
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
_NODE_ID = re.compile(r"[^A-Za-z0-9_.\-]+")


def starter(locales: list[str] | None = None) -> dict[str, Any]:
    """A new flow's first draft: one greeting, to grow from."""
    locales = [loc for loc in (locales or []) if _LOCALE.match(loc)] or ["en"]
    return {"start": "welcome", "locales": locales, "default_locale": locales[0],
            "nodes": {"welcome": {"type": "say", "text": {}, "next": None}}}


def parse_locales(raw: str) -> list[str]:
    """ "en, es it" → ["en", "es", "it"] (valid ones, once each, in order)."""
    out: list[str] = []
    for part in re.split(r"[\s,;]+", raw.strip()):
        if part and _LOCALE.match(part) and part not in out:
            out.append(part)
    return out


def _s(form: Any, key: str) -> str:
    return str(form.get(key) or "").strip()


def _num(value: str, default: Any = None) -> Any:
    """An int when it is one; blank → ``default``; anything else stays text (validation names it)."""
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        return value


def _target(value: str) -> str | None:
    return value or None


def _words(value: str) -> list[str]:
    return [w.strip() for w in value.split(",") if w.strip()]


def _rows(form: Any, prefix: str, letter: str, field: str) -> list[int]:
    """The row numbers j present as ``{prefix}.{letter}{j}.{field}``, in order."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.{letter}(\d+)\.{re.escape(field)}$")
    return sorted({int(m.group(1)) for key in form if (m := pattern.match(str(key)))})


def _texts(form: Any, prefix: str, locales: list[str]) -> dict[str, str]:
    out = {}
    for loc in locales:
        value = str(form.get(f"{prefix}.{loc}") or "").strip()
        if value:
            out[loc] = value
    return out


def _scalar(kind: str, value: str) -> Any:
    if kind == "null":
        return None
    if kind == "bool":
        return value.lower() in ("true", "yes", "1", "on")
    if kind == "number":
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


def _node(form: Any, p: str, kind: str, locales: list[str]) -> dict[str, Any]:
    """One node from the fields under prefix ``p`` (``n3``), as its type ``kind`` reads them."""
    def text(name: str, *fallbacks: str) -> dict[str, str]:
        for field in (name, *fallbacks):  # a node whose type changed keeps its words
            found = _texts(form, f"{p}.{field}", locales)
            if found:
                return found
        return {}

    def get(name: str) -> str:
        return _s(form, f"{p}.{name}")

    node: dict[str, Any] = {"type": kind}
    asks = {"max_tries": _num(get("max_tries"), 3), "timeout_seconds": _num(get("timeout_seconds"), 5)}
    match kind:
        case "say":
            node.update(text=text("text", "prompt"), next=_target(get("next")))
            audio = {loc: v for loc in locales if (v := _s(form, f"{p}.audio.{loc}"))}
            if audio:
                node["audio"] = audio
        case "menu":
            options = []
            for j in _rows(form, p, "o", "key"):
                o = f"{p}.o{j}"
                options.append({"key": _s(form, f"{o}.key"), "label": _texts(form, f"{o}.label", locales),
                                "keywords": _words(_s(form, f"{o}.keywords")), "next": _target(_s(form, f"{o}.next"))})
            node.update(prompt=text("prompt", "text"), options=options, **asks, speech=bool(get("speech")),
                        no_match=_target(get("no_match")))
        case "collect":
            node.update(prompt=text("prompt", "text"), attribute=get("attribute"),
                        min_digits=_num(get("min_digits"), 1), max_digits=_num(get("max_digits"), 20),
                        validator=get("validator") or "digits", pattern=get("pattern") or None, **asks,
                        sensitive=bool(get("sensitive")), next=_target(get("next")), fail=_target(get("fail")))
        case "verify":
            node.update(prompt=text("prompt", "text"), against=get("against"), digits=_num(get("digits")),
                        **asks, ok=_target(get("ok")), fail=_target(get("fail")))
        case "hours":
            weekly: dict[str, list[list[str]]] = {}
            for day in DAYS:
                for k in range(HOUR_SPANS):
                    begin, end = get(f"h.{day}.{k}.from"), get(f"h.{day}.{k}.to")
                    if begin or end:
                        weekly.setdefault(day, []).append([begin, end])
            node.update(timezone=get("timezone"), weekly=weekly,
                        holidays=[d for d in re.split(r"[\s,;]+", get("holidays")) if d],
                        open=_target(get("open")), closed=_target(get("closed")))
        case "branch":
            cases = [{"values": _words(_s(form, f"{p}.c{j}.values")), "next": _target(_s(form, f"{p}.c{j}.next"))}
                     for j in _rows(form, p, "c", "values")]
            node.update(on=get("on"), cases=cases, default=_target(get("default")))
        case "set":
            attributes: dict[str, Any] = {}
            for j in _rows(form, p, "a", "name"):
                a = f"{p}.a{j}"
                attributes[_s(form, f"{a}.name")] = _scalar(_s(form, f"{a}.kind"), str(form.get(f"{a}.value") or ""))
            node.update(attributes=attributes, next=_target(get("next")))
        case "language":
            chosen = {_s(form, f"{p}.l{j}.key"): _s(form, f"{p}.l{j}.locale") for j in _rows(form, p, "l", "key")}
            node.update(prompt=text("prompt", "text"), options=chosen, **asks, next=_target(get("next")),
                        no_match=_target(get("no_match")))
        case "queue":
            node.update(queue_id=_num(get("queue_id")), skills=_words(get("skills")),
                        priority=_num(get("priority"), 0), callback_after_seconds=_num(get("callback_after_seconds")),
                        callback_key=get("callback_key") or None)
        case "voicemail":
            node.update(prompt=text("prompt", "text"), max_seconds=_num(get("max_seconds"), 120))
        case "handoff":
            node.update(queue_id=_num(get("queue_id")))
        case "hangup":
            node.update(text=text("text", "prompt"))
    return node


def retarget(node: dict[str, Any], change: dict[str, str | None]) -> None:
    """Point the node's exits that name a key of ``change`` at its value (None: nowhere)."""
    for field in TARGET_FIELDS:
        if node.get(field) in change:
            node[field] = change[node[field]]
    for row in [*(node.get("options") if isinstance(node.get("options"), list) else []),
                *(node.get("cases") if isinstance(node.get("cases"), list) else [])]:
        if isinstance(row, dict) and row.get("next") in change:
            row["next"] = change[row["next"]]


def read_form(form: Any) -> tuple[dict[str, Any], list[str], list[str]]:
    """The draft the form holds, its node ids in the form's order, and notes on what was adjusted (a
    node id given twice)."""
    locales = [loc for loc in (str(v).strip() for v in form.getlist("locale")) if loc] or ["en"]
    indexes = sorted(int(m.group(1)) for key in form if (m := re.match(r"^n(\d+)\.id$", str(key))))
    nodes: dict[str, Any] = {}
    order: list[str] = []
    renamed: dict[str, str | None] = {}
    notes: list[str] = []
    for i in indexes:
        p = f"n{i}"
        nid, was = _s(form, f"{p}.id"), _s(form, f"{p}.was")
        kind = _s(form, f"{p}.type")
        kind = kind if kind in NODE_TYPES else "say"
        if not nid:
            nid = was or f"node-{i + 1}"
        if nid in nodes:
            base, n = nid, 2
            while f"{base}-{n}" in nodes:
                n += 1
            nid = f"{base}-{n}"
            notes.append(f"the node id '{base}' was given twice: the second one is now '{nid}'")
        if was and was != nid:
            renamed[was] = nid
        node = _node(form, p, kind, locales)
        for rows in ("options", "cases", "attributes"):  # a type just chosen starts with a row to fill
            if rows in node and not node[rows]:
                node[rows] = new_node(kind, locales, [])[rows]
        nodes[nid] = node
        order.append(nid)
    start = _s(form, "start")
    if renamed:
        for node in nodes.values():
            retarget(node, {k: v for k, v in renamed.items() if k not in nodes or k == v})
        start = renamed.get(start, start) if start not in nodes else start
    default = _s(form, "default_locale")
    draft = {"start": start, "locales": locales, "default_locale": default if default in locales else locales[0],
             "nodes": nodes}
    return draft, order, notes


def _fresh_id(nodes: dict[str, Any], wanted: str, kind: str) -> str:
    base = _NODE_ID.sub("-", wanted).strip("-")[:60] or kind
    nid, n = base, 2
    while nid in nodes:
        nid = f"{base}-{n}"
        n += 1
    return nid


def new_node(kind: str, locales: list[str], queue_ids: list[int]) -> dict[str, Any]:
    """A node of ``kind`` with the rows its type needs to be filled in."""
    first_queue = queue_ids[0] if queue_ids else None
    return {
        "say": {"type": "say", "text": {}, "next": None},
        "menu": {"type": "menu", "prompt": {}, "options": [{"key": "1", "label": {}, "keywords": [], "next": None}],
                 "max_tries": 3, "timeout_seconds": 5, "no_match": None},
        "collect": {"type": "collect", "prompt": {}, "attribute": "", "min_digits": 1, "max_digits": 20,
                    "validator": "digits", "next": None, "fail": None},
        "verify": {"type": "verify", "prompt": {}, "against": "", "digits": None, "ok": None, "fail": None},
        "hours": {"type": "hours", "timezone": "UTC",
                  "weekly": {d: [["09:00", "17:00"]] for d in DAYS[:5]}, "holidays": [], "open": None, "closed": None},
        "branch": {"type": "branch", "on": "", "cases": [{"values": [], "next": None}], "default": None},
        "set": {"type": "set", "attributes": {"": ""}, "next": None},
        "language": {"type": "language", "prompt": {}, "options": {str(k + 1): loc for k, loc in enumerate(locales)},
                     "next": None, "no_match": None},
        "queue": {"type": "queue", "queue_id": first_queue, "skills": [], "priority": 0},
        "voicemail": {"type": "voicemail", "prompt": {}, "max_seconds": 120},
        "handoff": {"type": "handoff", "queue_id": None},
        "hangup": {"type": "hangup", "text": {}},
    }[kind]


def _drop_locale(draft: dict[str, Any], locale: str) -> None:
    for node in draft["nodes"].values():
        for field in ("text", "prompt", "audio"):
            if isinstance(node.get(field), dict):
                node[field].pop(locale, None)
        if isinstance(node.get("options"), list):
            for o in node["options"]:
                if isinstance(o, dict) and isinstance(o.get("label"), dict):
                    o["label"].pop(locale, None)
        elif isinstance(node.get("options"), dict):
            node["options"] = {k: v for k, v in node["options"].items() if v != locale}


def _index(order: list[str], raw: str) -> str | None:
    return order[int(raw)] if raw.isdigit() and int(raw) < len(order) else None


def apply(op: str, draft: dict[str, Any], order: list[str], form: Any, queue_ids: list[int]) -> str:
    """Apply one of the builder's buttons (``op``: ``add_node``, ``remove_node:3``, ``add_option:2``…) to
    the draft; what it did, in a few words ("" for nothing)."""
    name, _, rest = op.partition(":")
    args = rest.split(":") if rest else []
    nodes: dict[str, Any] = draft["nodes"]
    nid = _index(order, args[0]) if args else None
    node = nodes.get(nid) if nid is not None else None
    row = int(args[1]) if len(args) > 1 and args[1].isdigit() else -1
    match name:
        case "add_node":
            kind = _s(form, "new_type")
            kind = kind if kind in NODE_TYPES else "say"
            new_id = _fresh_id(nodes, _s(form, "new_id") or kind, kind)
            nodes[new_id] = new_node(kind, draft["locales"], queue_ids)
            if draft.get("start") not in nodes:
                draft["start"] = new_id
            return f"Node {new_id} added"
        case "remove_node" if nid is not None:
            del nodes[nid]
            for other in nodes.values():
                retarget(other, {nid: None})
            if draft.get("start") == nid:
                draft["start"] = next(iter(nodes), "")
            return f"Node {nid} removed"
        case "start" if nid is not None:
            draft["start"] = nid
            return f"{nid} is now the start"
        case "add_option" if node is not None and isinstance(node.get("options"), list):
            used = {o.get("key") for o in node["options"]}
            key = next((k for k in "1234567890*#" if k not in used), "")
            node["options"].append({"key": key, "label": {}, "keywords": [], "next": None})
        case "add_option" if node is not None and isinstance(node.get("options"), dict):
            key = next((k for k in "1234567890*#" if k not in node["options"]), "")
            node["options"][key] = draft["locales"][0]
        case "remove_option" if node is not None and isinstance(node.get("options"), list):
            if 0 <= row < len(node["options"]):
                node["options"].pop(row)
        case "remove_option" if node is not None and isinstance(node.get("options"), dict):
            keys = list(node["options"])
            if 0 <= row < len(keys):
                del node["options"][keys[row]]
        case "add_case" if node is not None:
            node.setdefault("cases", []).append({"values": [], "next": None})
        case "remove_case" if node is not None and 0 <= row < len(node.get("cases", [])):
            node["cases"].pop(row)
        case "add_attribute" if node is not None:
            attributes = node.setdefault("attributes", {})
            attributes[f"attribute_{len(attributes) + 1}" if "" in attributes else ""] = ""
        case "remove_attribute" if node is not None:
            keys = list(node.get("attributes", {}))
            if 0 <= row < len(keys):
                del node["attributes"][keys[row]]
        case "add_locale":
            added = [loc for loc in parse_locales(_s(form, "new_locale")) if loc not in draft["locales"]]
            draft["locales"].extend(added)
            return f"Locale {', '.join(added)} added" if added else "Give a locale such as es or pt-BR"
        case "remove_locale" if len(draft["locales"]) > 1 and rest in draft["locales"]:
            draft["locales"].remove(rest)
            _drop_locale(draft, rest)
            if draft["default_locale"] == rest:
                draft["default_locale"] = draft["locales"][0]
            return f"Locale {rest} removed"
        case "load_json":
            try:
                loaded = json.loads(str(form.get("raw_json") or ""))
            except ValueError as exc:
                return f"That is not JSON: {exc}"
            if not isinstance(loaded, dict) or not isinstance(loaded.get("nodes"), dict):
                return "The JSON must be an object with 'nodes'"
            draft.clear()
            draft.update(loaded)
            draft.setdefault("locales", ["en"])
            draft.setdefault("default_locale", (draft["locales"] or ["en"])[0])
            draft.setdefault("start", next(iter(draft["nodes"]), ""))
            return "JSON loaded into the form: validate or save it"
    return ""
