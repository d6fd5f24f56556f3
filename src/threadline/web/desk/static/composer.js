/* The composer knows the channel it replies on: text length, SMS segments, the WhatsApp 24-hour window
 * and opt-outs, said before sending (GET /api/v1/channels/{id}/limits). The server refuses anyway. */
(function () {
  "use strict";
  var timer = null, seq = 0;

  function channelOf(form) {
    var select = form.querySelector("#reply-target");
    if (select && select.value) return select.value.split(":")[0];
    return form.dataset.channel || "";
  }

  function identityOf(form) {  // the address picked in "via" (channel:identity), if there is a choice
    var select = form.querySelector("#reply-target");
    return select && select.value ? (select.value.split(":")[1] || "") : "";
  }

  function render(box, data) {
    box.textContent = "";
    box.classList.remove("bad");
    if (!data) return;
    var parts = [];
    if (data.max_text_length && data.max_text_length < 65536) parts.push(data.text_length + "/" + data.max_text_length);
    if (data.sms) parts.push(data.sms.segments + " SMS" + (data.sms.encoding === "UCS-2" ? " (Unicode)" : ""));
    if (data.window && data.window.open && data.window.closes_at) {
      parts.push("window open until " + new Date(data.window.closes_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    }
    Object.keys(data.consent || {}).forEach(function (scope) {  // opt-outs elsewhere: said, not a problem here
      var c = data.consent[scope];
      if (scope !== data.consent_scope && c && c.status === "opted_out") parts.push("opted out of " + c.title + " only");
    });
    var text = parts.join(" · ");
    if (data.problems && data.problems.length) {
      text = (text ? text + " · " : "") + data.problems.join("; ");
      box.classList.add("bad");
    }
    box.textContent = text;
  }

  function check() {
    var form = document.getElementById("composer");
    var box = document.getElementById("composer-limits");
    if (!form || !box) return;
    var kind = form.querySelector("input[name=kind]:checked");
    var channel = channelOf(form);
    if (!channel || (kind && kind.value === "note")) { render(box, null); return; }
    var text = (form.querySelector("#composer-text") || {}).value || "";
    var mine = ++seq;
    var url = "/api/v1/channels/" + encodeURIComponent(channel) + "/limits?conversation_id=" +
      encodeURIComponent(form.dataset.conversation) + "&text=" + encodeURIComponent(text.slice(0, 65536));
    var identity = identityOf(form);
    if (identity) url += "&identity_id=" + encodeURIComponent(identity);
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (mine === seq) render(box, data); })
      .catch(function () { if (mine === seq) render(box, null); });
  }

  function soon() { clearTimeout(timer); timer = setTimeout(check, 250); }

  document.addEventListener("input", function (e) { if (e.target && e.target.id === "composer-text") soon(); });
  document.addEventListener("change", function (e) {
    if (e.target && (e.target.id === "reply-target" || e.target.name === "kind")) check();
  });
  document.addEventListener("htmx:afterSettle", function () { soon(); });
  document.addEventListener("DOMContentLoaded", check);
})();
