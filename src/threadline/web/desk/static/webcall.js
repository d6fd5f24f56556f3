/* Threadline desk: calls from the web chat, in the browser (WebRTC). A visitor's call that rings for me
   (call.changed, provider webrtc, offered to me) shows a panel with Answer / Decline and a ring; Answer
   asks GET /api/v1/calls/{id}/media how to connect: peer to peer (answer the visitor's offer) or relayed
   by the server (send an offer, get its answer). Every ICE candidate is gathered before sending (no
   trickle). Mute is local; hold, recording and hang-up are the call bar's (calls.js); when the call ends
   for any reason the media closes here. Text is set as text, never as HTML. */
(function () {
  "use strict";
  var app = document.getElementById("app");
  if (!window.tlStream || !app || !window.RTCPeerConnection) return;
  var me = Number(app.dataset.me);
  var desk = window.tlDesk;  // the desk's small helpers, from calls.js
  if (!desk) return;
  var el = desk.el, api = desk.api, say = desk.say, button = desk.button;
  var current = null;  // {id, video, pc, stream, muted, number, state}

  function panel() {
    var p = document.getElementById("webphone");
    if (!p) {
      p = el("div", { id: "webphone", "class": "softphone", role: "dialog", "aria-label": "Call from the web chat" });
      document.body.appendChild(p);
    }
    return p;
  }

  // a soft ring while a call waits for me (Web Audio; no file)
  var ring = null;
  function ringing(on) {
    if (!on) { if (ring) { clearInterval(ring.timer); ring.ctx.close(); ring = null; } return; }
    if (ring || !window.AudioContext) return;
    var ctx = new AudioContext();
    function beep() {
      var o = ctx.createOscillator(), g = ctx.createGain();
      o.frequency.value = 480; g.gain.value = 0.05;
      o.connect(g); g.connect(ctx.destination);
      o.start(); o.stop(ctx.currentTime + 0.6);
    }
    beep();
    ring = { ctx: ctx, timer: setInterval(beep, 2000) };
  }

  function draw() {
    var p = panel();
    p.textContent = "";
    p.hidden = !current;
    if (!current) return;
    var what = current.video ? "Video call" : "Call";
    if (current.state === "offered" && !current.pc) {
      p.appendChild(el("strong", {}, what + " from the web chat"));
      p.appendChild(el("span", {}, current.number || ""));
      p.appendChild(button("Answer", "primary", answer));
      p.appendChild(button("Decline", "danger", decline));
      return;
    }
    p.appendChild(el("strong", {}, (current.state === "on_hold" ? "On hold · " : "On the call · ") + (current.number || "")));
    p.appendChild(el("span", { "class": "webphone-media" }, current.media === "relay" ? "Relayed and recorded by the server" : "Direct (peer to peer)"));
    if (current.video) {
      var v = el("video", { autoplay: "", playsinline: "", "class": "webphone-video" });
      if (current.remote) v.srcObject = current.remote;
      p.appendChild(v);
    }
    p.appendChild(button(current.muted ? "Unmute" : "Mute", "", function () {
      current.muted = !current.muted;
      current.stream.getAudioTracks().forEach(function (t) { t.enabled = !current.muted && current.state !== "on_hold"; });
      draw();
    }));
    p.appendChild(button("Hang up", "danger", function () {
      return api("POST", "/api/v1/calls/" + current.id + "/hangup").catch(function (e) { say(e.message, true); });
    }));
  }

  function gathered(pc) {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === "complete") return resolve();
      var t = setTimeout(resolve, 4000);
      pc.addEventListener("icegatheringstatechange", function () {
        if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); }
      });
    });
  }
  function audioOut() {
    var a = document.getElementById("webphone-audio");
    if (!a) { a = el("audio", { id: "webphone-audio", autoplay: "" }); document.body.appendChild(a); }
    return a;
  }

  function answer() {
    var call = current; if (!call) return;
    ringing(false);
    return navigator.mediaDevices.getUserMedia({ audio: true, video: !!call.video }).then(function (stream) {
      call.stream = stream;
      return api("GET", "/api/v1/calls/" + call.id + "/media");
    }).then(function (m) {
      call.media = m.media;
      // with a TURN relay set up, the agent's browser uses it only: the visitor never sees the agent's addresses
      var pc = call.pc = new RTCPeerConnection({ iceServers: m.ice_servers || [], iceTransportPolicy: m.relay_only ? "relay" : "all" });
      call.stream.getTracks().forEach(function (t) { pc.addTrack(t, call.stream); });
      pc.ontrack = function (e) {
        var remote = e.streams[0] || new MediaStream([e.track]);
        if (e.track.kind === "audio") audioOut().srcObject = remote;
        else { call.remote = remote; draw(); }
      };
      var tries = 0;
      function connect() {
        if (m.media === "p2p") {
          var offer = m.offer ? Promise.resolve(m) : api("GET", "/api/v1/calls/" + call.id + "/media");
          return offer.then(function (fresh) {
            if (!fresh.offer) { var e = new Error("not yet"); e.status = 409; throw e; }
            return pc.setRemoteDescription({ type: "offer", sdp: fresh.offer });
          }).then(function () { return pc.createAnswer(); })
            .then(function (a) { return pc.setLocalDescription(a); })
            .then(function () { return gathered(pc); })
            .then(function () { return api("POST", "/api/v1/calls/" + call.id + "/media", { type: "answer", sdp: pc.localDescription.sdp }); });
        }
        return pc.createOffer().then(function (o) { return pc.setLocalDescription(o); })
          .then(function () { return gathered(pc); })
          .then(function () { return api("POST", "/api/v1/calls/" + call.id + "/media", { type: "offer", sdp: pc.localDescription.sdp }); })
          .then(function (r) { return pc.setRemoteDescription({ type: "answer", sdp: r.sdp }); });
      }
      function attempt() {  // the visitor's browser may still be gathering: try again a few times
        return connect().catch(function (e) {
          if (e.status === 409 && tries++ < 5 && current === call) return new Promise(function (r) { setTimeout(r, 1000); }).then(attempt);
          throw e;
        });
      }
      return attempt();
    }).then(function () {
      call.state = "connected";
      draw();
    }).catch(function (e) {
      say(e && e.name === "NotAllowedError" ? "Allow the microphone to answer calls." : (e && e.message) || "The call could not connect.", true);
      close();
    });
  }
  function decline() {
    var call = current; if (!call) return;
    ringing(false);
    return api("POST", "/api/v1/calls/" + call.id + "/decline").catch(function (e) { say(e.message, true); }).then(close);
  }
  function close() {
    ringing(false);
    if (current) {
      if (current.stream) current.stream.getTracks().forEach(function (t) { t.stop(); });
      if (current.pc) current.pc.close();
    }
    var a = document.getElementById("webphone-audio"); if (a) a.srcObject = null;
    current = null;
    draw();
  }

  function offered(d) {
    current = { id: d.call_id, video: !!d.video, number: d.number, state: "offered", muted: false };
    ringing(true);
    draw();
  }
  // a call that started ringing before this page was loaded (accepting an offer opens the conversation)
  function check() {
    var m = location.pathname.match(/^\/conversations\/(\d+)/);
    if (!m || current) return;
    api("GET", "/api/v1/calls?conversation_id=" + m[1]).then(function (calls) {
      var c = calls.filter(function (x) { return x.provider === "webrtc" && x.state === "offered" && x.agent_id === me; })[0];
      if (c && !current) offered({ call_id: c.id, video: !!c.video, number: c.from_number });
    }).catch(function () {});
  }
  document.body.addEventListener("htmx:afterSettle", check);
  check();

  window.tlStream.on(function (msg) {
    var d = msg.data || {};
    if (msg.name !== "call.changed" || d.provider !== "webrtc") return;
    if (current && d.call_id === current.id) {
      if (d.state === "ended" || d.agent_id !== me) { close(); return; }  // over, or transferred away
      current.state = d.state;
      if (current.stream) {  // on hold: the customer is not heard, nor hears me
        current.stream.getAudioTracks().forEach(function (t) { t.enabled = !current.muted && d.state !== "on_hold"; });
        var a = document.getElementById("webphone-audio"); if (a) a.muted = d.state === "on_hold";
      }
      draw();
      return;
    }
    if (!current && d.state === "offered" && d.agent_id === me) offered(d);
  });
})();
