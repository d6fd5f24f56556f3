// Threadline supervisors' live view (/admin/live): follows /api/v1/stream through the tab's one socket
// (stream.js: resumes after the last seq, reconnects with backoff) and redraws the board, a partial the server
// renders, when routing or conversations move. Redraws are coalesced: at most one every 400 ms, and
// one asked for while another runs is made after it. A slow poll runs only while the stream is down.
// SLA alerts flash as a toast and highlight their rows. Text from the server goes in as text.
(function () {
  "use strict";
  var board = document.getElementById("live-board");
  if (!board || !window.tlStream) return;
  var boardUrl = board.dataset.boardUrl || "/admin/live/board";
  var MIN_GAP = 400, FALLBACK_POLL = 15000, ALERT_MS = 60000;
  var EVENTS = /^(routing\.(state|sla_alert|task_unroutable|offer|offer_ended|task_picked|wrap_up)|user\.presence_changed|conversation\.(created|updated))$/;
  var live = false, redraws = 0;
  var lastRun = 0, inFlight = false, wanted = false, timer = null;
  var alerts = {};  // conversation id -> {state, queue, until}

  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  // ---- redraws -------------------------------------------------------------------------------------
  function refresh() {
    wanted = true;
    if (inFlight || timer) return;
    timer = setTimeout(run, Math.max(0, lastRun + MIN_GAP - Date.now()));
  }
  function run() {
    timer = null;
    if (!wanted) return;
    wanted = false; inFlight = true; lastRun = Date.now();
    fetch(boardUrl, { credentials: "same-origin", headers: { "HX-Request": "true" } }).then(function (r) {
      if (r.status === 401 || (r.redirected && /\/login$/.test(new URL(r.url).pathname))) {
        location.href = "/login"; throw new Error("logged out");
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.text();
    }).then(function (html) {
      board.innerHTML = html;  // rendered (and escaped) by the server
      primeClock(); tick(); highlight();
      board.dataset.redraws = String(++redraws);
    }).catch(function () { /* the next event or the fallback poll tries again */ }).then(function () {
      inFlight = false;
      if (wanted) refresh();
    });
  }

  // ---- waits tick between redraws -------------------------------------------------------------------
  function primeClock() {
    var c = board.querySelector(".board-clock");
    if (c && c.dataset.skew === undefined) c.dataset.skew = String(Date.now() / 1000 - Number(c.dataset.now));
  }
  function dur(s) {
    s = Math.max(0, Math.floor(s));
    if (s >= 3600) return Math.floor(s / 3600) + "h " + Math.floor(s % 3600 / 60) + "m";
    if (s >= 60) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return s + "s";
  }
  function tick() {
    var c = board.querySelector(".board-clock");
    var now = Date.now() / 1000 - (c && c.dataset.skew ? Number(c.dataset.skew) : 0);
    $all("[data-since]", board).forEach(function (el) { el.textContent = dur(now - Number(el.dataset.since)); });
  }

  // ---- SLA alerts: a toast, and the rows stay highlighted for a minute --------------------------------
  function toast(text, isError) {
    var box = document.getElementById("toasts"); if (!box) return;
    var t = document.createElement("div");
    t.className = "toast sla-toast" + (isError ? " error" : "");
    t.setAttribute("role", "alert");
    t.textContent = text;
    box.appendChild(t);
    setTimeout(function () { t.remove(); }, 8000);
  }
  function highlight() {
    var now = Date.now();
    Object.keys(alerts).forEach(function (id) {
      var a = alerts[id];
      if (a.until < now) { delete alerts[id]; return; }
      $all('tr[data-conversation="' + Number(id) + '"], tr[data-queue="' + Number(a.queue) + '"][data-name]', board).forEach(function (tr) {
        if (tr.dataset.conversation === undefined && tr.classList.contains("sla-breached")) return;  // a queue keeps its worst
        tr.classList.remove("sla-near_breach", "sla-breached");
        tr.classList.add("sla-" + a.state);
      });
    });
  }
  function flash(el) { if (el) { el.classList.remove("sla-flash"); void el.offsetWidth; el.classList.add("sla-flash"); } }
  function onAlert(d) {
    alerts[d.conversation_id] = { state: d.state, queue: d.queue_id, until: Date.now() + ALERT_MS };
    var row = board.querySelector('tr[data-queue="' + Number(d.queue_id) + '"][data-name]');
    var queue = row ? row.dataset.name : "queue " + d.queue_id;
    toast((d.state === "breached" ? "SLA breached: " : "SLA near breach: ") + "conversation #" + d.conversation_id +
      " in " + queue + " has waited " + dur(d.waited_seconds) + " (target " + dur(d.threshold_seconds) + ")",
      d.state === "breached");
    highlight();
    flash(board.querySelector('tr[data-conversation="' + Number(d.conversation_id) + '"]'));
    flash(row);
  }

  // ---- the live stream --------------------------------------------------------------------------------
  function setLive(on) { live = on; document.body.dataset.live = on ? "on" : "off"; }
  window.tlStream.onReady(function (resumed) {
    setLive(true);
    if (resumed) refresh();  // what moved while the stream was down
  });
  window.tlStream.onClose(function (code) {
    setLive(false);
    if (code === 4001) location.href = "/login";
  });

  primeClock();
  setInterval(tick, 1000);
  setInterval(function () { if (!live && !document.hidden) refresh(); }, FALLBACK_POLL);
  window.tlStream.on(function (msg) {
    if (msg.name === "routing.sla_alert" && msg.data) onAlert(msg.data);
    if (EVENTS.test(msg.name)) refresh();
  });
})();
