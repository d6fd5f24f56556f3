"""Flows, the pure part: a flow definition (nodes keyed by id, a start, the locales it speaks), the
rules a definition must pass before it is saved (``validate``/``check``), and the engine that runs it
(``start``/``answer``) one turn at a time.

The engine is channel-neutral. It reads a typed reply (``Digits``, ``Text``, ``Timeout``, ``NoInput``)
and answers with instructions (``Say``, ``Ask``, ``SetAttributes``, ``Enqueue``, ``Voicemail``,
``Handoff``, ``Hangup``, ``Verified``); the voice package renders them as TwiML or ARI commands, the chat
side as messages with quick-reply buttons. Its state (``FlowState``) is a small JSON-serialisable model
the caller keeps between turns, next to the flow version the conversation pinned.

No I/O here and no clock: the caller passes ``now`` (an aware datetime) in the context.
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from threadline.domain.errors import ValidationFailed
from threadline.domain.ids import Id

# --- limits -------------------------------------------------------------------------------------------------

MAX_NODES = 300
MAX_TEXT = 2000
MAX_TRIES = 10          # a menu, a capture or a check asks at most this often before its failure exit
MAX_VISITS = 20         # a node that asks is entered at most this often in one run (loops end, always)
MAX_STEPS = 200         # nodes passed without asking in one turn: beyond it the flow is broken, it hangs up
MAX_DIGITS = 64
MAX_PATTERN = 200
INPUT_TYPES = frozenset({"menu", "collect", "verify", "language"})
TERMINAL_TYPES = frozenset({"queue", "voicemail", "handoff", "hangup"})
NODE_TYPES = INPUT_TYPES | TERMINAL_TYPES | {"say", "hours", "branch", "set"}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

NodeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
Locale = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
Key = Annotated[str, StringConstraints(pattern=r"^[0-9*#]$")]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")]
Short = Annotated[str, StringConstraints(max_length=200)]
Localized = dict[Locale, Annotated[str, StringConstraints(max_length=MAX_TEXT)]]
Tries = Annotated[int, Field(ge=1, le=MAX_TRIES)]
Seconds = Annotated[int, Field(ge=1, le=60)]
Clock = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")]
Scalar = str | int | float | bool | None

# The engine's own lines, in the languages it ships; a flow in another locale hears English.
LINES: dict[str, dict[str, str]] = {
    "no_match": {"en": "Sorry, that is not one of the options.",
                 "es": "Lo siento, esa no es una de las opciones.",
                 "it": "Spiacente, questa non è una delle opzioni."},
    "no_input": {"en": "Sorry, I did not get an answer.",
                 "es": "Lo siento, no he recibido ninguna respuesta.",
                 "it": "Spiacente, non ho ricevuto una risposta."},
    "invalid": {"en": "Sorry, that is not valid.",
                "es": "Lo siento, eso no es válido.",
                "it": "Spiacente, non è valido."},
    "mismatch": {"en": "Sorry, that does not match our records.",
                 "es": "Lo siento, eso no coincide con nuestros datos.",
                 "it": "Spiacente, non corrisponde ai nostri dati."},
}
LANGUAGE_NAMES = {"en": "English", "es": "Español", "it": "Italiano", "fr": "Français", "de": "Deutsch",
                  "pt": "Português", "nl": "Nederlands", "ca": "Català"}


# --- the definition --------------------------------------------------------------------------------------

class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SayNode(_Node):
    """Play a recording or speak a text (per locale), then go on."""

    type: Literal["say"]
    text: Localized
    audio: dict[Locale, Short] = Field(default_factory=dict, description="An uploaded audio file id per locale")
    next: NodeId | None = None


class MenuOption(_Node):
    key: Key = Field(description="The DTMF key: 0-9, * or #")
    label: Localized = Field(description="The button's label in chat, per locale")
    keywords: list[Annotated[str, StringConstraints(max_length=100)]] = Field(default_factory=list, max_length=20)
    next: NodeId | None = None


class MenuNode(_Node):
    """Ask for one choice: a key on voice (or a keyword said, where speech is offered), a button in chat."""

    type: Literal["menu"]
    prompt: Localized
    options: list[MenuOption] = Field(min_length=1, max_length=12)
    max_tries: Tries = 3
    timeout_seconds: Seconds = 5
    speech: bool = False
    no_match: NodeId | None = Field(default=None, description="Where a caller goes after max_tries wrong answers")


class CollectNode(_Node):
    """Capture a value (an account or order number) into a flow variable, validated."""

    type: Literal["collect"]
    prompt: Localized
    attribute: Name = Field(description="The flow variable that receives the value")
    min_digits: int = Field(default=1, ge=1, le=MAX_DIGITS)
    max_digits: int = Field(default=20, ge=1, le=MAX_DIGITS)
    validator: Literal["digits", "luhn", "regex"] = "digits"
    pattern: Annotated[str, StringConstraints(max_length=MAX_PATTERN)] | None = None
    max_tries: Tries = 3
    timeout_seconds: Seconds = 5
    sensitive: bool = False
    next: NodeId | None = None
    fail: NodeId | None = None


class VerifyNode(_Node):
    """Check the caller: a PIN, the last digits of an account, a date of birth (as digits) against a
    contact attribute."""

    type: Literal["verify"]
    prompt: Localized
    against: Name = Field(description="The contact attribute compared with (its digits)")
    digits: int | None = Field(default=None, ge=1, le=MAX_DIGITS, description="Compare its last N digits; "
                               "null: the whole value")
    max_tries: Tries = 3
    timeout_seconds: Seconds = 5
    ok: NodeId | None = None
    fail: NodeId | None = None


class HoursNode(_Node):
    """Open or closed now, in the business's time zone: weekly hours and holidays."""

    type: Literal["hours"]
    timezone: Annotated[str, StringConstraints(max_length=64)]
    weekly: dict[str, list[tuple[Clock, Clock]]] = Field(default_factory=dict,
                                                        description='{"mon": [["09:00", "17:00"]], ...}')
    holidays: list[date] = Field(default_factory=list, max_length=400)
    open: NodeId | None = None
    closed: NodeId | None = None


class BranchCase(_Node):
    values: list[Annotated[str, StringConstraints(max_length=200)]] = Field(min_length=1, max_length=50)
    next: NodeId | None = None


class BranchNode(_Node):
    """Go by a value: a flow variable (``locale``, a captured value, a menu's key) or a contact attribute."""

    type: Literal["branch"]
    on: Name
    cases: list[BranchCase] = Field(min_length=1, max_length=50)
    default: NodeId | None = None


class SetNode(_Node):
    """Set contact attributes; a string may name flow variables as ``{name}``."""

    type: Literal["set"]
    attributes: dict[Name, Scalar] = Field(min_length=1, max_length=50)
    next: NodeId | None = None


class LanguageNode(_Node):
    """Let the caller choose the language: a key per locale."""

    type: Literal["language"]
    prompt: Localized
    options: dict[Key, Locale] = Field(min_length=1, max_length=12)
    max_tries: Tries = 3
    timeout_seconds: Seconds = 5
    next: NodeId | None = None
    no_match: NodeId | None = None


class QueueNode(_Node):
    type: Literal["queue"]
    queue_id: Id
    skills: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(default_factory=list,
                                                                                         max_length=20)
    priority: int = Field(default=0, ge=0, le=100)
    callback_after_seconds: int | None = Field(default=None, ge=1, le=86_400)
    callback_key: Key | None = None


class VoicemailNode(_Node):
    type: Literal["voicemail"]
    prompt: Localized = Field(default_factory=dict)
    max_seconds: int = Field(default=120, ge=5, le=600)


class HandoffNode(_Node):
    type: Literal["handoff"]
    queue_id: Id | None = None


class HangupNode(_Node):
    type: Literal["hangup"]
    text: Localized = Field(default_factory=dict)


Node = Annotated[
    SayNode | MenuNode | CollectNode | VerifyNode | HoursNode | BranchNode | SetNode | LanguageNode | QueueNode
    | VoicemailNode | HandoffNode | HangupNode,
    Field(discriminator="type"),
]


class FlowDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: NodeId
    nodes: dict[NodeId, Node] = Field(min_length=1, max_length=MAX_NODES)
    locales: list[Locale] = Field(default_factory=lambda: ["en"], min_length=1, max_length=20)
    default_locale: Locale = "en"


# --- validation ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    node: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.node}: {self.message}" if self.node else self.message


def exits(node: Any) -> list[tuple[str, str | None]]:
    """The node's outgoing edges as (field, target); a missing target is None."""
    match node:
        case SayNode() | SetNode():
            return [("next", node.next)]
        case MenuNode():
            return [*((f"options[{o.key}].next", o.next) for o in node.options), ("no_match", node.no_match)]
        case CollectNode():
            return [("next", node.next), ("fail", node.fail)]
        case VerifyNode():
            return [("ok", node.ok), ("fail", node.fail)]
        case HoursNode():
            return [("open", node.open), ("closed", node.closed)]
        case BranchNode():
            return [*((f"cases[{i}].next", c.next) for i, c in enumerate(node.cases)), ("default", node.default)]
        case LanguageNode():
            return [("next", node.next), ("no_match", node.no_match)]
    return []  # terminal


def _texts(node: Any) -> Iterator[tuple[str, dict[str, str], bool]]:
    """The node's localised texts as (field, texts, required)."""
    match node:
        case SayNode():
            yield "text", node.text, True
        case MenuNode():
            yield "prompt", node.prompt, True
            for o in node.options:
                yield f"options[{o.key}].label", o.label, True
        case CollectNode() | VerifyNode() | LanguageNode():
            yield "prompt", node.prompt, True
        case VoicemailNode():
            yield "prompt", node.prompt, False
        case HangupNode():
            yield "text", node.text, False


def _node_problems(flow: FlowDefinition, nid: str, node: Any) -> Iterator[str]:
    locales = set(flow.locales)
    for fld, target in exits(node):
        if target is None:
            yield f"{node.type} has no '{fld}': a dead end"
        elif target not in flow.nodes:
            yield f"'{fld}' points to '{target}', which is not a node"
    for fld, texts, required in _texts(node):
        if not texts and not required:
            continue
        missing = [loc for loc in flow.locales if not (texts.get(loc) or "").strip()]
        if missing:
            yield f"'{fld}' has no text for locale{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        extra = sorted(set(texts) - locales)
        if extra:
            yield f"'{fld}' has text for undeclared locale{'s' if len(extra) > 1 else ''} {', '.join(extra)}"
    match node:
        case SayNode():
            extra = sorted(set(node.audio) - locales)
            if extra:
                yield f"'audio' names undeclared locale{'s' if len(extra) > 1 else ''} {', '.join(extra)}"
        case MenuNode():
            seen: set[str] = set()
            for o in node.options:
                if o.key in seen:
                    yield f"menu key '{o.key}' is offered twice"
                seen.add(o.key)
        case LanguageNode():
            for key, loc in node.options.items():
                if loc not in locales:
                    yield f"option '{key}' chooses locale '{loc}', which the flow does not declare"
        case CollectNode():
            if node.min_digits > node.max_digits:
                yield f"min_digits ({node.min_digits}) is more than max_digits ({node.max_digits})"
            if node.validator == "regex":
                if not node.pattern:
                    yield "the regex validator needs a 'pattern'"
                else:
                    try:
                        re.compile(node.pattern)
                    except re.error as exc:
                        yield f"'pattern' is not a valid regular expression: {exc}"
            elif node.pattern:
                yield f"'pattern' is only used by the regex validator, not '{node.validator}'"
        case HoursNode():
            if timezone_problem(node.timezone):
                yield f"'{node.timezone}' is not a known time zone (an IANA name such as Europe/Rome)"
            for day, spans in node.weekly.items():
                if day not in DAYS:
                    yield f"'{day}' is not a day (mon, tue, wed, thu, fri, sat, sun)"
                for begin, end in spans:
                    if begin >= end:
                        yield f"{day} {begin}-{end}: the opening must be before the closing"
        case QueueNode():
            if node.callback_key is not None and node.callback_after_seconds is None:
                yield "'callback_key' needs 'callback_after_seconds' (when the callback is offered)"


def timezone_problem(name: str) -> bool:
    """True when ``name`` is not an IANA time zone this system knows."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return True
    return False


def _graph(flow: FlowDefinition) -> dict[str, list[str]]:
    return {nid: [t for _, t in exits(n) if t is not None and t in flow.nodes] for nid, n in flow.nodes.items()}


def _reachable(graph: Mapping[str, list[str]], roots: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    stack = [r for r in roots if r in graph]
    while stack:
        nid = stack.pop()
        if nid in seen:
            continue
        seen.add(nid)
        stack.extend(graph[nid])
    return seen


def _components(graph: Mapping[str, list[str]], nodes: Iterable[str]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative) of ``graph`` restricted to ``nodes``."""
    allowed = set(nodes)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in [n for n in graph if n in allowed]:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            nid, i = work.pop()
            if i == 0:
                index[nid] = low[nid] = counter
                counter += 1
                stack.append(nid)
                on_stack.add(nid)
            succ = [s for s in graph[nid] if s in allowed]
            if i < len(succ):
                work.append((nid, i + 1))
                s = succ[i]
                if s not in index:
                    work.append((s, 0))
                elif s in on_stack:
                    low[nid] = min(low[nid], index[s])
                continue
            if low[nid] == index[nid]:
                comp: list[str] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == nid:
                        break
                out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[nid])
    return out


def _cycle(graph: Mapping[str, list[str]], comp: list[str], order: list[str]) -> list[str]:
    """A cycle through the component, as a path that returns to its first node."""
    members = set(comp)
    first = min(comp, key=order.index)
    path = [first]
    parents: dict[str, str] = {}
    queue = [first]
    while queue:  # the shortest way back to ``first`` inside the component
        nid = queue.pop(0)
        for s in graph[nid]:
            if s not in members:
                continue
            if s == first:
                walk = [nid]
                while walk[-1] != first:
                    walk.append(parents[walk[-1]])
                return [*reversed(walk), first]
            if s not in parents:
                parents[s] = nid
                queue.append(s)
    return path + [first]


def _is_cycle(graph: Mapping[str, list[str]], comp: list[str]) -> bool:
    return len(comp) > 1 or comp[0] in graph[comp[0]]


def validate(flow: FlowDefinition) -> list[Problem]:
    """Every reason this flow cannot be saved (empty: it may be). A flow is refused with an unknown
    start or target, a dead end, an unreachable node, a loop without an exit or one that asks nothing
    (so cannot be bounded by a menu's tries), texts missing for a declared locale, a menu key offered
    twice, an unknown time zone or an invalid pattern."""
    problems: list[Problem] = []
    order = list(flow.nodes)
    if len(set(flow.locales)) != len(flow.locales):
        problems.append(Problem(None, "'locales' names a locale twice"))
    if flow.default_locale not in flow.locales:
        problems.append(Problem(None, f"the default locale '{flow.default_locale}' is not one of 'locales'"))
    if flow.start not in flow.nodes:
        problems.append(Problem(None, f"'start' points to '{flow.start}', which is not a node"))
    for nid, node in flow.nodes.items():
        problems.extend(Problem(nid, msg) for msg in _node_problems(flow, nid, node))
    graph = _graph(flow)
    reachable = _reachable(graph, [flow.start])
    if flow.start in flow.nodes:
        for nid in order:
            if nid not in reachable:
                problems.append(Problem(nid, f"unreachable: no path from the start '{flow.start}' leads here"))
    # Loops that cannot be left: no end (queue, voicemail, hand-off, hang-up) can be reached from them.
    ending = {nid for nid, n in flow.nodes.items() if n.type in TERMINAL_TYPES}
    reverse: dict[str, list[str]] = {nid: [] for nid in graph}
    for nid, succ in graph.items():
        for s in succ:
            reverse[s].append(nid)
    can_end = _reachable(reverse, ending)
    stuck = [nid for nid in order if nid in reachable and nid not in can_end]
    for comp in _components(graph, stuck):
        if _is_cycle(graph, comp):
            path = " → ".join(_cycle(graph, comp, order))
            problems.append(Problem(min(comp, key=order.index), f"a loop without an exit: {path}"))
    # Loops that ask nothing: they would run forever without a menu, capture or check to count tries.
    silent = [nid for nid in order if nid in reachable and flow.nodes[nid].type not in INPUT_TYPES]
    for comp in _components(graph, silent):
        if _is_cycle(graph, comp):
            path = " → ".join(_cycle(graph, comp, order))
            problems.append(Problem(min(comp, key=order.index),
                                    f"an endless loop that asks nothing (it needs a menu, collect, verify or "
                                    f"language node, whose max_tries bound it): {path}"))
    return problems


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    out = []
    for err in exc.errors()[:50]:
        loc = [str(p) for p in err.get("loc", ())]
        node = loc[1] if len(loc) > 1 and loc[0] == "nodes" else None
        rest = loc[2:] if node else loc
        if node and rest and isinstance(data_type := rest[0], str) and data_type in NODE_TYPES:
            rest = rest[1:]  # the union's tag: "nodes.x.queue.queue_id" reads "x: queue_id"
        where = ".".join(rest)
        msg = "unknown field" if err.get("type") == "extra_forbidden" else err.get("msg", "invalid")
        out.append(Problem(node, f"{where}: {msg}" if where else msg))
    return out


def problems_in(data: Any) -> tuple[FlowDefinition | None, list[Problem]]:
    """Parse a definition sent as JSON data, then validate it: the flow (None if it does not parse) and
    every problem found."""
    try:
        flow = FlowDefinition.model_validate(data)
    except ValidationError as exc:
        return None, _pydantic_problems(exc)
    return flow, validate(flow)


def _refuse(problems: list[Problem]) -> ValidationFailed:
    shown = "; ".join(str(p) for p in problems[:20])
    more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
    return ValidationFailed(f"the flow cannot be saved: {shown}{more}", field="definition")


def check(flow: FlowDefinition) -> FlowDefinition:
    """The flow, if it passes ``validate``; else a 422 (``ValidationFailed``) listing the reasons."""
    problems = validate(flow)
    if problems:
        raise _refuse(problems)
    return flow


def parse(data: Any) -> FlowDefinition:
    """A valid flow from JSON data, or a 422 listing every reason it is not."""
    flow, problems = problems_in(data)
    if flow is None or problems:
        raise _refuse(problems)
    return flow


# --- the preview: the graph as an outline --------------------------------------------------------------------

OUTLINE_TEXT = 60  # characters of a text shown in the outline


@dataclass(frozen=True)
class OutlineLine:
    """One line of a flow's readable preview (``outline``).

    ``kind``: ``node`` (a node, shown the first time it is reached: numbered), ``loop`` (an exit back to a
    node on the way here: "↩ back to 2. main"), ``goto`` (an exit to a node shown earlier on another
    branch), ``dead_end`` (an exit with no target), ``unknown`` (an exit to a node that does not exist),
    ``unreachable`` (a node no path from the start reaches, listed after the rest)."""

    depth: int
    kind: Literal["node", "loop", "goto", "dead_end", "unknown", "unreachable"]
    via: str = ""              # the exit taken to get here: "1 Sales", "no match", "open"; "" for a plain next
    node: str | None = None    # the node's id (the missing one, for ``unknown``)
    number: int | None = None  # the node's number in the outline (None for an unreachable one)
    type: str = ""
    summary: str = ""          # "say 'Welcome'", "queue general"

    def __str__(self) -> str:
        lead = "   " * self.depth + (f"{self.via} → " if self.via else "")
        match self.kind:
            case "node":
                return f"{lead}{self.number}. {self.node}: {self.summary}"
            case "loop":
                return f"{lead}↩ back to {self.number}. {self.node}"
            case "goto":
                return f"{lead}{'' if self.via else '→ '}{self.number}. {self.node} (see above)"
            case "dead_end":
                return f"{lead}✗ nowhere (a dead end)"
            case "unknown":
                return f"{lead}✗ '{self.node}', which is not a node"
        return f"{lead}{self.node}: {self.summary}"


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= OUTLINE_TEXT else text[:OUTLINE_TEXT - 1] + "…"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _say_text(texts: Any, locale: str) -> str:
    texts = _dict(texts)
    value = texts.get(locale) or next((v for v in texts.values() if v), "")
    return _clip(str(value)) if value else ""


def _queue_name(value: Any, queue_names: Mapping[int, str]) -> str:
    try:
        qid = int(value)
    except (TypeError, ValueError):
        return "(no queue chosen)"
    return queue_names.get(qid, f"#{qid}")


def _summary(node: Mapping[str, Any], locale: str, queue_names: Mapping[int, str]) -> str:
    """What a node does, in a few words (its texts in ``locale``)."""
    kind = str(node.get("type", "?"))

    def quoted(field_name: str) -> str:
        text = _say_text(node.get(field_name), locale)
        return f" '{text}'" if text else ""

    match kind:
        case "say":
            return f"say{quoted('text')}"
        case "menu":
            return f"menu{quoted('prompt')}"
        case "collect":
            lo, hi = node.get("min_digits", 1), node.get("max_digits", 20)
            size = f"{lo} digits" if lo == hi else f"{lo}–{hi} digits"
            return f"collect {node.get('attribute') or '?'} ({size}, {node.get('validator', 'digits')}){quoted('prompt')}"
        case "verify":
            last = f"last {node['digits']} digits of " if node.get("digits") else ""
            return f"verify {last}{node.get('against') or '?'}{quoted('prompt')}"
        case "hours":
            return f"hours in {node.get('timezone') or '?'}"
        case "branch":
            return f"branch on {node.get('on') or '?'}"
        case "set":
            names = ", ".join(str(k) for k in _dict(node.get("attributes")))
            return f"set {names or '?'}"
        case "language":
            return f"language{quoted('prompt')}"
        case "queue":
            return f"queue {_queue_name(node.get('queue_id'), queue_names)}"
        case "voicemail":
            return "voicemail"
        case "handoff":
            where = node.get("queue_id")
            return f"hand-off to {_queue_name(where, queue_names)}" if where else "hand-off to an agent"
        case "hangup":
            return f"hang up{quoted('text')}"
    return kind


def _labelled_exits(node: Mapping[str, Any], locale: str) -> list[tuple[str, Any]]:
    """The node's exits as (label, target) for reading: "1 Sales", "no match", "open"… A plain ``next``
    is labelled ""."""
    kind = node.get("type")
    if kind in ("say", "set"):
        return [("", node.get("next"))]
    if kind == "menu":
        options = [_dict(o) for o in _list(node.get("options"))]
        return [*((f"{o.get('key', '?')} {_say_text(o.get('label'), locale)}".strip(), o.get("next"))
                  for o in options), ("no match", node.get("no_match"))]
    if kind == "collect":
        return [("valid", node.get("next")), ("fail", node.get("fail"))]
    if kind == "verify":
        return [("verified", node.get("ok")), ("not verified", node.get("fail"))]
    if kind == "hours":
        return [("open", node.get("open")), ("closed", node.get("closed"))]
    if kind == "branch":
        cases = [_dict(c) for c in _list(node.get("cases"))]
        on = node.get("on") or "?"
        return [*((f"{on} = {', '.join(str(v) for v in _list(c.get('values')))}", c.get("next")) for c in cases),
                ("otherwise", node.get("default"))]
    if kind == "language":
        return [("chosen", node.get("next")), ("no match", node.get("no_match"))]
    return []


def outline(flow: FlowDefinition | Mapping[str, Any], queue_names: Mapping[int, str] | None = None
            ) -> list[OutlineLine]:
    """The flow as a readable outline from its start: each node numbered where it is first reached, its
    exits indented under it (a plain ``next`` continues at the same depth, so a greeting then a menu read
    "1. say …", "2. menu …"), a way back to a node on the path shown as a loop, nodes no path reaches
    listed last. Works on a definition that does not validate yet (a draft being edited), so the builder
    can preview what it has; ``queue_names`` names the queues of queue and hand-off nodes."""
    data = flow.model_dump(mode="json") if isinstance(flow, FlowDefinition) else dict(flow)
    nodes: dict[str, dict[str, Any]] = {str(k): _dict(v) for k, v in _dict(data.get("nodes")).items()}
    locale = str(data.get("default_locale") or next(iter(_list(data.get("locales"))), "en"))
    names = queue_names or {}
    lines: list[OutlineLine] = []
    numbers: dict[str, int] = {}
    path: list[str] = []

    def edge(target: Any, depth: int, via: str) -> None:
        if target is None or target == "":
            lines.append(OutlineLine(depth, "dead_end", via))
            return
        target = str(target)
        if target not in nodes:
            lines.append(OutlineLine(depth, "unknown", via, target))
        elif target in path:
            lines.append(OutlineLine(depth, "loop", via, target, numbers[target], nodes[target].get("type", "")))
        elif target in numbers:
            lines.append(OutlineLine(depth, "goto", via, target, numbers[target], nodes[target].get("type", "")))
        else:
            visit(target, depth, via)

    def visit(nid: str, depth: int, via: str) -> None:
        pushed = 0
        while True:  # a chain of plain ``next`` exits reads at one depth
            node = nodes[nid]
            numbers[nid] = len(numbers) + 1
            path.append(nid)
            pushed += 1
            lines.append(OutlineLine(depth, "node", via, nid, numbers[nid], str(node.get("type", "")),
                                     _summary(node, locale, names)))
            via = ""
            exits_ = _labelled_exits(node, locale)
            if len(exits_) == 1 and exits_[0][0] == "":
                target = exits_[0][1]
                if isinstance(target, str) and target in nodes and target not in numbers:
                    nid = target
                    continue
                edge(target, depth, "")
            else:
                for label, target in exits_:
                    edge(target, depth + 1, label)
            break
        del path[len(path) - pushed:]

    start_id = data.get("start")
    edge(start_id, 0, "")
    for nid, node in nodes.items():
        if nid not in numbers:
            lines.append(OutlineLine(0, "unreachable", "", nid, None, str(node.get("type", "")),
                                     _summary(node, locale, names)))
    return lines


# --- replies, instructions, state --------------------------------------------------------------------------

@dataclass(frozen=True)
class Digits:
    """Keys pressed (DTMF), or digits typed."""

    digits: str


@dataclass(frozen=True)
class Text:
    """A chat button's label or typed text, or what speech recognition heard."""

    text: str


@dataclass(frozen=True)
class Timeout:
    """Nothing arrived before the question's timeout."""


@dataclass(frozen=True)
class NoInput:
    """An empty answer (``#`` alone, an empty message)."""


Reply = Digits | Text | Timeout | NoInput


@dataclass(frozen=True)
class Say:
    text: str
    locale: str
    audio: str | None = None


@dataclass(frozen=True)
class Ask:
    """A question: ``choice`` (a chat renderer shows buttons, a voice one a one-key Gather) or
    ``digits`` (a number typed or keyed)."""

    kind: Literal["digits", "choice"]
    prompt: str
    locale: str
    node: str
    options: list[tuple[str, str]] = field(default_factory=list)
    num_digits: int | None = None
    min_digits: int | None = None
    max_digits: int | None = None
    timeout_seconds: int = 5
    speech: bool = False
    sensitive: bool = False  # a PIN or a card number: not echoed, not recorded


@dataclass(frozen=True)
class SetAttributes:
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Enqueue:
    queue_id: int
    skills: list[str]
    priority: int
    callback_after_seconds: int | None
    callback_key: str | None
    variables: dict[str, str]


@dataclass(frozen=True)
class Voicemail:
    prompt: str | None
    max_seconds: int


@dataclass(frozen=True)
class Handoff:
    queue_id: int | None


@dataclass(frozen=True)
class Hangup:
    text: str | None


@dataclass(frozen=True)
class Verified:
    ok: bool
    attribute: str


Instruction = Say | Ask | SetAttributes | Enqueue | Voicemail | Handoff | Hangup | Verified


class FlowState(BaseModel):
    """Where a run of a flow stands between turns; JSON in, JSON out (``model_dump_json``)."""

    model_config = ConfigDict(extra="forbid")

    node: str | None = None
    tries: int = 0
    variables: dict[str, str] = Field(default_factory=dict)
    locale: str = "en"
    verified: bool = False
    finished: bool = False
    visits: dict[str, int] = Field(default_factory=dict)
    error: str | None = None


class FlowContext(BaseModel):
    """What the engine knows of the world this turn: the time, the contact's attributes, the caller's
    language (a hint: the channel's, the browser's, the number's country)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    now: AwareDatetime
    attributes: dict[str, Any] = Field(default_factory=dict)
    locale: str | None = None


Context = FlowContext


@dataclass
class Turn:
    state: FlowState
    instructions: list[Instruction]

    @property
    def finished(self) -> bool:
        return self.state.finished


# --- the engine ------------------------------------------------------------------------------------------

def fold(text: str) -> str:
    """Case- and accent-insensitive form of ``text`` (``Facturación`` → ``facturacion``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(re.sub(r"[^\w]+", " ", bare.casefold()).split())


def _pick_locale(flow: FlowDefinition, hint: str | None) -> str:
    if hint:
        hint = hint.strip().replace("_", "-")
        for candidate in (hint, hint.split("-")[0].lower()):
            for loc in flow.locales:
                if loc.lower() == candidate.lower():
                    return loc
    return flow.default_locale


def _text(flow: FlowDefinition, texts: Mapping[str, str], locale: str) -> str:
    return texts.get(locale) or texts.get(flow.default_locale) or next(iter(texts.values()), "")


def _line(kind: str, locale: str) -> Say:
    lines = LINES[kind]
    loc = locale if locale in lines else locale.split("-")[0] if locale.split("-")[0] in lines else "en"
    return Say(lines[loc], loc)


def _digits_of(reply: Reply) -> str | None:
    """The digits of an answer to a number question (chat may type spaces, dashes or slashes)."""
    if isinstance(reply, Digits):
        raw = reply.digits
    elif isinstance(reply, Text):
        raw = re.sub(r"[\s\-/.]", "", reply.text)
    else:
        return None
    raw = raw.rstrip("#")
    return raw if raw.isascii() and raw.isdigit() else None


def luhn(number: str) -> bool:
    """The Luhn checksum (card and many account numbers) holds."""
    if not number.isdigit() or len(number) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_open(node: HoursNode, now: datetime) -> bool:
    """Open at ``now`` (aware) by the node's weekly hours and holidays, in its time zone."""
    local = now.astimezone(ZoneInfo(node.timezone))
    if local.date() in node.holidays:
        return False
    hhmm = local.strftime("%H:%M")
    return any(begin <= hhmm < end for begin, end in node.weekly.get(DAYS[local.weekday()], []))


def _substitute(value: Scalar, variables: Mapping[str, str]) -> Scalar:
    if not isinstance(value, str):
        return value
    return re.sub(r"\{([A-Za-z_][A-Za-z0-9_.\-]{0,63})\}", lambda m: variables.get(m.group(1), ""), value)


def _lookup(name: str, state: FlowState, ctx: FlowContext) -> str | None:
    if name == "locale":
        return state.locale
    if name in state.variables:
        return state.variables[name]
    value = ctx.attributes.get(name)
    return None if value is None else str(value)


def _ask(flow: FlowDefinition, nid: str, node: Any, locale: str) -> Ask:
    prompt = _text(flow, node.prompt, locale)
    match node:
        case MenuNode():
            return Ask("choice", prompt, locale, nid, [(o.key, _text(flow, o.label, locale)) for o in node.options],
                       num_digits=1, timeout_seconds=node.timeout_seconds, speech=node.speech)
        case LanguageNode():
            return Ask("choice", prompt, locale, nid, [(k, LANGUAGE_NAMES.get(loc.split("-")[0], loc))
                                                       for k, loc in node.options.items()],
                       num_digits=1, timeout_seconds=node.timeout_seconds)
        case CollectNode():
            exact = node.min_digits if node.min_digits == node.max_digits else None
            return Ask("digits", prompt, locale, nid, num_digits=exact, min_digits=node.min_digits,
                       max_digits=node.max_digits, timeout_seconds=node.timeout_seconds, sensitive=node.sensitive)
        case VerifyNode():
            return Ask("digits", prompt, locale, nid, num_digits=node.digits, min_digits=node.digits,
                       max_digits=node.digits or MAX_DIGITS, timeout_seconds=node.timeout_seconds, sensitive=True)
    raise TypeError(f"{node.type} asks nothing")


def _broken(state: FlowState, out: list[Instruction], reason: str) -> None:
    state.error = reason
    state.finished = True
    state.node = None
    out.append(Hangup(None))


def _run(flow: FlowDefinition, state: FlowState, ctx: FlowContext, out: list[Instruction],
         target: str | None) -> None:
    """Enter ``target`` and go on through nodes that ask nothing until one asks or the flow ends."""
    for _ in range(MAX_STEPS):
        if target is None or target not in flow.nodes:
            _broken(state, out, f"no node '{target}'")
            return
        node = flow.nodes[target]
        state.node, state.tries = target, 0
        match node:
            case SayNode():
                out.append(Say(_text(flow, node.text, state.locale), state.locale, node.audio.get(state.locale)))
                target = node.next
            case HoursNode():
                target = node.open if is_open(node, ctx.now) else node.closed
            case BranchNode():
                value = _lookup(node.on, state, ctx)
                target = node.default
                if value is not None:
                    for case in node.cases:
                        if fold(value) in {fold(v) for v in case.values}:
                            target = case.next
                            break
            case SetNode():
                out.append(SetAttributes({k: _substitute(v, state.variables) for k, v in node.attributes.items()}))
                target = node.next
            case MenuNode() | CollectNode() | VerifyNode() | LanguageNode():
                visits = state.visits.get(target, 0) + 1
                state.visits[target] = visits
                if visits > MAX_VISITS:  # a loop through this question has gone round too often
                    target = node.fail if isinstance(node, CollectNode | VerifyNode) else node.no_match
                    if isinstance(node, VerifyNode):
                        out.append(Verified(False, node.against))
                    continue
                out.append(_ask(flow, state.node, node, state.locale))
                return
            case QueueNode():
                out.append(Enqueue(node.queue_id, list(node.skills), node.priority, node.callback_after_seconds,
                                   node.callback_key, dict(state.variables)))
                state.finished = True
                return
            case VoicemailNode():
                prompt = _text(flow, node.prompt, state.locale) if node.prompt else None
                out.append(Voicemail(prompt, node.max_seconds))
                state.finished = True
                return
            case HandoffNode():
                out.append(Handoff(node.queue_id))
                state.finished = True
                return
            case HangupNode():
                out.append(Hangup(_text(flow, node.text, state.locale) if node.text else None))
                state.finished = True
                return
    _broken(state, out, f"more than {MAX_STEPS} steps without a question")


def start(flow: FlowDefinition, ctx: FlowContext) -> Turn:
    """The first turn: the greeting up to the first question (or the end)."""
    state = FlowState(locale=_pick_locale(flow, ctx.locale))
    out: list[Instruction] = []
    _run(flow, state, ctx, out, flow.start)
    return Turn(state, out)


def _choose(node: MenuNode, reply: Reply) -> MenuOption | None:
    if isinstance(reply, Digits):
        return next((o for o in node.options if o.key == reply.digits.strip()), None)
    if not isinstance(reply, Text):
        return None
    said = fold(reply.text)
    if not said:
        return None
    for o in node.options:  # a key typed, or a button's label (in any locale)
        if said == o.key or said in {fold(label) for label in o.label.values()}:
            return o
    padded = f" {said} "
    hits = [o for o in node.options if any(fold(k) and f" {fold(k)} " in padded for k in o.keywords)]
    return hits[0] if len(hits) == 1 else None


def _choose_language(node: LanguageNode, reply: Reply) -> str | None:
    if isinstance(reply, Digits):
        return node.options.get(reply.digits.strip())
    if not isinstance(reply, Text):
        return None
    said = fold(reply.text)
    for key, loc in node.options.items():
        names = {key, fold(loc), fold(LANGUAGE_NAMES.get(loc.split("-")[0], loc))}
        if said in names:
            return loc
    return None


def _valid(node: CollectNode, value: str) -> bool:
    if not node.min_digits <= len(value) <= node.max_digits:
        return False
    if node.validator == "luhn":
        return luhn(value)
    if node.validator == "regex":
        return node.pattern is not None and re.fullmatch(node.pattern, value) is not None
    return True


def _collected(node: CollectNode, reply: Reply) -> str | None:
    if node.validator == "regex" and isinstance(reply, Text):
        value = reply.text.strip()
    else:
        value = _digits_of(reply)
    return value if value is not None and _valid(node, value) else None


def _matches(node: VerifyNode, reply: Reply, ctx: FlowContext) -> bool:
    given = _digits_of(reply) or ""
    expected = "".join(ch for ch in str(ctx.attributes.get(node.against) or "") if ch.isascii() and ch.isdigit())
    if node.digits is not None:
        expected = expected[-node.digits:] if len(expected) >= node.digits else ""
    same = hmac.compare_digest(given.encode(), (expected or "\x00").encode())  # constant time
    return same and bool(expected)


def answer(flow: FlowDefinition, state: FlowState, reply: Reply, ctx: FlowContext) -> Turn:
    """The next turn after ``reply`` to the question ``state`` stands at. The state passed in is not
    changed. A finished flow answers nothing."""
    state = state.model_copy(deep=True)
    out: list[Instruction] = []
    node = flow.nodes.get(state.node) if state.node is not None else None
    if state.finished:
        return Turn(state, out)
    if node is None or node.type not in INPUT_TYPES:
        _broken(state, out, f"the flow stands at '{state.node}', which asks nothing")
        return Turn(state, out)
    silent = isinstance(reply, Timeout | NoInput)
    target: str | None = None
    sorry = "no_input" if silent else "no_match"
    match node:
        case MenuNode():
            option = None if silent else _choose(node, reply)
            if option is not None:
                state.variables[state.node] = option.key
                target = option.next
            fail_to = node.no_match
        case LanguageNode():
            chosen = None if silent else _choose_language(node, reply)
            if chosen is not None:
                state.locale = chosen
                state.variables["locale"] = chosen
                target = node.next
            fail_to = node.no_match
        case CollectNode():
            value = None if silent else _collected(node, reply)
            if value is not None:
                state.variables[node.attribute] = value
                target = node.next
            fail_to = node.fail
            sorry = "no_input" if silent else "invalid"
        case VerifyNode():
            if not silent and _matches(node, reply, ctx):
                state.verified = True
                out.append(Verified(True, node.against))
                target = node.ok
            fail_to = node.fail
            sorry = "no_input" if silent else "mismatch"
    if target is None:
        state.tries += 1
        if state.tries < node.max_tries:
            out.append(_line(sorry, state.locale))
            out.append(_ask(flow, state.node, node, state.locale))  # type: ignore[arg-type]
            return Turn(state, out)
        out.append(_line(sorry, state.locale))
        if isinstance(node, VerifyNode):
            out.append(Verified(False, node.against))
        target = fail_to
    _run(flow, state, ctx, out, target)
    return Turn(state, out)
