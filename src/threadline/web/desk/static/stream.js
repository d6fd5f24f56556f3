// Threadline desk: the tab's one live stream (/api/v1/stream), shared by the desk's scripts (live.js,
// offers.js, admin_live.js) through a small dispatcher, so a tab opens one websocket, not one per script.
// Loaded (deferred) in <head> by base.html, before the scripts that use it:
//   tlStream.on(function (msg) { ... })        every event: {seq, name, data, created_at}
//   tlStream.onReady(function (resumed) { })   connected; resumed: after a drop (refetch what may have moved)
//   tlStream.onClose(function (code) { })      the socket closed (4001: logged out; 4003: origin refused)
// The socket opens once the page has loaded and somebody listens; it resumes after the last seq seen
// (?after=), reconnects with backoff, and stays closed after 4001/4003 (retrying cannot help).
(function () {
  "use strict";
  if (window.tlStream) return;
  var handlers = [], readies = [], closes = [];
  var lastSeq = null, retry = 500, started = false, loaded = document.readyState === "complete";

  function each(list, arg) {
    list.slice().forEach(function (fn) {
      try { fn(arg); } catch (e) { setTimeout(function () { throw e; }, 0); }  // one script's bug stays its own
    });
  }
  function connect() {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/v1/stream" +
      (lastSeq !== null ? "?after=" + lastSeq : "");
    var socket = new WebSocket(url);
    socket.onmessage = function (ev) {
      var msg; try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.name === "stream.ready") {
        var resumed = lastSeq !== null;
        lastSeq = msg.seq; retry = 500;
        each(readies, resumed);
        return;
      }
      if (typeof msg.seq === "number") lastSeq = msg.seq;
      each(handlers, msg);
    };
    socket.onclose = function (ev) {
      each(closes, ev.code);
      if (ev.code === 4001 || ev.code === 4003) return;
      setTimeout(connect, retry); retry = Math.min(retry * 2, 10000);
    };
  }
  function start() {
    if (started || !loaded || !handlers.length) return;
    started = true;
    connect();
  }
  // after every deferred script has registered its handlers
  if (!loaded) document.addEventListener("DOMContentLoaded", function () { loaded = true; start(); });

  window.tlStream = {
    on: function (fn) { handlers.push(fn); start(); },
    onReady: function (fn) { readies.push(fn); },
    onClose: function (fn) { closes.push(fn); }
  };
})();
