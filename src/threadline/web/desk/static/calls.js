/* Threadline desk: calls. The call bar of the open conversation (hold, recording with PCI pause, transfer,
   hang up; then the wrap-up's disposition) over /api/v1/calls, redrawn on the stream's call.changed; and
   the softphone (the vendored Twilio Voice JS SDK, a token from /api/v1/voice/token): incoming calls ring
   in the desk with accept / reject, then mute, keypad and hang up. Text is set as text, never as HTML. */
(function () {
  "use strict";
  var app = document.getElementById("app"), liveBoard = document.getElementById("live-board");
  if (!window.tlStream || (!app && !liveBoard)) return;  // the desk, or the supervisors' live view
  var me = app ? Number(app.dataset.me) : null;
  var csrf = null;
  try { csrf = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"]; } catch (e) { /* */ }

  function el(tag, attrs, text) {
    var n = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function api(method, path, body) {
    var headers = { "Accept": "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, { method: method, credentials: "same-origin", headers: headers,
                         body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (!r.ok) { var e = new Error(data.detail || ("HTTP " + r.status)); e.status = r.status; throw e; }
          return data;
        });
      });
  }
  function say(text, isError) {
    var box = document.getElementById("toasts"); if (!box) return;
    var t = el("div", { "class": "toast" + (isError ? " error" : "") }, text);
    box.appendChild(t);
    setTimeout(function () { t.remove(); }, isError ? 6000 : 2500);
  }
  function openConversation() {
    var m = location.pathname.match(/^\/conversations\/(\d+)/);
    return m ? Number(m[1]) : null;
  }

  // ---- the call bar ---------------------------------------------------------------------------------
  var LIVE = { connected: 1, on_hold: 1 };
  function bar() {
    var b = document.getElementById("call-bar");
    if (!b) {
      var wrap = document.getElementById("timeline-wrap"); if (!wrap || !wrap.parentNode) return null;
      b = el("div", { id: "call-bar", "class": "call-bar", role: "region", "aria-label": "Call" });
      wrap.parentNode.insertBefore(b, wrap);  // in the conversation's column, between its header and timeline
    }
    return b;
  }
  function button(label, cls, onClick) {
    var btn = el("button", { type: "button", "class": "btn small " + (cls || "") }, label);
    btn.addEventListener("click", function () { btn.disabled = true; Promise.resolve(onClick()).finally(function () { btn.disabled = false; }); });
    return btn;
  }
  window.tlDesk = { el: el, api: api, say: say, button: button };  // shared with webcall.js (loaded after)
  function act(call, verb, body, done) {
    return api("POST", "/api/v1/calls/" + call.id + "/" + verb, body)
      .then(function (r) { say(r.detail); if (done) done(); refreshBar(); })
      .catch(function (e) { say(e.message, true); });
  }
  function transferForm(call, b) {
    var form = el("form", { "class": "call-transfer" });
    var kind = el("select", { "aria-label": "Transfer to" });
    var target = el("select", { "aria-label": "Target" });
    var number = el("input", { type: "tel", placeholder: "+34 600 000 000", "aria-label": "Number", hidden: "" });
    var mode = el("select", { "aria-label": "Mode" });
    [["agent", "Agent"], ["queue", "Queue"], ["number", "Number"]].forEach(function (o) { kind.appendChild(el("option", { value: o[0] }, o[1])); });
    [["blind", "Blind"], ["warm", "Warm (3-way)"]].forEach(function (o) { mode.appendChild(el("option", { value: o[0] }, o[1])); });
    var targets = { agents: [], queues: [] };
    function fill() {
      target.textContent = "";
      number.hidden = kind.value !== "number"; target.hidden = kind.value === "number";
      var list = kind.value === "agent" ? targets.agents : targets.queues;
      list.forEach(function (t) { target.appendChild(el("option", { value: t.id }, t.name)); });
      if (!list.length && kind.value !== "number") target.appendChild(el("option", { value: "", disabled: "" }, "nobody available"));
    }
    kind.addEventListener("change", fill);
    api("GET", "/api/v1/calls/" + call.id + "/transfer-targets").then(function (t) { targets = t; fill(); }).catch(function () {});
    form.append(kind, target, number, mode, el("button", { type: "submit", "class": "btn small" }, "Transfer"));
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = { mode: mode.value };
      if (kind.value === "number") body.number = number.value;
      else body[kind.value + "_id"] = Number(target.value);
      act(call, "transfer", body, function () { form.remove(); });
    });
    b.appendChild(form);
  }
  // the queue's disposition codes as a list to pick from; a queue without codes takes any text
  function dispositionField(codes) {
    if (!codes.length) return el("input", { type: "text", required: "", maxlength: "60", placeholder: "Disposition (e.g. resolved, order-status)", "aria-label": "Disposition" });
    var sel = el("select", { required: "", "aria-label": "Disposition" });
    sel.appendChild(el("option", { value: "" }, "Disposition…"));
    codes.forEach(function (c) { sel.appendChild(el("option", { value: c }, c)); });
    return sel;
  }
  function wrapUpForm(call, b) {
    var form = el("form", { "class": "call-wrapup" });
    var code = dispositionField(call.dispositions || []);
    var notes = el("input", { type: "text", maxlength: "2000", placeholder: "Notes", "aria-label": "Notes" });
    form.append(el("strong", {}, "Wrap up the call"), code, notes, el("button", { type: "submit", "class": "btn small" }, "Save"));
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      act(call, "wrap-up", { disposition: code.value, notes: notes.value });
    });
    b.appendChild(form);
  }
  function drawBar(calls) {
    var b = bar(); if (!b) return;
    b.textContent = "";
    var live = calls.filter(function (c) { return LIVE[c.state] && (c.agent_id === me); })[0];
    var toWrap = calls.filter(function (c) { return c.state === "ended" && c.agent_id === me && c.answered_at && !c.disposition; })[0];
    if (live) {
      var held = live.state === "on_hold";
      b.appendChild(el("span", { "class": "call-state" }, (held ? "On hold · " : "On the call · ") + live.from_number));
      if (live.sensitive_locked) b.appendChild(el("span", { "class": "call-locked", title: "The queue asks for a caller verified by the IVR (PIN…) before contact details change or contacts merge" }, "Sensitive actions locked until verified"));
      b.appendChild(button(held ? "Resume" : "Hold", "", function () { return act(live, "hold", { hold: !held }); }));
      if (live.recording_state === "recording") b.appendChild(button("Pause recording", "", function () { return act(live, "recording", { action: "pause" }); }));
      else if (live.recording_state === "paused") b.appendChild(button("Resume recording", "", function () { return act(live, "recording", { action: "resume" }); }));
      else if (live.recording_state === "off") b.appendChild(button("Record", "", function () { return act(live, "recording", { action: "start" }); }));
      b.appendChild(button("Transfer…", "", function () { if (!b.querySelector(".call-transfer")) transferForm(live, b); }));
      b.appendChild(button("Hang up", "danger", function () { return act(live, "hangup"); }));
    } else if (toWrap) {
      wrapUpForm(toWrap, b);
    }
    b.hidden = !b.childNodes.length;
  }
  var barAsked = 0;
  function refreshBar() {
    var id = openConversation(); if (!id || !app) return;
    var n = ++barAsked;  // answers can cross: only the latest question's answer is drawn
    api("GET", "/api/v1/calls?conversation_id=" + id).then(function (calls) { if (n === barAsked) drawBar(calls); })
      .catch(function () {});
  }
  window.tlStream.on(function (msg) {
    var d = msg.data || {};
    if (msg.name === "call.changed" && d.conversation_id === openConversation()) refreshBar();
    if (msg.name === "message.created" && d.message && d.message.conversation_id === openConversation()) refreshBar();
  });
  document.body.addEventListener("htmx:afterSettle", refreshBar);
  if (app) refreshBar();

  // ---- the live view: calls in progress, and a supervisor's listen / whisper / join -------------------
  function drawLive(calls) {
    var box = document.getElementById("live-calls");
    if (!box) {
      box = el("section", { id: "live-calls", "class": "card live-calls", "aria-label": "Calls in progress" });
      liveBoard.parentNode.insertBefore(box, liveBoard.nextSibling);
    }
    box.textContent = "";
    var head = el("div", { "class": "card-head" }); head.appendChild(el("h2", {}, "Calls in progress (" + calls.length + ")"));
    box.appendChild(head);
    var table = el("table", { "class": "table" }), row = el("tr");
    ["Caller", "State", "Agent", "Verified", ""].forEach(function (h) { row.appendChild(el("th", {}, h)); });
    table.appendChild(row);
    if (!calls.length) { var none = el("tr"); none.appendChild(el("td", { colspan: "5", "class": "muted" }, "No calls right now.")); table.appendChild(none); }
    calls.forEach(function (c) {
      var tr = el("tr", { "data-call": c.id });
      tr.appendChild(el("td", {}, c.number));
      tr.appendChild(el("td", {}, c.state.replace("_", " ")));
      tr.appendChild(el("td", {}, c.agent_name || "—"));
      tr.appendChild(el("td", {}, c.verified_by ? "by " + c.verified_by : "no"));
      var td = el("td");
      if ((c.state === "connected" || c.state === "on_hold") && c.provider === "webrtc" && c.media !== "relay") {
        td.appendChild(el("span", { "class": "muted" }, "peer to peer"));  // no audio on the server to listen to
      } else if (c.state === "connected" || c.state === "on_hold") {
        [["listen", "Listen"], ["whisper", "Whisper"], ["barge", "Join"]].forEach(function (m) {
          td.appendChild(button(m[1], "", function () {
            return c.provider === "webrtc" ? monitorBrowser(c, m[0]) : act(c, "monitor", { mode: m[0] });
          }));
        });
      }
      tr.appendChild(td); table.appendChild(tr);
    });
    box.appendChild(table);
  }
  var liveAsked = 0;
  function refreshLive() {
    var n = ++liveAsked;
    api("GET", "/api/v1/calls/live").then(function (calls) { if (n === liveAsked) drawLive(calls); }).catch(function () {});
  }
  if (liveBoard) {
    window.tlStream.on(function (msg) { if (msg.name === "call.changed") refreshLive(); });
    refreshLive();
  }

  // ---- listening to a call in the browser (relayed by the server): the supervisor's own WebRTC leg ----
  var monitoring = null;
  function gatheredIce(pc) {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === "complete") return resolve();
      var t = setTimeout(resolve, 4000);
      pc.addEventListener("icegatheringstatechange", function () { if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); } });
    });
  }
  function stopMonitor() {
    if (!monitoring) return Promise.resolve();
    var m = monitoring; monitoring = null;
    if (m.stream) m.stream.getTracks().forEach(function (t) { t.stop(); });
    m.pc.close();
    var bar = document.getElementById("monitor-bar"); if (bar) bar.remove();
    return api("DELETE", "/api/v1/calls/" + m.call + "/monitor").catch(function () {});
  }
  function monitorBrowser(call, mode) {
    return stopMonitor().then(function () {
      return mode === "listen" ? null : navigator.mediaDevices.getUserMedia({ audio: true });
    }).then(function (stream) {
      var pc = new RTCPeerConnection({ iceServers: [] });
      if (stream) stream.getTracks().forEach(function (t) { pc.addTrack(t, stream); });
      else pc.addTransceiver("audio", { direction: "recvonly" });
      var audio = document.getElementById("monitor-audio");
      if (!audio) { audio = el("audio", { id: "monitor-audio", autoplay: "" }); document.body.appendChild(audio); }
      pc.ontrack = function (e) { audio.srcObject = e.streams[0] || new MediaStream([e.track]); };
      monitoring = { pc: pc, stream: stream, call: call.id };
      return pc.createOffer().then(function (o) { return pc.setLocalDescription(o); })
        .then(function () { return gatheredIce(pc); })
        .then(function () { return api("POST", "/api/v1/calls/" + call.id + "/monitor", { mode: mode, sdp: pc.localDescription.sdp }); })
        .then(function (r) {
          say(r.detail);
          var bar = el("div", { id: "monitor-bar", "class": "softphone", role: "status" });
          bar.append(el("strong", {}, r.detail + " · " + call.number), button("Stop", "danger", stopMonitor));
          document.body.appendChild(bar);
          return pc.setRemoteDescription({ type: "answer", sdp: r.sdp });
        });
    }).catch(function (e) { say(e.message || "Could not listen to the call", true); stopMonitor(); });
  }

  // ---- the softphone ---------------------------------------------------------------------------------
  var device = null, current = null;
  function phone() {
    var p = document.getElementById("softphone");
    if (!p) { p = el("div", { id: "softphone", "class": "softphone", role: "dialog", "aria-label": "Phone" }); document.body.appendChild(p); }
    return p;
  }
  function drawPhone(state, from) {
    var p = phone(); p.textContent = "";
    p.hidden = state === "idle";
    if (state === "idle") return;
    p.appendChild(el("strong", {}, (state === "ringing" ? "Incoming call · " : "On the phone · ") + (from || "")));
    if (state === "ringing") {
      p.appendChild(button("Accept", "primary", function () { current.accept(); drawPhone("active", from); }));
      p.appendChild(button("Reject", "danger", function () { current.reject(); current = null; drawPhone("idle"); }));
      return;
    }
    var muted = current && current.isMuted && current.isMuted();
    p.appendChild(button(muted ? "Unmute" : "Mute", "", function () { current.mute(!muted); drawPhone("active", from); }));
    var pad = el("div", { "class": "keypad", role: "group", "aria-label": "Keypad" });
    "123456789*0#".split("").forEach(function (d) { pad.appendChild(button(d, "key", function () { current.sendDigits(d); })); });
    p.appendChild(pad);
    p.appendChild(button("Hang up", "danger", function () { current.disconnect(); }));
  }
  function startPhone(t) {
    var s = el("script", { src: t.sdk }); s.defer = true;
    s.onload = function () {
      if (!window.Twilio || !window.Twilio.Device) return;
      device = new window.Twilio.Device(t.token, { closeProtection: true });
      device.on("incoming", function (call) {
        current = call;
        var from = call.parameters && call.parameters.From;
        drawPhone("ringing", from);
        call.on("disconnect", function () { current = null; drawPhone("idle"); });
        call.on("cancel", function () { current = null; drawPhone("idle"); });
      });
      device.on("tokenWillExpire", function () {
        api("POST", "/api/v1/voice/token").then(function (n) { device.updateToken(n.token); }).catch(function () {});
      });
      device.on("error", function (err) { say("Phone: " + (err && err.message || "error"), true); });
      device.register();
      document.body.dataset.softphone = "on";
    };
    document.head.appendChild(s);
  }
  api("POST", "/api/v1/voice/token").then(startPhone).catch(function () { /* no phone line with a softphone */ });
})();
