// Threadline routing offers: listens on /api/v1/stream (the tab's one socket, stream.js) for
// "routing.offer" events addressed to the logged-in agent and shows an accept / reject popup with a
// countdown. Include it once on desk pages, after stream.js (base.html does):
//   <script src="/static/desk/offers.js" defer></script>
// Accepting opens the conversation (/conversations/<id>, or dispatches "threadline:offer-accepted").
(function () {
  "use strict";
  if (window.__tlOffers || !window.tlStream) return;
  window.__tlOffers = true;
  var popups = {};  // offer id -> {el, timer}
  var csrf = null;
  // the offer's clock is the server's Unix time; correct for this machine's clock offset
  var skew = 0;

  function token() {
    if (csrf) return Promise.resolve(csrf);
    var hx = document.body && document.body.getAttribute("hx-headers");
    if (hx) { try { csrf = JSON.parse(hx)["X-CSRF-Token"]; if (csrf) return Promise.resolve(csrf); } catch (e) { /* */ } }
    return fetch("/api/v1/me", { credentials: "same-origin" }).then(function (r) { return r.json(); })
      .then(function (me) { csrf = me.csrf_token; return csrf; });
  }

  function box() {
    var b = document.querySelector(".tl-offers");
    if (!b) { b = document.createElement("div"); b.className = "tl-offers"; b.setAttribute("aria-live", "assertive"); document.body.appendChild(b); }
    return b;
  }

  function close(id) {
    var p = popups[id];
    if (!p) return;
    clearInterval(p.timer);
    p.el.remove();
    delete popups[id];
  }

  function answer(offer, verb) {
    return token().then(function (t) {
      return fetch("/api/v1/routing/offers/" + offer.offer_id + "/" + verb, {
        method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": t }
      });
    }).then(function (r) {
      close(offer.offer_id);
      if (verb === "accept" && r.ok) {
        var ev = new CustomEvent("threadline:offer-accepted", { detail: offer, cancelable: true });
        if (document.dispatchEvent(ev)) location.href = "/conversations/" + offer.conversation_id;
      } else if (!r.ok) {
        r.json().then(function (p) { window.alert(p.detail || ("HTTP " + r.status)); }).catch(function () {});
      }
    });
  }

  function show(offer) {
    if (popups[offer.offer_id]) return;
    var el = document.createElement("div");
    el.className = "tl-offer";
    el.setAttribute("role", "alertdialog");
    var title = document.createElement("b");
    title.textContent = "New " + offer.channel + " conversation" + (offer.contact_name ? " — " + offer.contact_name : "");
    var info = document.createElement("div");
    info.textContent = "Waited " + Math.round(offer.waited_seconds) + " s. Answer within ";
    var count = document.createElement("span");
    count.className = "tl-count";
    info.appendChild(count);
    var accept = document.createElement("button");
    accept.className = "tl-accept"; accept.type = "button"; accept.textContent = "Accept";
    var reject = document.createElement("button");
    reject.className = "tl-reject"; reject.type = "button"; reject.textContent = "Reject";
    accept.onclick = function () { accept.disabled = reject.disabled = true; answer(offer, "accept"); };
    reject.onclick = function () { accept.disabled = reject.disabled = true; answer(offer, "reject"); };
    el.appendChild(title); el.appendChild(info); el.appendChild(accept); el.appendChild(reject);
    box().appendChild(el);
    function tick() {
      var left = Math.max(0, Math.round(offer.expires_at - (Date.now() / 1000 - skew)));
      count.textContent = left + " s";
      if (left <= 0) close(offer.offer_id);
    }
    popups[offer.offer_id] = { el: el, timer: setInterval(tick, 250) };
    tick();
    accept.focus();
  }

  function onEvent(msg) {
    if (msg.name === "routing.offer") {
      skew = Date.now() / 1000 - msg.data.offered_at;  // delivery takes milliseconds: good enough
      if (Math.abs(skew) < 2) skew = 0;
      show(msg.data);
    } else if (msg.name === "routing.offer_ended") {
      close(msg.data.offer_id);
    }
  }

  function start() {
    // offers made while this page was loading
    fetch("/api/v1/routing/offers", { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : []; })
      .then(function (list) {
        list.forEach(function (o) { show({ offer_id: o.offer_id, conversation_id: o.conversation_id, channel: o.channel,
          contact_name: "", waited_seconds: 0, expires_at: o.expires_at, offered_at: Date.now() / 1000 }); });
      }).catch(function () {});
    window.tlStream.on(onEvent);  // not logged in (4001): the stream stays quiet
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
