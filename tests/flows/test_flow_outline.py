"""The builder's preview: ``outline`` reads a flow from its start as numbered lines, exits indented,
loops as a way back, unreachable nodes apart; it also reads a draft that does not validate yet."""

from __future__ import annotations

from tests.flows.sample import ivr

from threadline.flows.domain import FlowDefinition, outline


def text(lines) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(line) for line in lines]


def test_the_sample_reads_from_the_start() -> None:
    lines = outline(FlowDefinition.model_validate(ivr()), {1: "general", 2: "billing"})
    assert text(lines) == [
        "1. welcome: say 'Welcome to Acme.'",
        "2. language: language 'For English press 1. Para español marque 2.'",
        "   chosen → 3. hours: hours in Europe/Madrid",
        "      open → 4. main: menu 'Billing 1, orders 2.'",
        "         1 Billing → 5. billing: queue billing",
        "         2 Orders → 6. order: collect order_number (6–8 digits, digits) 'Key in your order number.'",
        "            valid → 7. tag: set last_order, ivr",
        "            8. orders: queue general",
        "            fail → 9. agent: hand-off to an agent",
        "         no match → 9. agent (see above)",
        "      closed → 10. closed: voicemail",
        "   no match → 3. hours (see above)",
    ]
    assert [(ln.kind, ln.node, ln.number) for ln in lines[:2]] == [("node", "welcome", 1), ("node", "language", 2)]
    assert lines[4].via == "1 Billing" and lines[4].depth == 3


def test_loops_dead_ends_unknown_targets_and_unreachable_nodes() -> None:
    data = ivr()
    data["nodes"]["main"]["no_match"] = "main"          # a menu that asks again
    data["nodes"]["order"]["fail"] = None               # a dead end
    data["nodes"]["tag"]["next"] = "nope"               # an unknown target
    data["nodes"]["spare"] = {"type": "hangup", "text": {"en": "Bye"}}
    lines = outline(data)  # a draft: it would not pass validation
    found = text(lines)
    assert "         no match → ↩ back to 4. main" in found
    assert "            fail → ✗ nowhere (a dead end)" in found
    assert "            ✗ 'nope', which is not a node" in found
    apart = [ln for ln in lines if ln.kind == "unreachable"]
    assert [ln.node for ln in apart] == ["orders", "agent", "spare"]
    assert str(apart[2]) == "spare: hang up 'Bye'" and lines[-1].kind == "unreachable"
    loop = next(ln for ln in lines if ln.kind == "loop")
    assert (loop.node, loop.number, loop.via) == ("main", 4, "no match")


def test_texts_in_the_default_locale_clipped_and_a_missing_start() -> None:
    data = {"start": "hi", "locales": ["es", "en"], "default_locale": "es",
            "nodes": {"hi": {"type": "say", "text": {"en": "Hello", "es": "Hola " + "x" * 100}, "next": "end"},
                      "end": {"type": "hangup"}}}
    first = outline(data)[0]
    assert first.summary.startswith("say 'Hola xxx") and first.summary.endswith("…'") and len(first.summary) < 80
    assert text(outline({**data, "start": "gone"}))[0] == "✗ 'gone', which is not a node"
    assert [ln.kind for ln in outline({**data, "start": "gone"})][1:] == ["unreachable", "unreachable"]


def test_a_broken_draft_does_not_break_the_preview() -> None:
    data = {"start": "m", "nodes": {"m": {"type": "menu", "options": "junk", "prompt": None},
                                    "q": {"type": "queue", "queue_id": "abc"}, "x": "not a node"}}
    found = text(outline(data))
    assert found[0] == "1. m: menu" and "   no match → ✗ nowhere (a dead end)" in found
    assert "q: queue (no queue chosen)" in found
