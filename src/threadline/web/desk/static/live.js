// Threadline desk: live updates from /api/v1/stream (the tab's one socket, stream.js), keyboard shortcuts, the composer (canned responses,
// attachments, reply/note), toasts, the Queue view's clocks and the wrap-up countdown. The server
// renders every piece of HTML; this file only decides which partial to fetch and where it goes.
// Nothing here reloads the page.
(function () {
  "use strict";
  var app = document.getElementById("app");
  if (!app) return;
  var me = Number(app.dataset.me);

  // ---- helpers --------------------------------------------------------------------------------------
  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function openId() { var c = $("#conversation"); return c ? Number(c.dataset.id) : null; }
  function openContact() { var c = $("#conversation"); return c ? Number(c.dataset.contact) : null; }
  function debounce(fn, ms) { var t; return function () { clearTimeout(t); t = setTimeout(fn, ms); }; }
  function getHTML(url) {
    return fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } }).then(function (r) {
      if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.text();
    });
  }
  function swapInto(el, html) { el.innerHTML = html; if (window.htmx) htmx.process(el); localTimes(el); primeClocks(); }
  function isQueueView() { return !!$("#list.queue-list"); }

  // ---- clocks: the Queue view's waits and the wrap-up countdown tick here, from the server's Unix times ----
  // Each partial carries the server's "now" (data-now); the difference to this machine's clock is kept
  // on it when it arrives, so a wrong local clock does not skew the waits.
  function primeClocks() {
    $all("[data-now]").forEach(function (c) {
      if (c.dataset.skew === undefined) c.dataset.skew = String(Date.now() / 1000 - Number(c.dataset.now));
    });
  }
  function serverNow(sel) { var c = $(sel); return Date.now() / 1000 - (c && c.dataset.skew ? Number(c.dataset.skew) : 0); }
  function duration(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h " + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
  }
  function countdown(s) { s = Math.max(0, Math.ceil(s)); return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); }
  function tickClocks() {
    var qnow = serverNow("#list .q-clock");
    $all("#list time[data-since]").forEach(function (el) { el.textContent = duration(qnow - Number(el.dataset.since)); });
    var wnow = serverNow("#wrapups .wrapups-clock");
    $all("#wrapups .wrapup").forEach(function (el) {
      if (!el.dataset.until) return;  // a wrap-up without an end: only Ready ends it
      var left = Number(el.dataset.until) - wnow;
      if (left <= 0) { el.remove(); return; }
      var c = $(".wrapup-count", el); if (c) c.textContent = countdown(left);
    });
  }

  function toast(text, isError) {
    var box = $("#toasts"); if (!box) return;
    var t = document.createElement("div");
    t.className = "toast" + (isError ? " error" : "");
    t.textContent = text;  // text, never HTML
    box.appendChild(t);
    setTimeout(function () { t.remove(); }, isError ? 6000 : 2500);
  }

  function localTimes(root) {
    // Timeline times are rendered in UTC on the server; show them in the agent's time zone.
    $all(".timeline time[datetime], .msg-meta time[datetime]", root).forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      var today = new Date().toDateString() === d.toDateString();
      el.textContent = (today ? "" : d.toLocaleDateString([], { day: "numeric", month: "short" }) + " ") +
        d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      el.title = d.toLocaleString();
    });
  }

  function nearBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 120; }
  function scrollDown(force) {
    var w = $("#timeline-wrap");
    if (w && (force || nearBottom(w))) w.scrollTop = w.scrollHeight;
  }

  // ---- refreshes ------------------------------------------------------------------------------------
  // The conversation list is paged ("Load more" at its end appends the next page, by a keyset cursor).
  // A live refresh redraws it from the top with as many rows as are loaded now ("shown"; the server
  // caps it at a few pages), so rows appended by Load more stay put instead of vanishing; the redraw
  // ends with a fresh Load more whenever more rows exist. The Queue view is not paged.
  function shownRows() { return isQueueView() ? 0 : $all("#list .row").length; }
  function listUrl(shown) {
    return location.pathname + location.search + (shown ? (location.search ? "&" : "?") + "shown=" + shown : "");
  }
  var refreshList = debounce(function () {
    var list = $("#list"); if (!list) return;
    var scroll = list.scrollTop, shown = shownRows();
    fetch(listUrl(shown), { credentials: "same-origin", headers: { "HX-Request": "true", "HX-Target": "list" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        // a page was appended (or is on its way) since this was asked: ask again with all the rows
        if (shownRows() > shown || $("#list-more.htmx-request")) { refreshList(); return; }
        // keep the keyboard where it was (e.g. on a Take button) when the rows are redrawn
        var focused = list.contains(document.activeElement) && document.activeElement.id;
        swapInto(list, html); list.scrollTop = scroll; markActive();
        var again = focused && document.getElementById(focused); if (again) again.focus();
      })
      .catch(function () {});
  }, 120);
  // The Queue view follows the events that move tasks in the agent's queues (agents get no routing.state);
  // several in a burst make one refresh. The router enqueues a new conversation in its next round, so a
  // created conversation is looked at again a moment later.
  var refreshQueue = debounce(function () { if (isQueueView()) refreshList(); refreshCounts(); }, 400);
  var QUEUE_EVENTS = /^(conversation\.(created|updated)|routing\.(task_picked|offer_ended|task_unroutable|sla_alert))$/;
  var refreshWrapups = debounce(function () {
    var box = $("#wrapups"); if (!box) return;
    getHTML("/desk/p/wrapups").then(function (html) { swapInto(box, html); tickClocks(); }).catch(function () {});
  }, 150);
  function endWrapup(conversationId) {
    $all("#wrapups .wrapup").forEach(function (el) { if (Number(el.dataset.conversation) === conversationId) el.remove(); });
  }
  var refreshCounts = debounce(function () { if (window.htmx) htmx.trigger(document.body, "desk:counts"); }, 150);

  var appendChain = Promise.resolve();
  function appendMessages() {
    var id = openId(); if (!id) return;
    appendChain = appendChain.then(function () {
      var tl = $("#timeline"); if (!tl || openId() !== id) return;
      var items = $all("#timeline > li[data-id]");
      var after = items.length ? Number(items[items.length - 1].dataset.id) : 0;
      var wasNear = nearBottom($("#timeline-wrap"));
      return getHTML("/desk/p/conversations/" + id + "/messages?after=" + after).then(function (html) {
        if (openId() !== id) return;
        var tmp = document.createElement("ol");
        tmp.innerHTML = html;
        $all(":scope > li", tmp).forEach(function (li) { if (!document.getElementById(li.id)) tl.appendChild(li); });
        localTimes(tl);
        scrollDown(wasNear);
      });
    }).catch(function () {});
  }
  function reloadTimeline() {
    // after a reconnect: redraw the whole timeline (delivery states may have moved while away)
    var id = openId(); if (!id) return;
    appendChain = appendChain.then(function () {
      return getHTML("/desk/p/conversations/" + id + "/messages?after=0").then(function (html) {
        var tl = $("#timeline"); if (!tl || openId() !== id) return;
        var wasNear = nearBottom($("#timeline-wrap"));
        tl.innerHTML = html; localTimes(tl); scrollDown(wasNear);
      });
    }).catch(function () {});
  }
  function refreshMessage(messageId) {
    // behind any append on its way: a reply's delivery state can change before the append that draws the
    // reply has landed, and that append may carry the older state
    appendChain = appendChain.then(function () {
      var el = document.getElementById("msg-" + messageId); if (!el) return;
      return getHTML("/desk/p/messages/" + messageId).then(function (html) {
        var tmp = document.createElement("ol"); tmp.innerHTML = html;
        var li = tmp.querySelector("li"), now = document.getElementById("msg-" + messageId);
        if (li && now && now.parentNode) { now.replaceWith(li); localTimes(li); }
      });
    }).catch(function () {});
  }
  var pendingHeader = false;
  function headerBusy(head) {
    return $("details[open]", head) || head.contains(document.activeElement) && document.activeElement.tagName !== "BUTTON";
  }
  function refreshHeader() {
    var id = openId(), head = $("#conv-head"); if (!id || !head) return;
    if (headerBusy(head)) { pendingHeader = true; return; }  // never yank a menu out from under the agent
    pendingHeader = false;
    getHTML("/desk/p/conversations/" + id + "/header").then(function (html) {
      if (openId() !== id) return;
      if (headerBusy(head)) { pendingHeader = true; return; }  // a menu opened while the partial was on its way
      swapInto(head, html);
    }).catch(function () {});
  }
  var pendingSidebar = false;
  function refreshSidebar() {
    var id = openId(), side = $("#sidebar"); if (!id || !side) return;
    if (side.contains(document.activeElement) && /INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName)) {
      pendingSidebar = true; return;  // the agent is editing an attribute
    }
    pendingSidebar = false;
    getHTML("/desk/p/conversations/" + id + "/sidebar").then(function (html) {
      if (openId() !== id) return;
      if (side.contains(document.activeElement) && /INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName)) {
        pendingSidebar = true; return;  // editing began while the partial was on its way
      }
      swapInto(side, html);
    }).catch(function () {});
  }
  document.addEventListener("toggle", function (e) {
    if (e.target.tagName === "DETAILS" && !e.target.open && pendingHeader) setTimeout(refreshHeader, 50);
  }, true);
  document.addEventListener("focusout", function () {
    setTimeout(function () { if (pendingSidebar) refreshSidebar(); if (pendingHeader) refreshHeader(); }, 50);
  });
  function flashRow(id) { var r = document.getElementById("row-" + id); if (r) { r.classList.remove("flash"); void r.offsetWidth; r.classList.add("flash"); } }
  function markActive() {
    var id = openId();
    $all("#list .row").forEach(function (r) { r.classList.toggle("active", Number(r.dataset.id) === id); });
  }

  // ---- the live stream ------------------------------------------------------------------------------
  function convIdOf(msg) {
    var d = msg.data || {};
    if (d.conversation) return d.conversation.id;
    if (d.message) return d.message.conversation_id;
    return d.conversation_id;
  }
  var typingTimer = null;
  function onEvent(msg) {
    var name = msg.name, d = msg.data || {}, cid = convIdOf(msg), open = openId();
    if (/^(conversation\.(created|updated)|message\.created)$/.test(name)) {
      if (!isQueueView()) refreshList();  // the Queue view redraws with the routing events below
      refreshCounts();
      if (name !== "conversation.updated" && cid) setTimeout(function () { flashRow(cid); }, 300);
    }
    if (QUEUE_EVENTS.test(name)) {
      refreshQueue();
      if (name === "conversation.created") setTimeout(refreshQueue, 2500);
    }
    if (name === "routing.wrap_up" && d.agent_id === me) {
      if (d.state === "ended") endWrapup(d.conversation_id);
      refreshWrapups();
    }
    if (name === "routing.wrap_up_end_requested" && d.agent_id === me) endWrapup(d.conversation_id);
    if (open && cid === open) {
      if (name === "message.created") appendMessages();
      else if (name === "message.status_changed") refreshMessage(d.message_id);
      else if (name === "message.updated" && d.message) refreshMessage(d.message.id); // e.g. media downloaded
      else if (name === "conversation.updated") { refreshHeader(); refreshSidebar(); }
      else if (name === "conversation.typing" && d.who === "visitor") showTyping(d.typing);
    }
    if (name === "contact.updated" && d.contact && d.contact.id === openContact()) refreshSidebar();
    if ((name === "contact.merged" && d.contact && d.contact.id === openContact()) ||
        (name === "contact.merge_suggested" && (d.contact_id === openContact() || d.other_contact_id === openContact()))) {
      refreshSidebar();
    }
    if (name === "csat.submitted" && d.contact_id === openContact()) refreshSidebar();
    if (name === "call.changed") callPop(d);
    if (name === "user.presence_changed" && d.user_id === me) {
      var sel = $("#presence");
      if (sel && document.activeElement !== sel) {
        var v = d.status === "break" ? "break:" + d.reason : d.status;
        if ($all("option", sel).some(function (o) { return o.value === v; })) sel.value = v;
        sel.className = "presence-select " + d.status;
        var dot = $(".me .presence-dot"); if (dot) dot.className = "presence-dot " + d.status;
      }
    }
  }
  // A call for me (answered on the PBX, connected from a queue): a pop with the caller and how far they
  // are verified, opening their conversation; the conversation opens by itself when none is open.
  function callPop(d, restored) {
    var pop = document.getElementById("call-pop");
    if (d.state === "ended") {
      if (pop && Number(pop.dataset.call) === d.call_id) pop.remove();
      try { var kept = JSON.parse(sessionStorage.getItem("tl-call-pop") || "null");
            if (kept && kept.call_id === d.call_id) sessionStorage.removeItem("tl-call-pop"); } catch (e) {}
      return;
    }
    if (d.agent_id !== me || (d.state !== "connected" && d.state !== "offered")) return;
    try { sessionStorage.setItem("tl-call-pop", JSON.stringify(d)); } catch (e) {}  // survives opening the conversation
    if (!pop) {
      pop = document.createElement("div"); pop.id = "call-pop"; pop.className = "call-pop"; pop.setAttribute("role", "status");
      document.body.appendChild(pop);
    }
    pop.dataset.call = d.call_id;
    pop.textContent = "";
    var who = document.createElement("strong"); who.textContent = "Call with " + d.number;  // text, never HTML
    var ver = document.createElement("span"); ver.className = "call-verified " + (d.verified_by ? "yes" : "no");
    ver.textContent = d.verified_by ? "verified by " + d.verified_by : "unverified";
    var open = document.createElement("a"); open.href = "/conversations/" + d.conversation_id; open.textContent = "Open";
    var close = document.createElement("button"); close.type = "button"; close.textContent = "×"; close.title = "Dismiss";
    close.addEventListener("click", function () { pop.remove(); sessionStorage.removeItem("tl-call-pop"); });
    open.addEventListener("click", function (ev) { ev.preventDefault(); openInPane(open.href); });
    pop.append(who, " ", ver, " ", open, close);
    if (!restored && !openId() && d.state === "connected") openInPane(open.href);
  }
  // open a conversation in the pane without leaving the page: a call in the browser lives in this page
  function openInPane(href) {
    if (window.htmx && document.getElementById("pane")) {
      window.htmx.ajax("GET", href, { target: "#pane" }).then(function () { history.pushState({}, "", href); });
    } else location.assign(href);
  }
  try { var keptPop = JSON.parse(sessionStorage.getItem("tl-call-pop") || "null");
        if (keptPop) callPop(keptPop, true); } catch (e) {}

  function showTyping(on) {
    var t = $("#typing"); if (!t) return;
    clearTimeout(typingTimer);
    t.hidden = !on;
    if (on) { scrollDown(false); typingTimer = setTimeout(function () { t.hidden = true; }, 8000); }
  }
  // the tab's one live stream (stream.js): resumes after a drop, reconnects with backoff
  window.tlStream.onReady(function (resumed) {
    document.body.dataset.live = "on";
    if (resumed) { refreshList(); refreshCounts(); reloadTimeline(); refreshHeader(); refreshSidebar(); refreshWrapups(); }
  });
  window.tlStream.onClose(function (code) {
    document.body.dataset.live = "off";
    if (code === 4001) location.href = "/login";
  });
  window.tlStream.on(onEvent);

  // ---- htmx glue: CSRF header is on <body>; errors become toasts; actions refresh what they touched ----
  document.body.addEventListener("htmx:configRequest", function (e) {
    // times typed in datetime-local inputs are local: tell the server the offset
    if ("snooze_until" in e.detail.parameters) e.detail.parameters.tz_offset = String(new Date().getTimezoneOffset());
  });
  document.body.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr, text = "Something went wrong (" + xhr.status + ")";
    try { var p = JSON.parse(xhr.responseText); text = p.detail || p.title || text; } catch (err) { /* not JSON */ }
    if (xhr.status === 401) { location.href = "/login"; return; }
    toast(text, true);
  });
  document.body.addEventListener("htmx:sendError", function () { toast("Cannot reach Threadline; retrying when the network is back.", true); });
  document.body.addEventListener("desk:changed", function (e) {
    var d = e.detail || {};
    if (d.toast) toast(d.toast);
    if (d.conversation_id && d.conversation_id === openId()) { appendMessages(); refreshHeader(); refreshSidebar(); }
    if (d.contact_id && d.contact_id === openContact()) {
      if (document.activeElement && document.activeElement.blur) document.activeElement.blur();
      refreshHeader(); refreshSidebar();
    }
    $all("details.menu[open]").forEach(function (m) { m.open = false; });
    refreshList(); refreshCounts();
  });
  document.body.addEventListener("desk:wrapup-ended", function (e) {
    // after htmx has dispatched every event of the response on the Ready button, which this removes
    var id = (e.detail || {}).conversation_id; setTimeout(function () { endWrapup(id); }, 0);
  });
  document.body.addEventListener("htmx:afterRequest", function (e) {
    var form = e.detail.elt;
    if (form && form.id === "composer" && e.detail.successful) {
      form.reset(); setMode("reply"); $("#file-names").textContent = "";
      var ta = $("#composer-text"); if (ta) ta.focus();
    }
  });
  document.body.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail.target && e.detail.target.id === "pane") {
      var c = $("#conversation");
      app.dataset.open = c ? c.dataset.id : "";
      document.title = (c ? ($(".conv-title h2") || {}).textContent.trim() + " · " : "") + "Threadline";
      markActive(); localTimes(e.detail.target); scrollDown(true);
    }
    if (e.detail.target && e.detail.target.id === "list") markActive();
  });
  // a page appended by Load more replaces the button, its own target (htmx then announces the request
  // from #list, the button being gone): mark the open conversation among the new rows
  function fromMore(e) { return !!(e.detail.target && e.detail.target.id === "list-more"); }
  document.body.addEventListener("htmx:afterRequest", function (e) { if (fromMore(e)) markActive(); });

  // ---- composer: reply/note, Ctrl+Enter, canned responses, attachment names ---------------------------
  function setMode(mode) {
    var form = $("#composer"); if (!form) return;
    form.dataset.mode = mode;
    var radio = $("input[name=kind][value=" + mode + "]", form); if (radio) radio.checked = true;
    var ta = $("#composer-text");
    if (ta) ta.placeholder = mode === "note" ? "Write an internal note (only your team sees it)…" :
      "Write a reply…  Type / for canned responses, Ctrl+Enter to send";
    var label = $(".send-label", form); if (label) label.textContent = mode === "note" ? "Add note" : "Send";
  }
  document.addEventListener("change", function (e) {
    if (e.target.name === "kind" && e.target.closest("#composer")) setMode(e.target.value);
    if (e.target.id === "composer-files") {  // the server's limits (data-max-*), said before anything is sent
      var input = e.target, files = Array.prototype.slice.call(input.files), names = $("#file-names");
      var each = +input.dataset.maxFile, all = +input.dataset.maxTotal, count = +input.dataset.maxFiles;
      var total = files.reduce(function (n, f) { return n + f.size; }, 0);
      var big = files.filter(function (f) { return each && f.size > each; });
      var problem = big.length ? big[0].name + " is larger than " + Math.round(each / 1e6) + " MB" :
        (all && total > all) ? "the files add up to more than " + Math.round(all / 1e6) + " MB" :
        (count && files.length > count) ? "at most " + count + " files" : "";
      names.textContent = problem || files.map(function (f) { return f.name; }).join(", ");
      names.classList.toggle("bad", !!problem);
    }
  });
  var cannedSel = 0;
  function cannedList() { var el = $("#composer"); try { return el ? JSON.parse(el.dataset.canned || "[]") : []; } catch (e) { return []; } }
  function cannedMatches(ta) {
    var m = /^\/([a-z0-9_\-]*)$/i.exec(ta.value.trim() === ta.value ? ta.value : "");
    if (!m) return null;
    var q = m[1].toLowerCase();
    return cannedList().filter(function (c) { return c.shortcut.indexOf(q) === 0 || (c.title || "").toLowerCase().indexOf(q) >= 0; });
  }
  function renderCanned(ta) {
    var menu = $("#canned-menu"); if (!menu) return;
    var items = cannedMatches(ta);
    if (!items || !items.length) { menu.hidden = true; menu.textContent = ""; return; }
    cannedSel = Math.min(cannedSel, items.length - 1);
    menu.textContent = "";
    items.forEach(function (c, i) {
      var li = document.createElement("li");
      li.setAttribute("role", "option"); li.setAttribute("aria-selected", i === cannedSel ? "true" : "false");
      li.dataset.shortcut = c.shortcut;
      var sc = document.createElement("span"); sc.className = "sc"; sc.textContent = "/" + c.shortcut + (c.title ? "  ·  " + c.title : "");
      var pv = document.createElement("span"); pv.className = "pv"; pv.textContent = c.text;
      li.appendChild(sc); li.appendChild(pv);
      li.addEventListener("mousedown", function (ev) { ev.preventDefault(); expandCanned(ta, c); });
      menu.appendChild(li);
    });
    menu.hidden = false;
  }
  function expandCanned(ta, c) {
    var name = ($(".conv-title h2") || {}).textContent || "";
    ta.value = c.text.replace(/\{\{\s*name\s*\}\}/g, name.trim().split(/\s+/)[0] || "");
    var menu = $("#canned-menu"); if (menu) { menu.hidden = true; menu.textContent = ""; }
    ta.focus(); ta.setSelectionRange(ta.value.length, ta.value.length);
  }
  function expandExact(ta) {
    // "/shortcut" followed by space or Tab expands when it names a canned response exactly.
    var m = /^\/([a-z0-9_\-]+)$/i.exec(ta.value);
    if (!m) return false;
    var hit = cannedList().filter(function (c) { return c.shortcut === m[1].toLowerCase(); })[0];
    if (hit) { expandCanned(ta, hit); return true; }
    return false;
  }
  document.addEventListener("input", function (e) {
    if (e.target.id === "composer-text") { cannedSel = 0; renderCanned(e.target); sendTyping(); }
  });
  document.addEventListener("keydown", function (e) {
    var ta = e.target;
    if (ta.id !== "composer-text") return;
    var menu = $("#canned-menu"), open = menu && !menu.hidden;
    if (open && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
      e.preventDefault(); var n = menu.children.length;
      cannedSel = (cannedSel + (e.key === "ArrowDown" ? 1 : n - 1)) % n; renderCanned(ta); return;
    }
    if (open && (e.key === "Enter" || e.key === "Tab") && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      var li = menu.children[cannedSel];
      var c = cannedList().filter(function (x) { return li && x.shortcut === li.dataset.shortcut; })[0];
      if (c) expandCanned(ta, c); return;
    }
    if ((e.key === " " || e.key === "Tab") && expandExact(ta)) { e.preventDefault(); return; }
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); ta.form.requestSubmit(); return; }
    if (e.key === "Escape") { if (open) { menu.hidden = true; } else { ta.blur(); } }
  });

  // Typing indicator towards the visitor, when the server offers it (data-typing on the app): "typing"
  // when the agent starts, "stopped" after 4 s without a key or when the reply is sent.
  var typingOn = false, typingIdle = null, typingConv = null;
  function postTyping(id, on) {
    fetch("/api/v1/conversations/" + id + "/typing", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() }, body: JSON.stringify({ typing: on }) })
      .catch(function () {});
  }
  function stopTyping() {
    clearTimeout(typingIdle);
    if (typingOn && typingConv) postTyping(typingConv, false);
    typingOn = false;
  }
  function sendTyping() {
    var id = openId(); if (!id || app.dataset.typing !== "on") return;
    var form = $("#composer"); if (form && form.dataset.mode === "note") return;
    if (typingOn && typingConv !== id) stopTyping();
    if (!typingOn) { typingOn = true; typingConv = id; postTyping(id, true); }
    clearTimeout(typingIdle); typingIdle = setTimeout(stopTyping, 4000);
  }
  document.addEventListener("submit", function (e) { if (e.target.id === "composer") stopTyping(); }, true);

  // ---- keyboard shortcuts -----------------------------------------------------------------------------
  function inField(el) { return el && (/INPUT|TEXTAREA|SELECT/.test(el.tagName) || el.isContentEditable); }
  function move(delta) {
    var rows = $all("#list .row"); if (!rows.length) return;
    var idx = rows.findIndex(function (r) { return Number(r.dataset.id) === openId(); });
    var more = $("#list-more");
    if (delta > 0 && idx === rows.length - 1 && more) {
      // j on the last loaded row: load the next page, then move onto its first row
      var onSwap = function (ev) {
        if (ev.detail.target !== more) return;
        document.body.removeEventListener("htmx:afterRequest", onSwap);
        if (ev.detail.successful) move(1);
      };
      document.body.addEventListener("htmx:afterRequest", onSwap);
      if (!more.classList.contains("htmx-request")) more.click();
      return;
    }
    var next = rows[Math.max(0, Math.min(rows.length - 1, idx < 0 ? 0 : idx + delta))];
    var link = next && (next.matches("a") ? next : $("a.qrow-link", next));  // Queue rows hold a link and a button
    if (!link) return;
    if (window.htmx) htmx.process(link);  // rows just appended by Load more may not be processed yet
    link.click(); next.scrollIntoView({ block: "nearest" });
  }
  function csrfToken() { return (JSON.parse(document.body.getAttribute("hx-headers") || "{}"))["X-CSRF-Token"]; }
  function post(btn) {
    // what clicking an hx-post button does, without waiting for htmx to have processed a fresh swap
    if (!window.htmx) { btn.click(); return; }
    htmx.ajax("POST", btn.getAttribute("hx-post"), { source: btn, swap: "none",
      values: JSON.parse(btn.getAttribute("hx-vals") || "{}"), headers: { "X-CSRF-Token": csrfToken() } });
  }
  function help() { var d = $("#help"); if (d) { if (d.open) d.close(); else d.showModal(); } }
  document.addEventListener("click", function (e) {
    var t = e.target.closest("[data-action=help]"); if (t) help();
    // a click outside an open menu closes it
    $all("details.menu[open]").forEach(function (m) { if (!m.contains(e.target)) m.open = false; });
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") {  // Escape closes an open menu and gives focus back to its button
      var menus = $all("details.menu[open]");
      menus.forEach(function (m) { m.open = false; var s = $("summary", m); if (s) s.focus(); });
      if (menus.length) { e.preventDefault(); return; }
    }
    if (e.ctrlKey || e.metaKey || e.altKey || inField(e.target)) return;
    var key = e.key, btn;
    if (key === "j") move(1);
    else if (key === "k") move(-1);
    else if (key === "r" || key === "n") {
      if (!$("#composer-text")) return;
      setMode(key === "n" ? "note" : "reply"); $("#composer-text").focus();
    } else if (key === "e") { btn = $("#act-resolve"); if (btn) post(btn); }
    else if (key === "a") { btn = $("#act-assign-me"); if (btn) post(btn); else toast("Already assigned to you"); }
    else if (key === "/") { var s = $("#search"); if (s) s.focus(); }
    else if (key === "q") {
      if (isQueueView()) { btn = $("#list .take"); if (btn) btn.focus(); }
      else { var q = $("[data-count-for=waiting]"); if (q) q.click(); }
    } else if (key === "t") {
      if (!isQueueView()) return;
      var row = $("#list .row.active") || $("#list .row");  // the open one if it waits here, else the next
      btn = row && $(".take", row);
      if (btn) post(btn); else toast("Nobody is waiting in your queues");
    }
    else if (key === "?") help();
    else return;
    e.preventDefault();
  });

  localTimes(document);
  primeClocks();
  setInterval(tickClocks, 1000);
  // a slow poll as a fallback: positions and wait estimates move without an event an agent receives
  setInterval(function () { if (isQueueView() && !document.hidden) { refreshList(); refreshCounts(); } }, 10000);
  scrollDown(true);
})();
