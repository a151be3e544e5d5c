// StoreSense checkout screen. The server sends complete snapshots over Server-Sent Events and has
// already removed the numbers of every stale or unavailable lane; this page only renders them.
// Its own guard: if no snapshot arrives for a few heartbeats the server (or the network) is
// gone, so every lane shows "unavailable" until snapshots flow again. Reconnects by itself.
"use strict";

(function () {
  var FALLBACK = {
    languages: ["zh", "en"],
    text: {
      title: ["收银台", "Checkout"],
      connecting: ["连接中…", "Connecting…"],
      banner_unavailable: ["排队信息暂不可用，请咨询店员", "Queue information unavailable — please ask our staff"],
    },
  };
  var MIN_WATCHDOG_MS = 3000;
  var MAX_BACKOFF_MS = 10000;

  var snapshot = null;
  var lastMessageMs = -Infinity;
  var source = null;
  var reconnectTimer = null;
  var backoffMs = 1000;
  var renderedKey = "";
  var connectedAtMs = 0;

  var el = {
    title: document.getElementById("title"),
    link: document.getElementById("link"),
    clock: document.getElementById("clock"),
    banner: document.getElementById("banner"),
    lanes: document.getElementById("lanes"),
    footer: document.getElementById("footer"),
  };

  function watchdogMs() {
    var hb = snapshot && snapshot.heartbeat_s ? snapshot.heartbeat_s : 1;
    return Math.max(MIN_WATCHDOG_MS, hb * 3000);
  }

  function linkUp() {
    return (
      source !== null &&
      source.readyState === EventSource.OPEN &&
      performance.now() - lastMessageMs < watchdogMs()
    );
  }

  // --- text helpers ---------------------------------------------------------------------------
  function texts(key) {
    var s = snapshot || FALLBACK;
    return (s.text && s.text[key]) || FALLBACK.text[key] || [key];
  }
  function langs() {
    return (snapshot || FALLBACK).languages;
  }
  function node(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = text;
    return n;
  }
  // one span per configured language, e.g. <span lang=zh>等候</span><span lang=en>Wait</span>
  function multi(key, cls) {
    var wrap = node("span", "i18n " + (cls || ""));
    var list = texts(key);
    var ls = langs();
    for (var i = 0; i < list.length; i++) {
      var s = node("span", "t", list[i]);
      s.setAttribute("lang", ls[i] || "");
      wrap.appendChild(s);
    }
    return wrap;
  }

  // --- model: what to show, with the page's own link guard applied -------------------------
  function model() {
    var up = linkUp();
    var lanes = snapshot ? snapshot.lanes : [];
    var zones = snapshot && snapshot.zones ? snapshot.zones : [];
    if (!up) {
      zones = zones.map(function (z) {
        return { zone_id: z.zone_id, label: z.label, status: "unavailable", reason: "display_link" };
      });
      lanes = lanes.map(function (l) {
        return {
          lane_id: l.lane_id, label: l.label, status: "unavailable", reason: "display_link",
          open: null, recommended: false, wait_text: null, queue_length: null,
        };
      });
    }
    return { up: up, lanes: lanes, zones: zones, version: snapshot ? snapshot.version : -1 };
  }

  function laneCard(l) {
    var card = node("section", "lane s-" + l.status + (l.recommended ? " rec" : ""));
    card.dataset.lane = l.lane_id;
    card.dataset.status = l.status;
    card.dataset.reason = l.reason || "";
    card.dataset.recommended = l.recommended ? "true" : "false";

    var badge = node("div", "rec-badge");
    badge.appendChild(node("span", "star", "★"));
    badge.appendChild(multi("recommended"));
    card.appendChild(badge);

    var head = node("div", "lane-head");
    head.appendChild(node("div", "lane-name", l.label));
    if (l.status === "ok") head.appendChild(multi("open", "pill pill-open"));
    card.appendChild(head);

    var body = node("div", "lane-body");
    if (l.status === "ok") {
      var wait = node("div", "wait");
      wait.appendChild(multi("wait", "caption"));
      var row = node("div", "wait-row");
      if (l.wait_text !== null && l.wait_text !== undefined) {
        row.appendChild(node("span", "wait-value len-" + String(l.wait_text).length, l.wait_text));
        row.appendChild(multi("minutes", "wait-unit"));
      } else {
        row.appendChild(node("span", "wait-value wait-none", "–"));
        row.appendChild(multi("estimating", "wait-unit"));
      }
      wait.appendChild(row);
      body.appendChild(wait);
      var q = node("div", "queue");
      q.appendChild(node("span", "queue-value", String(l.queue_length)));
      q.appendChild(multi("queue", "queue-unit"));
      body.appendChild(q);
    } else {
      var key = l.status === "closed" ? "closed" : l.status === "stale" ? "updating" : "unavailable";
      body.appendChild(multi(key, "status-text"));
    }
    card.appendChild(body);
    return card;
  }

  // a capacity zone (fitting rooms): free places in big digits, or "Full" with the people waiting
  function zoneCard(z) {
    var full = z.status === "ok" && z.full;
    var card = node("section", "lane zone s-" + z.status + (full ? " full" : ""));
    card.dataset.zone = z.zone_id;
    card.dataset.status = z.status;
    card.dataset.reason = z.reason || "";
    var head = node("div", "lane-head");
    head.appendChild(node("div", "lane-name", z.label));
    if (z.status === "ok") head.appendChild(node("span", "pill pill-count", z.occupancy + " / " + z.capacity));
    card.appendChild(head);
    var body = node("div", "lane-body");
    if (z.status === "ok") {
      var row = node("div", "wait-row");
      if (full) {
        row.appendChild(multi("full", "zone-full"));
      } else {
        row.appendChild(node("span", "wait-value free-value len-" + String(z.free_places).length, String(z.free_places)));
        row.appendChild(multi("free", "wait-unit"));
      }
      var wait = node("div", "wait");
      wait.appendChild(row);
      body.appendChild(wait);
      if (z.waiting !== null && z.waiting !== undefined) {
        var q = node("div", "queue");
        q.appendChild(node("span", "queue-value", String(z.waiting)));
        q.appendChild(multi("waiting_people", "queue-unit"));
        body.appendChild(q);
      }
    } else {
      body.appendChild(multi(z.status === "stale" ? "updating" : "unavailable", "status-text"));
    }
    card.appendChild(body);
    return card;
  }

  function render() {
    var m = model();
    var key = JSON.stringify([m.up, m.lanes, m.zones, snapshot && snapshot.languages, snapshot && snapshot.title]);
    if (key === renderedKey) return;
    renderedKey = key;

    document.body.dataset.link = m.up ? "live" : "connecting";
    el.title.textContent = "";
    if (snapshot && snapshot.title) el.title.appendChild(node("span", "t", snapshot.title));
    else el.title.appendChild(multi("title"));

    // green "Live" only when numbers can really flow: page link, broker and edge all up
    var live = m.up && snapshot.broker_connected && ["offline", "stopped"].indexOf(snapshot.edge_status) < 0;
    el.link.textContent = "";
    el.link.dataset.live = live ? "true" : "false";
    el.link.appendChild(node("span", "dot"));
    el.link.appendChild(multi(live ? "live" : "connecting"));

    var n = m.lanes.length + m.zones.length;
    var cols = n <= 4 ? Math.max(n, 1) : n <= 6 ? 3 : 4;
    el.lanes.style.setProperty("--cols", String(cols));
    el.lanes.style.setProperty("--rows", String(Math.max(1, Math.ceil(n / cols))));
    var frag = document.createDocumentFragment();
    m.lanes.forEach(function (l) { frag.appendChild(laneCard(l)); });
    m.zones.forEach(function (z) { frag.appendChild(zoneCard(z)); });
    if (n === 0 && snapshot) frag.appendChild(multi("no_lanes", "no-lanes"));
    el.lanes.replaceChildren(frag);

    var anyShown = m.lanes.some(function (l) { return l.status === "ok" || l.status === "closed"; });
    var allUnavailable = !m.up || (n > 0 && m.lanes.every(function (l) { return l.status === "unavailable"; }));
    el.banner.hidden = !(allUnavailable && !anyShown);
    el.banner.replaceChildren(multi("banner_unavailable"));

    el.footer.replaceChildren();
    if (snapshot) el.footer.appendChild(multi("footer"));
  }

  function tickClock() {
    var d = new Date();
    var hh = String(d.getHours()).padStart(2, "0");
    var mm = String(d.getMinutes()).padStart(2, "0");
    el.clock.textContent = hh + ":" + mm;
  }

  // --- connection ---------------------------------------------------------------------------
  function scheduleReconnect() {
    if (reconnectTimer !== null) return;
    reconnectTimer = setTimeout(function () {
      reconnectTimer = null;
      connect();
    }, backoffMs);
    backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
  }

  function connect() {
    if (source !== null) source.close();
    connectedAtMs = performance.now();
    var es = new EventSource("/events");
    source = es;
    es.onmessage = function (ev) {
      if (source !== es) return;
      var s;
      try {
        s = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (!s || !Array.isArray(s.lanes)) return;
      snapshot = s;
      lastMessageMs = performance.now();
      backoffMs = 1000;
      render();
    };
    es.onerror = function () {
      if (source !== es) return;
      render();
      // CLOSED: the browser gave up (e.g. HTTP error); CONNECTING: it retries on its own
      if (es.readyState === EventSource.CLOSED) scheduleReconnect();
    };
  }

  setInterval(function () {
    tickClock();
    render();
    var now = performance.now();
    var silentMs = now - Math.max(lastMessageMs, connectedAtMs);
    // half-open connection or a server that stopped sending: start over
    if (silentMs > watchdogMs() && reconnectTimer === null) {
      if (source !== null) source.close();
      source = null;
      render();
      scheduleReconnect();
    }
  }, 500);

  tickClock();
  render();
  connect();
})();
