// Keeps the desk live: listens to the event stream and reloads when something this page shows changes.
(function () {
  "use strict";
  var last = null, retry = 500;
  var text = document.getElementById("text");
  if (text) {
    text.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); text.form.requestSubmit(); }
    });
  }
  function connect() {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/v1/stream" +
      (last !== null ? "?after=" + last : "");
    var ws = new WebSocket(url);
    ws.onmessage = function (ev) {
      var msg = JSON.parse(ev.data);
      if (msg.name === "stream.ready") { last = msg.seq; retry = 500; return; }
      last = msg.seq;
      if (text && text.value.trim()) return; // never throw away what the agent is typing
      if (/^(conversation|message)\./.test(msg.name)) location.reload();
    };
    ws.onclose = function () { setTimeout(connect, retry); retry = Math.min(retry * 2, 10000); };
  }
  connect();
})();
