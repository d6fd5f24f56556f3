/*! Threadline web chat widget. No framework, no build step.
 * Embed: <script src="https://your-threadline/widget.js" data-channel="CHANNEL_KEY" async></script>
 * Optional, before the script: window.ThreadlineSettings = {user: {id, hash, name, email}, open: false}
 * (hash = hex HMAC-SHA256 of the user id with the channel's identity secret; see docs/channels/webchat.md).
 * Everything lives in a Shadow DOM, so the host page's CSS cannot break it (nor it the page's).
 * Visitor and agent text is always inserted as text (textContent), never as HTML.
 */
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-channel][src*='widget.js']");
  if (!script || window.__threadlineChat) return;
  window.__threadlineChat = true;
  var CHANNEL = script.getAttribute("data-channel");
  var BASE = (script.getAttribute("data-base") || new URL(script.src, location.href).origin).replace(/\/$/, "");
  var WS_BASE = BASE.replace(/^http/, "ws");
  var SETTINGS = window.ThreadlineSettings || {};
  var KEY = "threadline:" + CHANNEL;
  var HELP_SEARCH = !!((window.ThreadlineSettings || {}).helpSearch || script.getAttribute("data-help-search") === "true");

  /* ---------------------------------------------------------------- strings */
  var STRINGS = {
    en: {
      call: "Call us", videoCall: "Video call", calling: "Calling…", callWaiting: "Waiting for an agent…",
      callRinging: "Ringing…", callConnected: "On the call", callHold: "On hold", callEnded: "Call ended",
      hangUp: "Hang up", mute: "Mute", unmute: "Unmute", micDenied: "Allow the microphone to call us.",
      callBusy: "The agent could not take the call.", callFailed: "The call could not connect.",
      open: "Open chat", close: "Close chat", online: "We typically reply in a few minutes",
      away: "We're away right now", placeholder: "Write a message…", send: "Send", attach: "Attach a file",
      intro: "Before we start, tell us a little about you.", name: "Name", email: "Email", phone: "Phone",
      topic: "Topic", choose: "Choose…", start: "Start chat", required: "Please fill in this field.",
      badEmail: "Please enter a valid email address.", typing: "{name} is typing", agent: "Support",
      you: "You", sending: "Sending…", sent: "Sent", failed: "Not sent. Tap to retry.",
      offlineIntro: "We're not available right now. Leave a message and we'll answer you by email.",
      message: "Message", offlineSend: "Send message", offlineThanks: "Thanks! We'll answer you by email soon.",
      resolved: "This conversation has been closed.", csatAsk: "How would you rate this conversation?",
      csatComment: "Anything you'd like to add? (optional)", csatSend: "Send feedback",
      csatThanks: "Thank you for your feedback!", newChat: "Start a new conversation",
      reconnecting: "Connection lost. Reconnecting…", tooBig: "This file is too large (the limit is {max}).",
      badType: "This type of file can't be sent here.", seen: "Seen", delivered: "Delivered",
      rate: ["Very bad", "Bad", "Okay", "Good", "Excellent"], powered: "Powered by Threadline",
      helpSearch: "Search our help articles", helpNone: "No article found. Write to us below.",
      queue: "You are number {n} in the queue", next: "You're next in the queue", wait: "about {m} min",
      closed: "We're closed right now; we'll answer when we open",
      verifyEmail: "Confirm your email with a code", verifyPhone: "Confirm your phone number with a code",
      verifySent: "We sent a 6-digit code to {value}.", verifyCode: "Code", verifyCheck: "Confirm",
      verifyDone: "Thanks! {value} is confirmed.", verifyWrong: "That code is not right. Please try again.",
      verifyExpired: "This code has expired. Ask for a new one.", verifyTooMany: "Too many attempts. Please try again later.",
      verifyAgain: "Send a new code"
    },
    es: {
      call: "Llámanos", videoCall: "Videollamada", calling: "Llamando…", callWaiting: "Esperando a un agente…",
      callRinging: "Sonando…", callConnected: "En llamada", callHold: "En espera", callEnded: "Llamada terminada",
      hangUp: "Colgar", mute: "Silenciar", unmute: "Activar sonido", micDenied: "Permite el micrófono para llamarnos.",
      callBusy: "El agente no pudo atender la llamada.", callFailed: "No se pudo conectar la llamada.",
      open: "Abrir chat", close: "Cerrar chat", online: "Solemos responder en pocos minutos",
      away: "Ahora no estamos disponibles", placeholder: "Escribe un mensaje…", send: "Enviar",
      attach: "Adjuntar un archivo", intro: "Antes de empezar, cuéntanos un poco sobre ti.", name: "Nombre",
      email: "Correo electrónico", phone: "Teléfono", topic: "Tema", choose: "Elige…", start: "Empezar chat",
      required: "Rellena este campo.", badEmail: "Introduce un correo electrónico válido.",
      typing: "{name} está escribiendo", agent: "Soporte", you: "Tú", sending: "Enviando…", sent: "Enviado",
      failed: "No enviado. Toca para reintentar.",
      offlineIntro: "Ahora no estamos disponibles. Déjanos un mensaje y te responderemos por correo.",
      message: "Mensaje", offlineSend: "Enviar mensaje", offlineThanks: "¡Gracias! Te responderemos por correo pronto.",
      resolved: "Esta conversación se ha cerrado.", csatAsk: "¿Cómo valorarías esta conversación?",
      csatComment: "¿Algo que añadir? (opcional)", csatSend: "Enviar valoración",
      csatThanks: "¡Gracias por tu opinión!", newChat: "Empezar una nueva conversación",
      reconnecting: "Conexión perdida. Reconectando…", tooBig: "El archivo es demasiado grande (límite: {max}).",
      badType: "Este tipo de archivo no se puede enviar aquí.", seen: "Visto", delivered: "Entregado",
      rate: ["Muy mal", "Mal", "Regular", "Bien", "Excelente"], powered: "Con la tecnología de Threadline",
      helpSearch: "Busca en los artículos de ayuda", helpNone: "Ningún artículo coincide. Escríbenos abajo.",
      queue: "Eres el número {n} en la cola", next: "Eres el siguiente en la cola", wait: "unos {m} min",
      closed: "Ahora estamos cerrados; te responderemos cuando abramos",
      verifyEmail: "Confirma tu correo con un código", verifyPhone: "Confirma tu teléfono con un código",
      verifySent: "Hemos enviado un código de 6 cifras a {value}.", verifyCode: "Código", verifyCheck: "Confirmar",
      verifyDone: "¡Gracias! {value} está confirmado.", verifyWrong: "El código no es correcto. Inténtalo de nuevo.",
      verifyExpired: "El código ha caducado. Pide uno nuevo.", verifyTooMany: "Demasiados intentos. Inténtalo más tarde.",
      verifyAgain: "Enviar un código nuevo"
    },
    it: {
      call: "Chiamaci", videoCall: "Videochiamata", calling: "Chiamata in corso…", callWaiting: "In attesa di un operatore…",
      callRinging: "Sta squillando…", callConnected: "In chiamata", callHold: "In attesa", callEnded: "Chiamata terminata",
      hangUp: "Riaggancia", mute: "Disattiva microfono", unmute: "Attiva microfono", micDenied: "Consenti il microfono per chiamarci.",
      callBusy: "L'operatore non ha potuto rispondere.", callFailed: "Impossibile collegare la chiamata.",
      open: "Apri la chat", close: "Chiudi la chat", online: "Di solito rispondiamo in pochi minuti",
      away: "Al momento non siamo disponibili", placeholder: "Scrivi un messaggio…", send: "Invia",
      attach: "Allega un file", intro: "Prima di iniziare, dicci qualcosa di te.", name: "Nome", email: "Email",
      phone: "Telefono", topic: "Argomento", choose: "Scegli…", start: "Inizia la chat",
      required: "Compila questo campo.", badEmail: "Inserisci un indirizzo email valido.",
      typing: "{name} sta scrivendo", agent: "Assistenza", you: "Tu", sending: "Invio…", sent: "Inviato",
      failed: "Non inviato. Tocca per riprovare.",
      offlineIntro: "Al momento non siamo disponibili. Lasciaci un messaggio e ti risponderemo via email.",
      message: "Messaggio", offlineSend: "Invia messaggio", offlineThanks: "Grazie! Ti risponderemo presto via email.",
      resolved: "Questa conversazione è stata chiusa.", csatAsk: "Come valuteresti questa conversazione?",
      csatComment: "Vuoi aggiungere qualcosa? (facoltativo)", csatSend: "Invia la valutazione",
      csatThanks: "Grazie per il tuo parere!", newChat: "Inizia una nuova conversazione",
      reconnecting: "Connessione persa. Riconnessione…", tooBig: "Il file è troppo grande (limite: {max}).",
      badType: "Questo tipo di file non può essere inviato qui.", seen: "Visto", delivered: "Consegnato",
      rate: ["Pessima", "Scarsa", "Discreta", "Buona", "Ottima"], powered: "Realizzato con Threadline",
      helpSearch: "Cerca negli articoli di aiuto", helpNone: "Nessun articolo trovato. Scrivici qui sotto.",
      queue: "Sei il numero {n} in coda", next: "Sei il prossimo in coda", wait: "circa {m} min",
      closed: "Al momento siamo chiusi; ti risponderemo all'apertura",
      verifyEmail: "Conferma la tua email con un codice", verifyPhone: "Conferma il tuo telefono con un codice",
      verifySent: "Abbiamo inviato un codice di 6 cifre a {value}.", verifyCode: "Codice", verifyCheck: "Conferma",
      verifyDone: "Grazie! {value} è confermato.", verifyWrong: "Il codice non è corretto. Riprova.",
      verifyExpired: "Il codice è scaduto. Chiedine uno nuovo.", verifyTooMany: "Troppi tentativi. Riprova più tardi.",
      verifyAgain: "Invia un nuovo codice"
    }
  };
  var T = STRINGS.en, LANG = "en";
  function pickLanguage(allowed) {
    var wanted = (SETTINGS.language ? [SETTINGS.language] : []).concat(navigator.languages || [navigator.language || "en"]);
    for (var i = 0; i < wanted.length; i++) {
      var code = String(wanted[i] || "").slice(0, 2).toLowerCase();
      if (STRINGS[code] && allowed.indexOf(code) >= 0) return code;
    }
    return allowed.indexOf("en") >= 0 || !STRINGS[allowed[0]] ? "en" : allowed[0];
  }
  function fmt(s, vars) { return s.replace(/\{(\w+)\}/g, function (_, k) { return vars[k]; }); }

  /* ---------------------------------------------------------------- storage & helpers */
  function load() { try { return JSON.parse(localStorage.getItem(KEY) || "{}"); } catch (e) { return {}; } }
  function save() { try { localStorage.setItem(KEY, JSON.stringify(store)); } catch (e) { /* private mode */ } }
  var store = load();
  store.profile = store.profile || {};

  function q(params) {
    var out = ["channel=" + encodeURIComponent(CHANNEL)];
    for (var k in params) if (params[k] != null) out.push(k + "=" + encodeURIComponent(params[k]));
    return "?" + out.join("&");
  }
  function api(method, path, body, params) {
    var opts = { method: method, credentials: "omit", mode: "cors" };
    if (body instanceof FormData) opts.body = body;
    else if (body) opts.body = JSON.stringify(body); // text/plain: a CORS "simple request", no preflight
    return fetch(BASE + path + q(params || {}), opts).then(function (r) {
      return r.text().then(function (t) {
        var data = {};
        try { data = t ? JSON.parse(t) : {}; } catch (e) { data = {}; }
        if (!r.ok) { var err = new Error(data.detail || ("HTTP " + r.status)); err.status = r.status; err.data = data; throw err; }
        return data;
      });
    });
  }
  function uid() {
    var a = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function svg(path, size) {
    var s = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    s.setAttribute("viewBox", "0 0 24 24"); s.setAttribute("width", size || 22); s.setAttribute("height", size || 22);
    s.setAttribute("aria-hidden", "true");
    var p = document.createElementNS("http://www.w3.org/2000/svg", "path");
    p.setAttribute("d", path); p.setAttribute("fill", "currentColor");
    s.appendChild(p);
    return s;
  }
  var ICON = {
    chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8.8L4.6 21.4A1 1 0 0 1 3 20.6V6a2 2 0 0 1 1-2Zm3 6.2a1.3 1.3 0 1 0 0 2.6 1.3 1.3 0 0 0 0-2.6Zm5 0a1.3 1.3 0 1 0 0 2.6 1.3 1.3 0 0 0 0-2.6Zm5 0a1.3 1.3 0 1 0 0 2.6 1.3 1.3 0 0 0 0-2.6Z",
    close: "M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4-5.6-5.6L6.4 19 5 17.6l5.6-5.6L5 6.4 6.4 5Z",
    send: "M3.4 20.4 21.8 12.9a1 1 0 0 0 0-1.8L3.4 3.6a1 1 0 0 0-1.4 1.1L4 11l9 1-9 1-2 6.3a1 1 0 0 0 1.4 1.1Z",
    clip: "M16.5 6v11.5a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6H9v9.5a3 3 0 0 0 6 0V5a4.5 4.5 0 0 0-9 0v12.5a6 6 0 0 0 12 0V6h-1.5Z",
    file: "M6 2h8l6 6v12a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2Zm7 1.5V9h5.5L13 3.5Z",
    star: "M12 2.8l2.8 5.8 6.3.9-4.6 4.4 1.1 6.3L12 17.2l-5.6 3 1.1-6.3L2.9 9.5l6.3-.9L12 2.8Z",
    down: "M7.4 8.6 12 13.2l4.6-4.6L18 10l-6 6-6-6 1.4-1.4Z",
    phone: "M6.6 10.8a15.1 15.1 0 0 0 6.6 6.6l2.2-2.2a1 1 0 0 1 1-.25 11.4 11.4 0 0 0 3.6.57 1 1 0 0 1 1 1V20a1 1 0 0 1-1 1A17 17 0 0 1 3 4a1 1 0 0 1 1-1h3.5a1 1 0 0 1 1 1c0 1.25.2 2.45.57 3.57a1 1 0 0 1-.25 1l-2.2 2.23Z",
    video: "M17 10.5V7a1 1 0 0 0-1-1H4a1 1 0 0 0-1 1v10a1 1 0 0 0 1 1h12a1 1 0 0 0 1-1v-3.5l4 4v-11l-4 4Z"
  };
  function sizeText(n) { return n >= 1048576 ? Math.round(n / 1048576) + " MB" : Math.max(1, Math.round(n / 1024)) + " KB"; }
  function timeText(iso) {
    var d = iso ? new Date(iso) : new Date();
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  function initials(name) {
    var parts = String(name || "").trim().split(/\s+/).filter(Boolean);
    return ((parts[0] || "?")[0] + (parts.length > 1 ? parts[parts.length - 1][0] : "")).toUpperCase();
  }

  /* ---------------------------------------------------------------- styles */
  var CSS = [
    ".tl-root{font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;font-size:14px;line-height:1.45;color:#1f2330;text-align:left;letter-spacing:normal;-webkit-font-smoothing:antialiased;position:relative}",
    "*{box-sizing:border-box}",
    "button{font:inherit;cursor:pointer}",
    ".tl-bubble{width:60px;height:60px;border-radius:50%;border:0;background:var(--tl-accent);color:var(--tl-accent-ink);display:flex;align-items:center;justify-content:center;box-shadow:0 8px 24px rgba(20,20,40,.28),0 2px 6px rgba(20,20,40,.18);transition:transform .18s ease,box-shadow .18s ease;position:relative;margin-left:auto}",
    ".tl-left .tl-bubble{margin-left:0}",
    ".tl-bubble:hover{transform:translateY(-2px) scale(1.04);box-shadow:0 12px 28px rgba(20,20,40,.32)}",
    ".tl-bubble:focus-visible,.tl-icon:focus-visible,.tl-send:focus-visible{outline:3px solid rgba(79,70,229,.45);outline-offset:2px}",
    ".tl-badge{position:absolute;top:-3px;right:-3px;min-width:20px;height:20px;border-radius:10px;background:#ef4444;color:#fff;font-size:11px;font-weight:700;display:none;align-items:center;justify-content:center;padding:0 6px;border:2px solid #fff}",
    ".tl-panel{position:absolute;bottom:76px;right:0;width:380px;height:min(600px,calc(100vh - 110px));background:#fff;border-radius:18px;box-shadow:0 18px 50px rgba(20,20,40,.25),0 4px 12px rgba(20,20,40,.12);display:flex;flex-direction:column;overflow:hidden;opacity:0;transform:translateY(12px) scale(.98);transform-origin:bottom right;pointer-events:none;visibility:hidden;transition:opacity .2s ease,transform .2s ease,visibility .2s}",
    ".tl-left .tl-panel{right:auto;left:0;transform-origin:bottom left}",
    ".tl-panel.tl-open{opacity:1;transform:none;pointer-events:auto;visibility:visible}",
    ".tl-head{background:var(--tl-accent);background-image:linear-gradient(135deg,rgba(255,255,255,.16),rgba(0,0,0,.08));color:var(--tl-accent-ink);padding:18px 16px 16px 20px;display:flex;align-items:center;gap:12px;flex:none}",
    ".tl-head-text{flex:1;min-width:0}",
    ".tl-title{font-size:17px;font-weight:650;letter-spacing:-.01em;margin:0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}",
    ".tl-status{font-size:12.5px;opacity:.9;display:flex;align-items:center;gap:6px;margin-top:2px}",
    ".tl-dot{width:8px;height:8px;border-radius:50%;background:#34d399;box-shadow:0 0 0 2px rgba(255,255,255,.35)}",
    ".tl-dot.tl-away{background:#fbbf24}",
    ".tl-icon{width:34px;height:34px;border-radius:50%;border:0;background:rgba(255,255,255,.16);color:inherit;display:flex;align-items:center;justify-content:center;flex:none}",
    ".tl-icon:hover{background:rgba(255,255,255,.28)}",
    ".tl-callbar{display:none;align-items:center;gap:8px;padding:8px 14px;background:#ecfdf5;color:#065f46;border-bottom:1px solid #a7f3d0;font-size:13px;flex:none;flex-wrap:wrap}",
    ".tl-callbar.tl-on{display:flex}.tl-callbar .tl-grow{flex:1}",
    ".tl-help{padding:8px 12px;border-bottom:1px solid #ebebf3;flex:none;background:#fafafe}",
    ".tl-help input{width:100%;box-sizing:border-box;border:1px solid #e3e3ee;border-radius:10px;padding:7px 10px;font:inherit;font-size:13px;background:#fff;color:#1f2330}",
    ".tl-help-list{list-style:none;margin:6px 0 0;padding:0;max-height:180px;overflow:auto}",
    ".tl-help-list li{padding:6px 2px;border-top:1px solid #f0f0f6;font-size:13px}.tl-help-list li:first-child{border-top:0}",
    ".tl-help-list a{color:var(--tl-accent);font-weight:600;text-decoration:none}.tl-help-list p{margin:2px 0 0;color:#5b6072;font-size:12.5px}",
    ".tl-help-list mark{background:#fff2a8;color:inherit}",
    ".tl-callbar button{border:1px solid #a7f3d0;background:#fff;color:#065f46;border-radius:14px;padding:4px 10px;font:inherit;cursor:pointer}",
    ".tl-callbar button.tl-end{background:#dc2626;border-color:#dc2626;color:#fff}",
    ".tl-callbar video{width:100%;max-height:180px;background:#000;border-radius:8px}",
    ".tl-body{flex:1;overflow-y:auto;padding:18px 16px 8px;background:#f7f7fb;display:flex;flex-direction:column;gap:4px;scroll-behavior:smooth}",
    ".tl-row{display:flex;align-items:flex-end;gap:8px;max-width:100%;margin-top:6px}",
    ".tl-row.tl-me{justify-content:flex-end}",
    ".tl-av{width:28px;height:28px;border-radius:50%;background:#e5e7f5;color:#4b5070;font-size:11px;font-weight:700;display:flex;align-items:center;justify-content:center;flex:none}",
    ".tl-col{display:flex;flex-direction:column;max-width:78%;min-width:0}",
    ".tl-me .tl-col{align-items:flex-end}",
    ".tl-who{font-size:11.5px;color:#6b7085;margin:0 0 3px 4px}",
    ".tl-msg{padding:9px 13px;border-radius:16px;white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;background:#fff;color:#1f2330;border:1px solid #ebebf3;border-bottom-left-radius:5px;box-shadow:0 1px 1px rgba(20,20,40,.04)}",
    ".tl-me .tl-msg{background:var(--tl-accent);color:var(--tl-accent-ink);border-color:transparent;border-bottom-left-radius:16px;border-bottom-right-radius:5px}",
    ".tl-meta{font-size:11px;color:#8a8fa3;margin:3px 6px 0}",
    ".tl-failed .tl-meta{color:#dc2626;cursor:pointer}",
    ".tl-pending .tl-msg{opacity:.72}",
    ".tl-att{display:flex;align-items:center;gap:8px;margin-top:6px;padding:8px 10px;border-radius:12px;background:rgba(0,0,0,.05);color:inherit;text-decoration:none;font-size:13px;max-width:240px}",
    ".tl-me .tl-att{background:rgba(255,255,255,.18)}",
    ".tl-att span{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}",
    ".tl-img{display:block;margin-top:6px;max-width:220px;max-height:180px;border-radius:12px;object-fit:cover}",
    ".tl-sys{align-self:center;font-size:12px;color:#6b7085;background:#ececf4;padding:5px 12px;border-radius:999px;margin:10px 0;text-align:center}",
    ".tl-typing{display:none;align-items:center;gap:8px;padding:2px 16px 8px;background:#f7f7fb;font-size:12px;color:#6b7085;flex:none}",
    ".tl-typing.tl-on{display:flex}",
    ".tl-dots{display:inline-flex;gap:3px;background:#fff;border:1px solid #ebebf3;padding:7px 10px;border-radius:14px}",
    ".tl-dots i{width:6px;height:6px;border-radius:50%;background:#9aa0b5;animation:tlb 1.2s infinite ease-in-out}",
    ".tl-dots i:nth-child(2){animation-delay:.15s}.tl-dots i:nth-child(3){animation-delay:.3s}",
    "@keyframes tlb{0%,60%,100%{transform:translateY(0);opacity:.5}30%{transform:translateY(-4px);opacity:1}}",
    ".tl-notice{display:none;padding:8px 14px;font-size:12.5px;background:#fff7ed;color:#9a3412;border-top:1px solid #fed7aa;flex:none}",
    ".tl-notice.tl-on{display:block}",
    ".tl-wait{background:#eef2ff;color:#3730a3;border-color:#e0e7ff}.tl-live{flex:none}",
    ".tl-foot{flex:none;border-top:1px solid #ececf4;background:#fff}",
    ".tl-composer{display:flex;align-items:flex-end;gap:6px;padding:10px 10px 10px 8px}",
    ".tl-composer textarea{flex:1;resize:none;border:1px solid #e1e2ec;border-radius:20px;padding:9px 14px;font:inherit;color:inherit;max-height:120px;min-height:40px;outline:none;background:#fafafd;line-height:1.4}",
    ".tl-composer textarea:focus{border-color:var(--tl-accent);background:#fff;box-shadow:0 0 0 3px rgba(79,70,229,.12)}",
    ".tl-plain{width:38px;height:38px;border:0;background:transparent;color:#7a7f95;border-radius:50%;display:flex;align-items:center;justify-content:center;flex:none}",
    ".tl-plain:hover{background:#f1f1f7;color:#1f2330}",
    ".tl-send{width:40px;height:40px;border:0;border-radius:50%;background:var(--tl-accent);color:var(--tl-accent-ink);display:flex;align-items:center;justify-content:center;flex:none;transition:opacity .15s}",
    ".tl-send:disabled{opacity:.4;cursor:default}",
    ".tl-form{padding:16px 18px 18px;display:flex;flex-direction:column;gap:10px}",
    ".tl-verify{padding:0 14px 10px;font-size:12.5px}.tl-verify .tl-form{padding:4px 0 0}",
    ".tl-link{border:0;background:transparent;color:var(--tl-accent);padding:2px 0;font:inherit;font-weight:600;cursor:pointer;text-decoration:underline}",
    ".tl-form p{margin:0 0 2px;color:#4b5070;font-size:13.5px}",
    ".tl-form label{display:flex;flex-direction:column;gap:4px;font-size:12.5px;font-weight:600;color:#3b4055}",
    ".tl-form input,.tl-form select,.tl-form textarea{font:inherit;font-weight:400;color:#1f2330;border:1px solid #e1e2ec;border-radius:10px;padding:9px 12px;background:#fafafd;outline:none;width:100%}",
    ".tl-form textarea{resize:vertical;min-height:70px}",
    ".tl-form input:focus,.tl-form select:focus,.tl-form textarea:focus{border-color:var(--tl-accent);background:#fff;box-shadow:0 0 0 3px rgba(79,70,229,.12)}",
    ".tl-err{color:#dc2626;font-size:12px;font-weight:400;min-height:0}",
    ".tl-primary{border:0;border-radius:10px;background:var(--tl-accent);color:var(--tl-accent-ink);padding:11px 14px;font-weight:600;margin-top:4px}",
    ".tl-primary:hover{filter:brightness(1.06)}",
    ".tl-primary:disabled{opacity:.5;cursor:default}",
    ".tl-stars{display:flex;gap:6px;justify-content:center;margin:4px 0}",
    ".tl-star{width:44px;height:44px;border-radius:12px;border:0;background:transparent;color:#d5d7e3;display:flex;align-items:center;justify-content:center;transition:transform .12s ease,color .12s ease}",
    ".tl-star:hover{transform:scale(1.12);color:#f5b301}",
    ".tl-star.tl-sel{color:#f5b301}",
    ".tl-hint{text-align:center;font-size:12.5px;color:#6b7085;min-height:18px;margin-top:-4px}",
    ".tl-ask{text-align:center;font-weight:600;color:#1f2330;font-size:14.5px}",
    ".tl-csat{gap:6px;padding:14px 18px 12px}",
    ".tl-csat textarea{min-height:48px;height:48px}",
    ".tl-link{border:0;background:transparent;color:var(--tl-accent);font-weight:600;font-size:13px;padding:6px;align-self:center}",
    ".tl-link:hover{text-decoration:underline}",
    ".tl-thanks{text-align:center;color:#3b4055;padding:6px 0}",
    ".tl-brand{text-align:center;font-size:11px;color:#a3a7b8;padding:0 0 8px}",
    "@media (max-width:480px){.tl-panel{position:fixed;inset:0;width:auto;height:auto;border-radius:0;bottom:0}.tl-open~.tl-bubble{display:none}}"
  ].join("\n");

  /* ---------------------------------------------------------------- state */
  var cfg = null, root = null, ui = {}, ws = null, wsTimer = null, pingTimer = null, lastFrameAt = 0;
  var backoff = 500, lastSeq = null, conv = null, connected = false, opened = false, unread = 0;
  var byId = {}, byClient = {}, outbox = [], flushing = false, receipts = { read: [], delivered: [] }, receiptTimer = null;
  var typingSent = false, typingTimer = null, agentTypingTimer = null, stopped = false;

  function start() {
    api("GET", "/widget/config").then(function (c) {
      cfg = c;
      LANG = pickLanguage(c.languages || ["en"]);
      T = STRINGS[LANG];
      build();
      return startSession();
    }).catch(function (err) {
      if (window.console) console.warn("Threadline chat: " + (err && err.message ? err.message : err));
    });
  }

  function startSession() {
    var user = SETTINGS.user || {};
    return api("POST", "/widget/session", { token: store.token || null, user_id: user.id != null ? String(user.id) : null, user_hash: user.hash || null })
      .then(function (s) {
        if (s.token !== store.token) { store.token = s.token; store.seq = null; save(); }
        store.verified = s.verified;
        pageView();
        return loadHistory();
      });
  }

  // The page the visitor is on joins the customer's journey (the agent's 360 view); once per page.
  function pageView() {
    if (SETTINGS.trackPages === false || !store.token || pageView.sent === location.href) return;
    pageView.sent = location.href;
    api("POST", "/widget/pageview", { token: store.token, url: location.href, title: document.title || "" })
      .then(function (r) { if (r && !r.recorded) pageView.sent = null; }) // not a customer yet: after the first message
      .catch(function () { /* the journey is best-effort */ });
  }

  function loadHistory() {
    return api("GET", "/widget/history", null, { token: store.token }).then(function (h) {
      ui.list.textContent = "";
      byId = {}; byClient = {}; ui.seenRow = null;
      greeting();
      conv = h.conversation;
      (h.messages || []).forEach(function (m) { addMessage(m, true); });
      lastSeq = h.seq;
      renderFooter();
      scrollDown(true);
      connect();
    });
  }

  /* ---------------------------------------------------------------- UI */
  function build() {
    // A custom element (no page rule for div/button reaches it) with inline !important placement.
    var host = document.createElement("threadline-chat");
    host.id = "threadline-chat";
    var side = cfg.position === "left" ? "left" : "right";
    host.style.cssText = "all:initial!important;display:block!important;position:fixed!important;" +
      "z-index:2147483000!important;bottom:20px!important;" + side + ":20px!important;width:auto!important;height:auto!important";
    host.style.setProperty("--tl-accent", cfg.colour);
    host.style.setProperty("--tl-accent-ink", ink(cfg.colour));
    var shadow = host.attachShadow({ mode: "open" });
    var style = document.createElement("style");
    style.textContent = CSS;
    shadow.appendChild(style);
    root = el("div", "tl-root" + (side === "left" ? " tl-left" : ""));
    shadow.appendChild(root);

    var panel = ui.panel = el("div", "tl-panel");
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", cfg.title);
    var head = el("div", "tl-head");
    var headText = el("div", "tl-head-text");
    headText.appendChild(el("h2", "tl-title", cfg.title));
    var status = el("div", "tl-status");
    ui.dot = el("span", "tl-dot" + (cfg.online ? "" : " tl-away"));
    status.appendChild(ui.dot);
    ui.statusText = el("span", null, cfg.online ? T.online : T.away);
    status.appendChild(ui.statusText);
    headText.appendChild(status);
    head.appendChild(headText);
    if (cfg.calls === "voice" || cfg.calls === "video") {  // calls in the browser (WebRTC)
      [["voice", ICON.phone, T.call], ["video", ICON.video, T.videoCall]].forEach(function (b) {
        if (b[0] === "video" && cfg.calls !== "video") return;
        var btn = el("button", "tl-icon tl-call-" + b[0]);
        btn.type = "button";
        btn.setAttribute("aria-label", b[2]); btn.title = b[2];
        btn.appendChild(svg(b[1], 18));
        btn.onclick = function () { startCall(b[0] === "video"); };
        head.appendChild(btn);
      });
    }
    var closeBtn = el("button", "tl-icon");
    closeBtn.type = "button";
    closeBtn.setAttribute("aria-label", T.close);
    closeBtn.appendChild(svg(ICON.down, 22));
    closeBtn.onclick = function () { toggle(false); };
    head.appendChild(closeBtn);
    panel.appendChild(head);
    if (HELP_SEARCH) buildHelpSearch(panel);

    ui.callBar = el("div", "tl-callbar");
    ui.callBar.setAttribute("role", "status");
    panel.appendChild(ui.callBar);
    ui.callAudio = document.createElement("audio");  // the other side's voice (autoplay after the click)
    ui.callAudio.autoplay = true;
    root.appendChild(ui.callAudio);
    ui.list = el("div", "tl-body");
    ui.list.setAttribute("aria-live", "polite");
    panel.appendChild(ui.list);
    ui.typing = el("div", "tl-typing");
    var dots = el("span", "tl-dots");
    dots.appendChild(el("i")); dots.appendChild(el("i")); dots.appendChild(el("i"));
    ui.typing.appendChild(dots);
    ui.typingText = el("span");
    ui.typing.appendChild(ui.typingText);
    panel.appendChild(ui.typing);
    // place in the queue and estimated wait; the live region stays rendered so changes are announced
    var live = el("div", "tl-live");
    live.setAttribute("aria-live", "polite"); live.setAttribute("aria-atomic", "true");
    ui.wait = el("div", "tl-notice tl-wait");
    live.appendChild(ui.wait);
    panel.appendChild(live);
    ui.notice = el("div", "tl-notice");
    ui.notice.setAttribute("role", "status");
    panel.appendChild(ui.notice);
    ui.foot = el("div", "tl-foot");
    panel.appendChild(ui.foot);
    panel.appendChild(el("div", "tl-brand", T.powered));
    root.appendChild(panel);

    var bubble = ui.bubble = el("button", "tl-bubble");
    bubble.type = "button";
    bubble.setAttribute("aria-label", T.open);
    ui.iconChat = svg(ICON.chat, 28);
    ui.iconClose = svg(ICON.close, 26);
    ui.iconClose.style.display = "none";
    bubble.appendChild(ui.iconChat);
    bubble.appendChild(ui.iconClose);
    ui.badge = el("span", "tl-badge");
    bubble.appendChild(ui.badge);
    bubble.onclick = function () { toggle(!opened); };
    root.appendChild(bubble);
    document.body.appendChild(host);

    document.addEventListener("visibilitychange", function () { if (opened && !document.hidden) markAllRead(); });
    window.addEventListener("online", function () { reconnectNow(); flush(); });
    window.addEventListener("offline", function () { showNotice(T.reconnecting); if (ws) ws.close(); });
    if (SETTINGS.open || store.open) toggle(true);
  }

  /* ---------------------------------------------------------------- help articles (the knowledge base) */
  // Opt-in: data-help-search="true" on the script, or ThreadlineSettings.helpSearch. The visitor searches the
  // published public articles before writing; titles and snippets are inserted as text (the snippet's <mark>
  // tags become elements, everything else stays text).
  function buildHelpSearch(panel) {
    var box = el("div", "tl-help");
    var input = document.createElement("input");
    input.type = "search"; input.maxLength = 200; input.placeholder = T.helpSearch;
    input.setAttribute("aria-label", T.helpSearch);
    var list = ui.helpList = el("ul", "tl-help-list");
    list.setAttribute("aria-live", "polite");
    var timer = null, asked = 0;
    input.oninput = function () {
      clearTimeout(timer);
      var text = input.value.trim();
      if (text.length < 3) { list.textContent = ""; return; }
      timer = setTimeout(function () {
        var mine = ++asked;
        api("GET", "/api/v1/kb/public/search", null, { q: text, locale: LANG, limit: 3 }).then(function (r) {
          if (mine === asked) showHelp(r.results || []);
        }).catch(function () { if (mine === asked) list.textContent = ""; });
      }, 250);
    };
    box.appendChild(input);
    box.appendChild(list);
    panel.appendChild(box);
  }
  function unescapeHtml(s) { return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&"); }
  function marked(parent, html) {  // escaped text with <mark> pairs only (the server's snippet_html)
    String(html || "").split(/(<mark>|<\/mark>)/).reduce(function (inMark, part) {
      if (part === "<mark>") return true;
      if (part === "</mark>") return false;
      if (part) parent.appendChild(inMark ? el("mark", null, unescapeHtml(part)) : document.createTextNode(unescapeHtml(part)));
      return inMark;
    }, false);
  }
  function showHelp(results) {
    var list = ui.helpList;
    list.textContent = "";
    if (!results.length) { list.appendChild(el("li", "tl-help-none", T.helpNone)); return; }
    results.forEach(function (h) {
      var li = el("li");
      var a = el("a", null, h.title);
      if (/^https?:\/\//.test(h.url || "")) a.href = h.url;
      a.target = "_blank"; a.rel = "noopener";
      li.appendChild(a);
      var p = el("p");
      marked(p, h.snippet_html);
      li.appendChild(p);
      list.appendChild(li);
    });
  }

  function ink(hex) {
    var n = parseInt(hex.slice(1), 16), r = n >> 16, g = (n >> 8) & 255, b = n & 255;
    return (0.299 * r + 0.587 * g + 0.114 * b) > 170 ? "#111827" : "#ffffff";
  }

  function toggle(open) {
    opened = open;
    store.open = open; save();
    ui.panel.classList.toggle("tl-open", open);
    ui.bubble.setAttribute("aria-label", open ? T.close : T.open);
    ui.bubble.setAttribute("aria-expanded", open ? "true" : "false");
    ui.iconChat.style.display = open ? "none" : "";
    ui.iconClose.style.display = open ? "" : "none";
    if (open) {
      refreshOnline();
      unread = 0; badge();
      markAllRead();
      scrollDown(true);
      var f = ui.foot.querySelector("textarea,input");
      if (f && !f.value) f.focus({ preventScroll: true });
    }
  }
  // agents come and go: check again when the visitor opens the panel (offline form ↔ chat)
  function refreshOnline() {
    api("GET", "/widget/config").then(function (c) {
      if (c.online === cfg.online) return;
      cfg.online = c.online;
      ui.dot.className = "tl-dot" + (c.online ? "" : " tl-away");
      ui.statusText.textContent = c.online ? T.online : T.away;
      renderFooter();
    }).catch(function () { /* keep what we have */ });
  }
  function badge() {
    ui.badge.textContent = unread > 9 ? "9+" : String(unread);
    ui.badge.style.display = unread ? "flex" : "none";
  }
  function showNotice(text) { ui.notice.textContent = text || ""; ui.notice.classList.toggle("tl-on", !!text); }
  function scrollDown(force) {
    var l = ui.list;
    if (force || l.scrollHeight - l.scrollTop - l.clientHeight < 120) l.scrollTop = l.scrollHeight;
  }

  function greeting() {
    if (!cfg.greeting) return;
    var row = el("div", "tl-row tl-them");
    row.appendChild(el("div", "tl-av", initials(cfg.title)));
    var col = el("div", "tl-col");
    col.appendChild(el("div", "tl-msg", cfg.greeting));
    row.appendChild(col);
    ui.list.appendChild(row);
  }

  function system(text) { ui.list.appendChild(el("div", "tl-sys", text)); scrollDown(); }

  /* ---------------------------------------------------------------- messages */
  function fileUrl(url) {  // the visitor's token goes to our own /widget/attachments/ paths only, never elsewhere
    var text = String(url || ""), base = new URL(BASE + "/"), own = null, other = null;
    try { own = /^\/(?!\/)/.test(text) ? new URL("." + text, base) : null; } catch (e) { own = null; }
    if (own && own.origin === base.origin && own.pathname.indexOf(base.pathname + "widget/attachments/") === 0) {
      return own.origin + own.pathname + q({ token: store.token });
    }
    try { other = new URL(text); } catch (e) { other = null; }
    return other && /^https?:$/.test(other.protocol) ? other.href : "#";  // a link a channel gave, as is
  }

  function renderBody(col, m) {
    var text = (m.text || "").trim();
    if (text) col.appendChild(el("div", "tl-msg", text));
    (m.attachments || []).forEach(function (a) {
      var link = el("a", "tl-att");
      link.href = fileUrl(a.url); link.target = "_blank"; link.rel = "noopener noreferrer";
      if (/^image\//.test(a.content_type || "")) {
        var img = el("img", "tl-img"); img.src = link.href; img.alt = a.name || "";
        link.className = ""; link.appendChild(img);
      } else {
        link.appendChild(svg(ICON.file, 18));
        link.appendChild(el("span", null, (a.name || "file") + (a.size ? " · " + sizeText(a.size) : "")));
      }
      if (!text && !/^image\//.test(a.content_type || "")) { var wrap = el("div", "tl-msg"); wrap.appendChild(link); col.appendChild(wrap); }
      else col.appendChild(link);
    });
  }

  function metaText(m) {
    var t = timeText(m.created_at);
    if (m.from === "visitor") return t;
    return t;
  }

  function addMessage(m, quiet) {
    if (byId[m.id]) { updateStatus(m.id, m.status); return; }
    var row = m.client_id && byClient[m.client_id];
    if (row) { // our own message, confirmed
      row.classList.remove("tl-pending", "tl-failed");
      row._meta.textContent = timeText(m.created_at);
      row._m = m;
      byId[m.id] = row;
      noteConversation(m.conversation_id);
      if (m.status === "read") seen(row);
      return;
    }
    row = el("div", "tl-row " + (m.from === "visitor" ? "tl-me" : "tl-them"));
    var col = el("div", "tl-col");
    if (m.from === "agent") {
      row.appendChild(el("div", "tl-av", initials(m.author || T.agent)));
      col.appendChild(el("div", "tl-who", m.author || T.agent));
    }
    renderBody(col, m);
    row._meta = el("div", "tl-meta", metaText(m));
    col.appendChild(row._meta);
    row.appendChild(col);
    row._m = m;
    row.setAttribute("data-id", m.id);
    // keep the server's order: before any later message and any message still being sent
    var next = null;
    for (var c = ui.list.lastElementChild; c && c._m && (!c._m.id || c._m.id > m.id); c = c.previousElementSibling) next = c;
    ui.list.insertBefore(row, next);
    byId[m.id] = row;
    if (m.client_id) byClient[m.client_id] = row;
    noteConversation(m.conversation_id);
    if (m.from === "visitor" && m.status === "read") seen(row);
    if (m.from === "agent") {
      hideAgentTyping(); onQueue({});
      if (!quiet && !opened) { unread++; badge(); }
      receipt(m);
    }
    scrollDown(!quiet);
  }

  function noteConversation(id) {
    if (!id) return;
    if (!conv || conv.id !== id) { conv = { id: id, status: "open", rated: false }; renderFooter(); }
  }

  function updateStatus(id, status) {
    var row = byId[id];
    if (!row || !status) return;
    row._m.status = status;
    if (row._m.from === "agent") receipt(row._m);
    else if (status === "read") seen(row);
  }
  // "Seen" under the visitor's latest message an agent has read
  function seen(row) {
    if (ui.seenRow && ui.seenRow._m.id > row._m.id) return;
    if (ui.seenRow) ui.seenRow._meta.textContent = timeText(ui.seenRow._m.created_at);
    ui.seenRow = row;
    row._meta.textContent = timeText(row._m.created_at) + " · " + T.seen;
  }

  function receipt(m) {
    if (m.from !== "agent" || m.status === "read" || m.status === "queued" || m.status === "failed" || !m.status) return;
    var want = opened && !document.hidden ? "read" : "delivered";
    if (m.receipt === want || m.receipt === "read" || (want === "delivered" && m.status !== "sent")) return;
    m.receipt = want;
    receipts[want].push(m.id);
    clearTimeout(receiptTimer);
    receiptTimer = setTimeout(sendReceipts, 250);
  }
  function markAllRead() { for (var id in byId) if (byId[id]._m) receipt(byId[id]._m); }
  function sendReceipts() {
    ["delivered", "read"].forEach(function (status) {
      var ids = receipts[status];
      if (!ids.length) return;
      receipts[status] = [];
      api("POST", "/widget/receipts", { token: store.token, status: status, message_ids: ids.slice(0, 200) }).catch(function () {
        ids.forEach(function (id) { if (byId[id]) byId[id]._m.receipt = null; });
      });
    });
  }

  /* ---------------------------------------------------------------- sending */
  function queueMessage(text, attachmentIds, extra) {
    var clientId = uid();
    var m = { client_id: clientId, from: "visitor", text: text, attachments: extra && extra.preview || [], created_at: null };
    var row = el("div", "tl-row tl-me tl-pending");
    var col = el("div", "tl-col");
    renderBody(col, m);
    row._meta = el("div", "tl-meta", T.sending);
    col.appendChild(row._meta);
    row.appendChild(col);
    row._m = m;
    row.setAttribute("data-client-id", clientId);
    ui.list.appendChild(row);
    byClient[clientId] = row;
    scrollDown(true);
    var user = SETTINGS.user || {}, profile = {};
    ["name", "email", "phone", "topic"].forEach(function (k) { profile[k] = store.profile[k] || (k !== "topic" && user[k]) || ""; });
    var body = { token: store.token, client_id: clientId, text: text, attachments: attachmentIds || [], profile: profile, offline: !!(extra && extra.offline) };
    outbox.push({ body: body, row: row });
    flush();
    return row;
  }

  function flush() {
    if (flushing || !outbox.length) return;
    flushing = true;
    var item = outbox[0];
    item.body.token = store.token;
    api("POST", "/widget/messages", item.body).then(function (m) {
      outbox.shift();
      flushing = false;
      if (m && m.id) addMessage(m);
      else { item.row.classList.remove("tl-pending"); item.row._meta.textContent = T.sent; }
      if (item.onSent) item.onSent();
      pageView();
      showNotice(connected ? "" : ui.notice.textContent);
      flush();
    }).catch(function (err) {
      flushing = false;
      if (!err.status || err.status >= 500) { setTimeout(flush, 2000); return; } // network: retry, same client id
      outbox.shift();
      item.row.classList.remove("tl-pending");
      item.row.classList.add("tl-failed");
      item.row._meta.textContent = T.failed;
      item.row._meta.onclick = function () {
        item.row.classList.remove("tl-failed"); item.row.classList.add("tl-pending");
        item.row._meta.textContent = T.sending; item.row._meta.onclick = null;
        outbox.push(item); flush();
      };
      showNotice(err.message);
      if (item.onError) item.onError(err);
      flush();
    });
  }

  function sendTyping(on) {
    if (typingSent === on || !conv || !store.token) return;
    typingSent = on;
    api("POST", "/widget/typing", { token: store.token, typing: on }).catch(function () { typingSent = !on; });
  }
  function onInput() {
    sendTyping(true);
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { sendTyping(false); }, 4000);
  }

  function upload(file) {
    var types = (cfg.attachments && cfg.attachments.types) || [];
    var ok = types.some(function (t) { return t === file.type || (/\/\*$/.test(t) && file.type.indexOf(t.slice(0, -1)) === 0); });
    if (!ok) { showNotice(T.badType); return; }
    if (file.size > cfg.attachments.max_bytes) { showNotice(fmt(T.tooBig, { max: sizeText(cfg.attachments.max_bytes) })); return; }
    var fd = new FormData();
    fd.append("file", file, file.name);
    showNotice(T.sending);
    api("POST", "/widget/attachments", fd, { token: store.token }).then(function (a) {
      showNotice("");
      queueMessage("", [a.id], { preview: [{ url: a.url, name: a.name, content_type: a.content_type, size: a.size }] });
    }).catch(function (err) { showNotice(err.message); });
  }

  /* ---------------------------------------------------------------- footers */
  function renderFooter() {
    var kind = conv && conv.status === "resolved" && !conv.rated ? "csat"
      : conv && conv.status === "resolved" && conv.thanks ? "thanks"
      : !conv && !cfg.online && cfg.offline_form ? "offline"
      : !conv && needsPrechat() ? "prechat" : "composer";
    if (kind === ui.footKind) return; // keep what the visitor is typing
    ui.footKind = kind;
    ui.foot.textContent = "";
    if (kind === "csat" || kind === "thanks") { csatForm(); return scrollDown(true); }
    if (kind === "offline") return offlineForm();
    if (kind === "prechat") return prechatForm();
    composer();
  }

  function needsPrechat() {
    if (store.profile.done) return false;
    var fields = cfg.prechat_fields || [];
    return fields.length > 0 && !(store.verified && fields.indexOf("topic") < 0);
  }

  function field(form, name, label, type, required, value) {
    var lab = el("label", null, label + (required ? " *" : ""));
    var input;
    if (type === "select") {
      input = el("select");
      input.appendChild(new Option(T.choose, ""));
      cfg.topics.forEach(function (t) { input.appendChild(new Option(t, t)); });
    } else if (type === "textarea") {
      input = el("textarea");
    } else {
      input = el("input"); input.type = type;
      if (type === "email") input.autocomplete = "email";
      if (name === "name") input.autocomplete = "name";
      if (type === "tel") input.autocomplete = "tel";
    }
    input.name = name;
    if (value) input.value = value;
    if (required) input.required = true;
    var err = el("span", "tl-err");
    lab.appendChild(input); lab.appendChild(err);
    form.appendChild(lab);
    input._err = err;
    return input;
  }

  function validate(inputs) {
    var ok = true;
    inputs.forEach(function (i) {
      var v = i.value.trim(), msg = "";
      if (i.required && !v) msg = T.required;
      else if (i.type === "email" && v && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v)) msg = T.badEmail;
      i._err.textContent = msg;
      if (msg && ok) { ok = false; i.focus(); }
    });
    return ok;
  }

  function prechatForm() {
    var form = el("form", "tl-form tl-prechat");
    form.noValidate = true;
    form.appendChild(el("p", null, T.intro));
    var user = SETTINGS.user || {}, req = cfg.prechat_required || [], inputs = [];
    var kinds = { name: "text", email: "email", phone: "tel", topic: "select" };
    cfg.prechat_fields.forEach(function (f) {
      if (f === "topic" && !(cfg.topics || []).length) return;
      inputs.push(field(form, f, T[f], kinds[f], req.indexOf(f) >= 0, store.profile[f] || user[f]));
    });
    var btn = el("button", "tl-primary", T.start);
    btn.type = "submit";
    form.appendChild(btn);
    form.onsubmit = function (e) {
      e.preventDefault();
      if (!validate(inputs)) return;
      inputs.forEach(function (i) { store.profile[i.name] = i.value.trim(); });
      store.profile.done = true; save();
      renderFooter();
      var ta = ui.foot.querySelector("textarea");
      if (ta) ta.focus();
    };
    ui.foot.appendChild(form);
  }

  function offlineForm() {
    var form = el("form", "tl-form tl-offline");
    form.noValidate = true;
    form.appendChild(el("p", null, T.offlineIntro));
    var user = SETTINGS.user || {};
    var name = field(form, "name", T.name, "text", false, store.profile.name || user.name);
    var email = field(form, "email", T.email, "email", true, store.profile.email || user.email);
    var text = field(form, "message", T.message, "textarea", true, "");
    var btn = el("button", "tl-primary", T.offlineSend);
    btn.type = "submit";
    form.appendChild(btn);
    form.onsubmit = function (e) {
      e.preventDefault();
      if (!validate([name, email, text])) return;
      store.profile.name = name.value.trim(); store.profile.email = email.value.trim(); save();
      btn.disabled = true;
      var row = queueMessage(text.value.trim(), [], { offline: true });
      var item = outbox[outbox.length - 1];
      item.onSent = function () { system(T.offlineThanks); };
      item.onError = function () { btn.disabled = false; };
      text.value = "";
      void row;
    };
    ui.foot.appendChild(form);
  }

  function composer() {
    var box = el("div", "tl-composer");
    var file = el("input");
    file.type = "file"; file.hidden = true;
    file.accept = ((cfg.attachments && cfg.attachments.types) || []).join(",");
    file.onchange = function () { if (file.files[0]) upload(file.files[0]); file.value = ""; };
    var clip = el("button", "tl-plain tl-attach");
    clip.type = "button"; clip.setAttribute("aria-label", T.attach); clip.title = T.attach;
    clip.appendChild(svg(ICON.clip, 20));
    clip.onclick = function () { file.click(); };
    var ta = el("textarea");
    ta.rows = 1; ta.placeholder = T.placeholder; ta.setAttribute("aria-label", T.placeholder);
    ta.maxLength = 10000;
    var send = el("button", "tl-send");
    send.type = "button"; send.setAttribute("aria-label", T.send); send.title = T.send;
    send.appendChild(svg(ICON.send, 18));
    send.disabled = true;
    function grow() { ta.style.height = "auto"; ta.style.height = Math.min(ta.scrollHeight, 120) + "px"; send.disabled = !ta.value.trim(); }
    function go() {
      var v = ta.value.trim();
      if (!v) return;
      ta.value = ""; grow();
      clearTimeout(typingTimer); sendTyping(false);
      queueMessage(v, []);
      ta.focus();
    }
    ta.addEventListener("input", function () { grow(); if (ta.value.trim()) onInput(); });
    ta.addEventListener("keydown", function (e) { if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); go(); } });
    send.onclick = go;
    box.appendChild(file); box.appendChild(clip); box.appendChild(ta); box.appendChild(send);
    ui.foot.appendChild(box);
    verifyOffer();
  }

  // Verification by code: the visitor confirms the e-mail (or phone) they typed with a code sent there;
  // the server then joins them to the customer record of that address.
  function verifyOffer() {
    var kind = store.profile.email ? "email" : store.profile.phone ? "phone" : null;
    var value = kind && store.profile[kind];
    if (!kind || store.confirmed === value || !cfg.verify || cfg.verify.indexOf(kind) < 0) return;
    var bar = el("div", "tl-verify");
    var offer = el("button", "tl-link", kind === "email" ? T.verifyEmail : T.verifyPhone);
    offer.type = "button";
    var msg = el("span", "tl-err");
    function ask() {
      offer.disabled = true;
      api("POST", "/widget/verify/start", { token: store.token, kind: kind, value: value, language: LANG })
        .then(function (r) { codeForm(r.value); })
        .catch(function (err) { offer.disabled = false; msg.textContent = verifyError(err); });
    }
    function codeForm(shown) {
      bar.textContent = "";
      var form = el("form", "tl-form tl-verify-form");
      form.noValidate = true;
      form.appendChild(el("p", null, fmt(T.verifySent, { value: shown })));
      var input = field(form, "code", T.verifyCode, "text", true, "");
      input.inputMode = "numeric"; input.autocomplete = "one-time-code"; input.maxLength = 6;
      var ok = el("button", "tl-primary", T.verifyCheck);
      ok.type = "submit";
      var again = el("button", "tl-link", T.verifyAgain);
      again.type = "button";
      again.onclick = function () { bar.textContent = ""; bar.appendChild(offer); bar.appendChild(msg); ask(); };
      form.appendChild(ok); form.appendChild(again);
      form.onsubmit = function (e) {
        e.preventDefault();
        var code = input.value.replace(/\s/g, "");
        if (!/^[0-9]{6}$/.test(code)) { input._err.textContent = T.verifyWrong; return; }
        ok.disabled = true;
        api("POST", "/widget/verify/check", { token: store.token, code: code }).then(function () {
          store.confirmed = value; save();
          bar.remove();
          system(fmt(T.verifyDone, { value: shown }));
        }).catch(function (err) { ok.disabled = false; input._err.textContent = verifyError(err); });
      };
      bar.appendChild(form);
      input.focus();
    }
    offer.onclick = ask;
    bar.appendChild(offer); bar.appendChild(msg);
    ui.foot.appendChild(bar);
  }
  function verifyError(err) {
    var code = err.data && err.data.code;
    return code === "wrong_code" ? T.verifyWrong : code === "expired" ? T.verifyExpired
      : code === "rate_limited" ? T.verifyTooMany : err.message;
  }

  function csatForm() {
    var form = el("form", "tl-form tl-csat");
    form.noValidate = true;
    if (conv.rated) {
      form.appendChild(el("div", "tl-thanks", T.csatThanks));
    } else {
      form.appendChild(el("div", "tl-ask", T.csatAsk));
      var stars = el("div", "tl-stars"), rating = 0;
      [1, 2, 3, 4, 5].forEach(function (n, i) {
        var b = el("button", "tl-star");
        b.appendChild(svg(ICON.star, 26));
        b.type = "button"; b.title = T.rate[i]; b.setAttribute("aria-label", (i + 1) + " – " + T.rate[i]);
        b.setAttribute("data-rating", i + 1);
        b.onclick = function () {
          rating = i + 1;
          Array.prototype.forEach.call(stars.children, function (s, j) { s.classList.toggle("tl-sel", j <= i); });
          hint.textContent = T.rate[i];
          submit.disabled = false;
        };
        stars.appendChild(b);
      });
      form.appendChild(stars);
      var hint = el("div", "tl-hint", "\u00a0");
      form.appendChild(hint);
      var comment = field(form, "comment", T.csatComment, "textarea", false, "");
      var submit = el("button", "tl-primary", T.csatSend);
      submit.type = "submit"; submit.disabled = true;
      form.appendChild(submit);
      form.onsubmit = function (e) {
        e.preventDefault();
        if (!rating) return;
        submit.disabled = true;
        api("POST", "/widget/csat", { token: store.token, conversation_id: conv.id, rating: rating, comment: comment.value.trim() })
          .then(function () { conv.rated = true; conv.thanks = true; renderFooter(); })
          .catch(function (err) { submit.disabled = false; showNotice(err.message); });
      };
    }
    var again = el("button", "tl-link", T.newChat);
    again.type = "button";
    again.onclick = function () { conv = null; renderFooter(); var t = ui.foot.querySelector("textarea"); if (t) t.focus(); };
    form.appendChild(again);
    ui.foot.appendChild(form);
  }

  /* ---------------------------------------------------------------- calls in the browser */
  // The visitor's browser offers (every ICE candidate gathered first, no trickle); the answer comes back
  // at once when the server relays the call, or later as a call_media frame from the agent's browser.
  var call = null;
  function gathered(pc) {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === "complete") return resolve();
      var t = setTimeout(resolve, 4000);
      pc.addEventListener("icegatheringstatechange", function () {
        if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); }
      });
    });
  }
  function startCall(video) {
    if (call || !navigator.mediaDevices || !window.RTCPeerConnection) return;
    call = { video: video, state: "starting", muted: false };
    drawCall();
    navigator.mediaDevices.getUserMedia({ audio: true, video: video }).then(function (stream) {
      call.stream = stream;
      return (store.token ? Promise.resolve() : startSession()).then(function () {
        return api("POST", "/widget/calls", { token: store.token, video: video, locale: LANG });
      });
    }).then(function (c) {
      if (!call) return;
      call.id = c.id; call.state = c.state; call.media = c.media;
      ringback(c.state === "queued" || c.state === "offered");
      call.beat = setInterval(resyncCall, 10000);  // still here (the server ends a call whose widget went quiet)
      drawCall();
      call.ice = c.ice_servers || [];
      return offerMedia();
    }).catch(function (err) {
      showNotice(err && err.name === "NotAllowedError" ? T.micDenied : (err && err.message) || T.callFailed);
      if (call && call.id) hangUp(); else endCall();
    });
  }
  // peer to peer, nothing plays while the visitor waits: a soft ringback (Web Audio) says the call is on
  function ringback(on) {
    if (!call) return;
    if (!on || call.media !== "p2p") { if (call.ring) { clearInterval(call.ring.t); call.ring.ctx.close(); call.ring = null; } return; }
    if (call.ring || !window.AudioContext) return;
    var ctx = new AudioContext();
    var beep = function () {
      var o = ctx.createOscillator(), g = ctx.createGain();
      o.frequency.value = 425; g.gain.value = 0.04;
      o.connect(g); g.connect(ctx.destination); o.start(); o.stop(ctx.currentTime + 1);
    };
    beep();
    call.ring = { ctx: ctx, t: setInterval(beep, 4000) };
  }
  function offerMedia() {  // a connection with our offer (again after a transfer, peer to peer)
    if (call.pc) call.pc.close();
    var pc = call.pc = new RTCPeerConnection({ iceServers: call.ice || [] });
    call.stream.getTracks().forEach(function (t) { pc.addTrack(t, call.stream); });
    pc.ontrack = function (e) {
      var remote = e.streams[0] || new MediaStream([e.track]);
      if (e.track.kind === "audio") ui.callAudio.srcObject = remote;
      if (e.track.kind === "video" && ui.callVideo) ui.callVideo.srcObject = remote;
    };
    pc.onconnectionstatechange = function () {
      if (call && call.pc === pc && pc.connectionState === "failed" && call.state === "connected") { showNotice(T.callFailed); hangUp(); }
    };
    return pc.createOffer().then(function (o) { return pc.setLocalDescription(o); })
      .then(function () { return gathered(pc); })
      .then(function () {
        if (!call || call.pc !== pc) return {};
        return api("POST", "/widget/calls/" + call.id + "/media", { token: store.token, type: "offer", sdp: pc.localDescription.sdp });
      })
      .then(function (r) { if (r.sdp && call && call.pc === pc) return pc.setRemoteDescription({ type: "answer", sdp: r.sdp }); });
  }
  function onCall(f) {
    if (!call || f.id !== call.id) return;
    var waiting = f.state === "queued" || f.state === "offered";
    if (waiting && call.since && call.media === "p2p" && call.stream) {  // transferred: offer to the next agent
      call.since = null;
      offerMedia().catch(function () {});
    }
    call.state = f.state;
    ringback(waiting);
    if (f.state === "connected" && !call.since) call.since = Date.now();
    if (f.state === "ended") { if (f.end_cause === "rejected") showNotice(T.callBusy); endCall(); } else drawCall();
  }
  function onCallMedia(f) {
    if (!call || f.id !== call.id || f.sdp_type !== "answer" || !call.pc) return;
    if (call.pc.signalingState === "have-local-offer") call.pc.setRemoteDescription({ type: "answer", sdp: f.sdp }).catch(function () {});
  }
  function resyncCall() {  // after a reconnect: the call's state, and the agent's answer if the frame was missed
    if (!call || !call.id) return;
    api("GET", "/widget/calls/" + call.id, null, { token: store.token }).then(function (c) {
      onCall({ id: c.id, state: c.state, end_cause: c.end_cause });
      if (c.answer) onCallMedia({ id: c.id, sdp_type: "answer", sdp: c.answer });
    }).catch(function () {});
  }
  function hangUp() {
    if (call && call.id) api("POST", "/widget/calls/" + call.id + "/hangup", { token: store.token }).catch(function () {});
    endCall();
  }
  function endCall() {
    if (!call) return;
    ringback(false);
    if (call.stream) call.stream.getTracks().forEach(function (t) { t.stop(); });
    if (call.pc) call.pc.close();
    clearInterval(call.timer);
    clearInterval(call.beat);
    ui.callAudio.srcObject = null;
    call = null;
    drawCall();
  }
  function drawCall() {
    var bar = ui.callBar; if (!bar) return;
    bar.textContent = "";
    bar.classList.toggle("tl-on", !!call);
    if (!call) { ui.callVideo = null; return; }
    var label = { starting: T.calling, ringing: T.calling, queued: T.callWaiting, offered: T.callRinging,
                  connected: T.callConnected, on_hold: T.callHold }[call.state] || T.calling;
    var status = el("span", "tl-grow", label);
    bar.appendChild(status);
    clearInterval(call.timer);
    if (call.since && (call.state === "connected" || call.state === "on_hold")) {
      var tick = function () {
        var s = Math.floor((Date.now() - call.since) / 1000);
        status.textContent = label + " · " + Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2);
      };
      tick(); call.timer = setInterval(tick, 1000);
    }
    if (call.stream) {
      var mute = el("button", null, call.muted ? T.unmute : T.mute);
      mute.type = "button";
      mute.setAttribute("aria-pressed", call.muted ? "true" : "false");
      mute.onclick = function () {
        call.muted = !call.muted;
        call.stream.getAudioTracks().forEach(function (t) { t.enabled = !call.muted; });
        drawCall();
      };
      bar.appendChild(mute);
    }
    var end = el("button", "tl-end", T.hangUp);
    end.type = "button";
    end.onclick = hangUp;
    bar.appendChild(end);
    if (call.video) {
      var v = ui.callVideo = document.createElement("video");
      v.autoplay = true; v.playsInline = true;
      if (call.pc) call.pc.getReceivers().forEach(function (r) { if (r.track && r.track.kind === "video") v.srcObject = new MediaStream([r.track]); });
      bar.appendChild(v);
    }
  }
  window.addEventListener("pagehide", function () {  // leaving the page ends the call (not a dead line for the agent)
    if (call && call.id && navigator.sendBeacon) {
      navigator.sendBeacon(BASE + "/widget/calls/" + call.id + "/hangup" + q({}), JSON.stringify({ token: store.token }));
    }
  });

  /* ---------------------------------------------------------------- live */
  function connect() {
    if (stopped || !store.token) return;
    clearTimeout(wsTimer);
    var url = WS_BASE + "/widget/ws" + q({ token: store.token, after: lastSeq });
    var sock;
    try { sock = new WebSocket(url); } catch (e) { return retry(); }
    ws = sock;
    sock.onmessage = function (ev) {
      if (sock !== ws) return;
      lastFrameAt = Date.now();
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f.type === "ready") {
        connected = true; backoff = 500; showNotice("");
        if (lastSeq == null) lastSeq = f.seq;
        flush();
        resyncCall();
        return;
      }
      if (f.seq != null) {
        if (lastSeq != null && f.seq <= lastSeq) return; // seen already
        lastSeq = f.seq;
      }
      if (f.type === "message") addMessage(f.message);
      else if (f.type === "status") updateStatus(f.id, f.status);
      else if (f.type === "conversation") onConversation(f);
      else if (f.type === "typing") onAgentTyping(f);
      else if (f.type === "queue") onQueue(f);
      else if (f.type === "call") onCall(f);
      else if (f.type === "call_media") onCallMedia(f);
    };
    sock.onclose = function (ev) {
      if (sock !== ws) return;
      connected = false; ws = null;
      clearInterval(pingTimer);
      if (ev.code === 4003 || ev.code === 4004) { stopped = true; return; }
      if (ev.code === 4001) { store.token = null; save(); startSession().catch(retry); return; }
      showNotice(T.reconnecting);
      retry();
    };
    sock.onerror = function () { /* onclose follows */ };
    clearInterval(pingTimer);
    lastFrameAt = Date.now();
    pingTimer = setInterval(function () {
      if (sock !== ws) return clearInterval(pingTimer);
      if (Date.now() - lastFrameAt > 50000) { sock.close(); return; } // no pong: a dead connection
      try { sock.send("ping"); } catch (e) { /* closing */ }
    }, 20000);
  }
  function retry() {
    clearTimeout(wsTimer);
    wsTimer = setTimeout(connect, backoff + Math.random() * 300);
    backoff = Math.min(backoff * 2, 10000);
  }
  function reconnectNow() {
    if (stopped) return;
    backoff = 500;
    if (ws && ws.readyState <= 1) { var old = ws; ws = null; connected = false; old.close(); }
    connect();
  }

  function onConversation(f) {
    if (!conv || conv.id !== f.id) { if (f.status === "resolved") return; conv = { id: f.id, status: f.status, rated: false }; }
    var was = conv.status;
    conv.status = f.status;
    if (was !== f.status && (was === "resolved" || f.status === "resolved")) {
      if (f.status === "resolved") { system(T.resolved); hideAgentTyping(); onQueue({}); }
      ui.footKind = null;
      renderFooter();
    }
  }

  // While the conversation waits for an agent: its place in the queue and the estimated wait (or closed)
  function onQueue(f) {
    var t = !f.waiting ? "" : f.closed ? T.closed : !f.position ? ""
      : (f.position === 1 ? T.next : fmt(T.queue, { n: f.position })) +
        (f.ewt != null ? " · " + fmt(T.wait, { m: Math.max(1, Math.round(f.ewt / 60)) }) : "");
    if (ui.wait.textContent !== t) ui.wait.textContent = t;
    ui.wait.classList.toggle("tl-on", !!t);
  }

  function onAgentTyping(f) {
    if (!f.typing) return hideAgentTyping();
    if (f.at && Date.now() - new Date(f.at).getTime() > 30000) return; // an old event from the backlog
    ui.typingText.textContent = fmt(T.typing, { name: f.author || T.agent });
    ui.typing.classList.add("tl-on");
    scrollDown();
    clearTimeout(agentTypingTimer);
    agentTypingTimer = setTimeout(hideAgentTyping, 15000);
  }
  function hideAgentTyping() { ui.typing.classList.remove("tl-on"); clearTimeout(agentTypingTimer); }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
