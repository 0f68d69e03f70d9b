// polypy live dashboard. Plain script, no dependencies, embedded in the engine binary
// (src/http/page/). Data: GET /markets (the finder), GET /stats every 2 s (engine tiles and
// the stream's port), and the book stream (docs/stream-api.md) for the selected token. Stream
// messages only update state; drawing happens at most once per animation frame.
"use strict";

const LEVELS = 15;          // ladder rows per side
const DEPTH_LEVELS = 60;    // levels per side in the depth chart
const FLASH_MS = 900;       // a changed level flashes this long
const HISTORY_MS = 15 * 60 * 1000;
const HISTORY_MAX = 3000;
const STATS_EVERY_MS = 2000;
const SILENCE_MS = 12000;
const HASH_EVERY_MS = 200;  // browser hash checks, at most one per this
const HISTORY_STEP_MS = 100; // bbo history: one point per this (the latest wins)   // no frame (the server sends a heartbeat every 5 s): reconnect

const $ = (id) => document.getElementById(id);
const el = {};
for (const id of ["finder", "finder-results", "conn-state", "empty", "market-head", "question",
  "outcomes", "token-id", "condition-id", "end-date", "status", "trust", "hash-state", "resyncs",
  "seq", "updated", "quote", "best-bid", "best-ask", "spread", "midpoint", "last-trade",
  "tick-size", "book", "banner", "bids", "asks", "level-count", "depth", "bbo", "engine-state",
  "tile-markets", "tile-books", "tile-conns", "tile-rate", "tile-latency", "tile-resyncs",
  "tile-uptime", "stream-url"]) {
  el[id] = $(id);
}

const S = {
  items: [],            // finder entries, one per token
  byToken: new Map(),
  sel: "",              // selected token id
  book: null,           // the selected token's book, rebuilt from the stream
  resyncs: 0,           // snapshots after the first one for this selection
  snapshots: 0,
  flashes: new Map(),   // "b:price" / "a:price" -> time of the change
  history: [],          // {t, bid, ask} from the bbo channel
  hash: { state: "pending", at: 0, checked: 0, bad: 0, busy: false, last: -Infinity },
  ws: null,
  wsState: "connecting",
  streamUrl: "",
  streamEnabled: true,
  backoff: 500,
  lastFrame: 0,
  retrySub: 0,
  removed: false,
  stats: null,
  prevCount: null,
  dirty: { book: false, bbo: false, status: false },
  frame: 0,
  active: -1,           // highlighted finder row
  messages: 0,          // stream messages received
  frames: 0,            // frames drawn
};
window.polypyDashboard = S;  // for tests and the curious (read-only use)

// ---------- small helpers ----------

function decimals(s) {
  const i = s.indexOf(".");
  return i < 0 ? 0 : s.length - i - 1;
}
function trimZeros(s) {
  return s.indexOf(".") < 0 ? s : s.replace(/0+$/, "").replace(/\.$/, "");
}
function fmtInt(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–";
}
// Display text of a size (the exact text stays in the row's data-size and title).
function fmtSize(s) {
  const n = parseFloat(s);
  if (!Number.isFinite(n)) return s;
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e5) return (n / 1e3).toFixed(1) + "k";
  return s.length > 8 ? trimZeros(n.toFixed(2)) : s;
}
function fmtDuration(sec) {
  if (!Number.isFinite(sec)) return "–";
  sec = Math.floor(sec);
  const d = Math.floor(sec / 86400), h = Math.floor(sec / 3600) % 24;
  const m = Math.floor(sec / 60) % 60, s = sec % 60;
  const p = (x) => String(x).padStart(2, "0");
  return d > 0 ? `${d}d ${p(h)}h ${p(m)}m` : h > 0 ? `${h}h ${p(m)}m ${p(s)}s` : `${m}m ${p(s)}s`;
}
function fmtMs(x) {
  return typeof x === "number" ? (x < 10 ? x.toFixed(2) : x.toFixed(1)) : "–";
}
function setText(node, text) {
  if (node && node.textContent !== text) node.textContent = text;
}
function short(id) {
  return id.length > 18 ? id.slice(0, 8) + "…" + id.slice(-6) : id;
}

// ---------- markets and the finder ----------

async function loadMarkets() {
  try {
    const r = await fetch("/markets", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const list = await r.json();
    const items = [];
    const byToken = new Map();
    for (const m of Array.isArray(list) ? list : []) {
      const tokens = Array.isArray(m.tokens) ? m.tokens : [];
      for (const t of tokens) {
        const it = {
          token: String(t.token_id), outcome: String(t.outcome ?? ""),
          question: String(m.question ?? ""), condition: String(m.condition_id ?? ""),
          end: m.end_date ?? "", status: m.status ?? "", siblings: tokens,
        };
        it.hay = `${it.question} ${it.outcome} ${it.token} ${it.condition}`.toLowerCase();
        items.push(it);
        byToken.set(it.token, it);
      }
    }
    S.items = items;
    S.byToken = byToken;
    renderMarket();
    if (document.activeElement === el.finder) renderResults();
  } catch (e) {
    // The engine may be starting; try again soon. Not an error worth a console line.
  }
  setTimeout(loadMarkets, S.items.length ? 60000 : 2000);
}

function search(q) {
  const words = q.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return [];
  const out = [];
  for (const it of S.items) {
    if (words.every((w) => it.hay.includes(w))) {
      out.push(it);
      if (out.length >= 50) break;
    }
  }
  return out;
}

function renderResults() {
  const q = el.finder.value;
  const ul = el["finder-results"];
  const found = search(q);
  ul.replaceChildren();
  S.active = found.length ? 0 : -1;
  if (!q.trim()) {
    ul.hidden = true;
    el.finder.setAttribute("aria-expanded", "false");
    return;
  }
  if (!found.length) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = S.items.length ? "no market matches" : "loading markets…";
    ul.append(li);
  }
  found.forEach((it, i) => {
    const li = document.createElement("li");
    li.id = "opt-" + i;
    li.setAttribute("role", "option");
    li.dataset.token = it.token;
    li.setAttribute("aria-selected", i === 0 ? "true" : "false");
    const qs = document.createElement("span");
    qs.className = "q";
    qs.textContent = it.question;
    const os = document.createElement("span");
    os.className = "o";
    os.textContent = it.outcome;
    li.append(qs, os);
    li.addEventListener("mousedown", (e) => e.preventDefault());
    li.addEventListener("click", () => choose(it.token));
    ul.append(li);
  });
  ul.hidden = false;
  el.finder.setAttribute("aria-expanded", "true");
  el.finder.setAttribute("aria-activedescendant", found.length ? "opt-0" : "");
}

function moveActive(step) {
  const rows = el["finder-results"].querySelectorAll("li[data-token]");
  if (!rows.length) return;
  S.active = (S.active + step + rows.length) % rows.length;
  rows.forEach((r, i) => r.setAttribute("aria-selected", i === S.active ? "true" : "false"));
  rows[S.active].scrollIntoView({ block: "nearest" });
  el.finder.setAttribute("aria-activedescendant", rows[S.active].id);
}

function closeResults() {
  el["finder-results"].hidden = true;
  el.finder.setAttribute("aria-expanded", "false");
}

function choose(token) {
  el.finder.value = "";
  closeResults();
  el.finder.blur();
  if (location.hash.slice(1) !== token) location.hash = token;
  else select(token);
}

el.finder.addEventListener("input", renderResults);
el.finder.addEventListener("focus", renderResults);
el.finder.addEventListener("blur", () => setTimeout(closeResults, 150));
el.finder.addEventListener("keydown", (e) => {
  if (e.key === "ArrowDown") { moveActive(1); e.preventDefault(); }
  else if (e.key === "ArrowUp") { moveActive(-1); e.preventDefault(); }
  else if (e.key === "Escape") { el.finder.value = ""; closeResults(); el.finder.blur(); }
  else if (e.key === "Enter") {
    const rows = el["finder-results"].querySelectorAll("li[data-token]");
    if (rows[S.active]) choose(rows[S.active].dataset.token);
    e.preventDefault();
  }
});
document.addEventListener("keydown", (e) => {
  const t = e.target;
  const typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable);
  if (e.key === "/" && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
    e.preventDefault();
    el.finder.focus();
    el.finder.select();
  }
});
window.addEventListener("hashchange", () => select(decodeURIComponent(location.hash.slice(1))));

// ---------- selection and the stream ----------

function select(token) {
  if (token === S.sel) return;
  const old = S.sel;
  S.sel = token;
  S.book = null;
  S.resyncs = 0;
  S.snapshots = 0;
  S.removed = false;
  S.flashes.clear();
  S.history = [];
  S.hash = { state: "pending", at: 0, checked: 0, bad: 0, busy: false, last: -Infinity };
  if (old) {
    send({ op: "unsubscribe", channel: "book", assets: [old] });
    send({ op: "unsubscribe", channel: "bbo", assets: [old] });
  }
  subscribe();
  renderMarket();
  markDirty("book", "bbo", "status");
}

function send(msg) {
  if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify(msg));
}

function subscribe() {
  clearTimeout(S.retrySub);
  if (!S.sel) return;
  send({ op: "subscribe", channel: "book", assets: [S.sel] });
  send({ op: "subscribe", channel: "bbo", assets: [S.sel] });
}

function setConn(state) {
  S.wsState = state;
  markDirty("status");
}

function connect() {
  if (!S.streamUrl || S.ws) return;
  setConn("connecting");
  let ws;
  try {
    ws = new WebSocket(S.streamUrl);
  } catch (e) {
    reconnectLater();
    return;
  }
  S.ws = ws;
  ws.onopen = () => {
    S.backoff = 500;
    S.lastFrame = performance.now();
    setConn("live");
    if (S.book) { S.book = null; markDirty("book"); }
    subscribe();
  };
  ws.onmessage = (ev) => {
    S.lastFrame = performance.now();
    S.messages += 1;
    let m;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    onMessage(m);
  };
  ws.onclose = () => {
    if (S.ws === ws) { S.ws = null; setConn("disconnected"); reconnectLater(); }
  };
  ws.onerror = () => { /* onclose follows */ };
}

function reconnectLater() {
  const wait = S.backoff;
  S.backoff = Math.min(S.backoff * 2, 5000);
  setTimeout(connect, wait);
}

function side(book, s) {
  return s === "BUY" || s === "bid" ? book.bids : book.asks;
}

function onMessage(m) {
  const t = m.type;
  if (t === "heartbeat" || t === "pong" || t === "subscribed" || t === "unsubscribed") return;
  if (t === "error") {
    // Typically: the token has no published snapshot yet. Ask again shortly.
    if (S.sel && !S.book) S.retrySub = setTimeout(subscribe, 1000);
    return;
  }
  if (m.asset !== S.sel) return;
  if (t === "bbo") {
    const num = (x) => (x == null ? null : parseFloat(x));
    const now = performance.now();
    const point = { t: now, bid: num(m.bid), ask: num(m.ask) };
    const h = S.history;
    // Conflated: a change within HISTORY_STEP_MS of the last point replaces it.
    if (h.length > 1 && now - h[h.length - 2].t < HISTORY_STEP_MS) h[h.length - 1] = point;
    else h.push(point);
    if (h.length > HISTORY_MAX) h.splice(0, h.length - HISTORY_MAX);
    markDirty("bbo");
    return;
  }
  if (t === "removed") {
    S.removed = true;
    S.book = null;
    markDirty("book", "status");
    return;
  }
  if (t === "snapshot") {
    const book = {
      market: m.market ?? "", seq: m.seq, ts: m.ts ?? "", trusted: !!m.trusted,
      reason: m.reason ?? null, tick: m.tick_size ?? null, minSize: m.min_order_size ?? "5",
      negRisk: !!m.neg_risk, ltp: m.last_trade_price ?? null, partial: m.hash == null,
      inSync: true, bids: new Map(), asks: new Map(), sorted: null, updated: Date.now(),
    };
    for (const [p, z] of m.bids || []) book.bids.set(p, z);
    for (const [p, z] of m.asks || []) book.asks.set(p, z);
    if (S.book) S.resyncs += 1;
    S.snapshots += 1;
    S.book = book;
    if (typeof m.hash === "string") verifyHash(book, m.hash);
    markDirty("book", "status");
    return;
  }
  const b = S.book;
  if (!b || typeof m.seq !== "number") return;
  if (m.seq !== b.seq + 1) b.inSync = false;  // the server sends a snapshot to repair it
  b.seq = m.seq;
  if (m.ts) b.ts = m.ts;
  b.updated = Date.now();
  if (t === "delta") {
    const now = performance.now();
    for (const c of m.changes || []) {
      const levels = side(b, c[0]);
      if (c[2] === "0") levels.delete(c[1]); else levels.set(c[1], c[2]);
      S.flashes.set((levels === b.bids ? "b:" : "a:") + c[1], now);
    }
    b.sorted = null;
    if (typeof m.hash === "string" && b.inSync && !b.partial) verifyHash(b, m.hash);
  } else if (t === "trade") {
    b.ltp = m.price;
  } else if (t === "tick_size") {
    b.tick = m.new;
    b.trusted = false;
    b.reason = "tick_size_change";
  }
  if (typeof m.trusted === "boolean") {
    b.trusted = m.trusted;
    b.reason = m.trusted ? null : (m.reason ?? b.reason);
  }
  markDirty("book", "status");
}

// ---------- the venue hash, recomputed here (docs/venue-protocol.md §4) ----------

function sorted(b) {
  if (!b.sorted) {
    const bids = [...b.bids].sort((x, y) => parseFloat(y[0]) - parseFloat(x[0]));
    const asks = [...b.asks].sort((x, y) => parseFloat(x[0]) - parseFloat(y[0]));
    b.sorted = { bids, asks };
  }
  return b.sorted;
}

function summary(b) {
  const j = JSON.stringify;
  const lv = (list) => list.map(([p, z]) => `{"price":${j(p)},"size":${j(z)}}`).join(",");
  const s = sorted(b);
  // Wire order: bids ascending, asks descending.
  const bids = s.bids.slice().reverse(), asks = s.asks.slice().reverse();
  return `{"market":${j(b.market)},"asset_id":${j(S.sel)},"timestamp":${j(String(b.ts))},` +
    `"hash":"","bids":[${lv(bids)}],"asks":[${lv(asks)}],"min_order_size":${j(b.minSize)},` +
    `"tick_size":${b.tick == null ? "null" : j(b.tick)},"neg_risk":${b.negRisk ? "true" : "false"},` +
    `"last_trade_price":${j(b.ltp ?? "")}}`;
}

// At most one check in flight and one per HASH_EVERY_MS: a busy book carries many hashes
// (and snapshots), and the check is a sample, not a gate.
function verifyHash(b, want) {
  if (!(window.crypto && crypto.subtle)) {
    S.hash.state = "unavailable";
    return;
  }
  const now = performance.now();
  if (S.hash.busy || now - S.hash.last < HASH_EVERY_MS) return;
  S.hash.busy = true;
  S.hash.last = now;
  const text = summary(b);
  crypto.subtle.digest("SHA-1", new TextEncoder().encode(text)).then((buf) => {
    S.hash.busy = false;
    if (S.book !== b) return;
    const hex = [...new Uint8Array(buf)].map((x) => x.toString(16).padStart(2, "0")).join("");
    S.hash.checked += 1;
    if (hex === want) { S.hash.state = "verified"; S.hash.at = Date.now(); }
    else { S.hash.state = "mismatch"; S.hash.bad += 1; S.hash.at = Date.now(); }
    markDirty("status");
  }, () => { S.hash.busy = false; S.hash.state = "unavailable"; markDirty("status"); });
}

// ---------- rendering, once per animation frame ----------

function markDirty(...what) {
  for (const w of what) S.dirty[w] = true;
  if (!S.frame) S.frame = requestAnimationFrame(render);
}

function render() {
  S.frame = 0;
  S.frames += 1;
  const d = S.dirty;
  S.dirty = { book: false, bbo: false, status: false };
  let flashing = false;
  if (d.book) flashing = renderLadder();
  if (d.book || d.status) renderStatus();
  if (d.book) drawDepth();
  if (d.bbo || d.book) drawBbo();
  if (flashing) markDirty("book");
}

function renderMarket() {
  const it = S.byToken.get(S.sel);
  el.empty.hidden = !!S.sel;
  el["market-head"].hidden = !S.sel;
  for (const id of ["status", "quote", "book"]) el[id].hidden = !S.sel;
  if (!S.sel) { document.title = "polypy · live books"; return; }
  setText(el.question, it ? it.question : "token " + short(S.sel));
  setText(el["token-id"], S.sel);
  setText(el["condition-id"], it ? it.condition : (S.book ? S.book.market : "–"));
  setText(el["end-date"], it && it.end ? "ends " + it.end : "");
  document.title = (it ? `${it.outcome} · ${it.question}` : short(S.sel)) + " · polypy";
  const tabs = el.outcomes;
  tabs.replaceChildren();
  for (const t of it ? it.siblings : []) {
    const b = document.createElement("button");
    b.type = "button";
    b.setAttribute("role", "tab");
    b.setAttribute("aria-selected", String(t.token_id) === S.sel ? "true" : "false");
    b.textContent = t.outcome;
    b.addEventListener("click", () => choose(String(t.token_id)));
    tabs.append(b);
  }
}

function ensureRows(table) {
  const body = table.tBodies[0];
  while (body.rows.length < LEVELS) {
    const tr = body.insertRow();
    tr.insertCell();
    tr.insertCell();
  }
  return body.rows;
}

function renderLadder() {
  const b = S.book;
  const now = performance.now();
  let flashing = false;
  const s = b ? sorted(b) : { bids: [], asks: [] };
  const shown = (list) => list.slice(0, LEVELS);
  const bids = shown(s.bids), asks = shown(s.asks);
  let max = 0;
  for (const [, z] of bids.concat(asks)) max = Math.max(max, parseFloat(z) || 0);
  const fill = (table, list, key, bar, dir) => {
    const rows = ensureRows(table);
    for (let i = 0; i < LEVELS; i++) {
      const tr = rows[i];
      const lv = list[i];
      if (!lv) {
        if (tr.dataset.price !== undefined) {
          delete tr.dataset.price; delete tr.dataset.size;
          tr.cells[0].textContent = ""; tr.cells[1].textContent = "";
          tr.style.background = "";
          tr.title = "";
        }
        continue;
      }
      const [p, z] = lv;
      tr.dataset.price = p;
      tr.dataset.size = z;
      setText(tr.cells[0], p);
      setText(tr.cells[1], fmtSize(z));
      if (tr.title !== z) tr.title = z;
      const w = max > 0 ? Math.max(1, Math.round((parseFloat(z) / max) * 100)) : 0;
      const since = S.flashes.get(key + p);
      const age = since === undefined ? FLASH_MS : now - since;
      let bg = `linear-gradient(to ${dir}, ${bar} ${w}%, transparent ${w}%)`;
      if (age < FLASH_MS) {
        flashing = true;
        const a = (0.35 * (1 - age / FLASH_MS)).toFixed(3);
        bg += `, rgba(255, 226, 120, ${a})`;
      }
      tr.style.background = bg;
    }
  };
  fill(el.bids, bids, "b:", "var(--bid-bar)", "left");
  fill(el.asks, asks, "a:", "var(--ask-bar)", "right");
  if (S.flashes.size > 200) {
    for (const [k, t] of S.flashes) if (now - t >= FLASH_MS) S.flashes.delete(k);
  }
  setText(el["level-count"], b ? `${b.bids.size} bid and ${b.asks.size} ask levels; top ${LEVELS} shown` : "");

  const bb = bids[0] ? bids[0][0] : null, ba = asks[0] ? asks[0][0] : null;
  setQuote(el["best-bid"], bb);
  setQuote(el["best-ask"], ba);
  let spread = null, mid = null;
  if (bb !== null && ba !== null) {
    const dec = Math.max(decimals(bb), decimals(ba));
    spread = trimZeros((parseFloat(ba) - parseFloat(bb)).toFixed(dec));
    mid = trimZeros(((parseFloat(ba) + parseFloat(bb)) / 2).toFixed(dec + 1));
  }
  setQuote(el.spread, spread);
  setQuote(el.midpoint, mid);
  setQuote(el["last-trade"], b && b.ltp ? b.ltp : null);
  setQuote(el["tick-size"], b && b.tick ? b.tick : null);
  return flashing;
}

function setQuote(node, v) {
  setText(node, v === null ? "–" : v);
  if (v === null) delete node.dataset.value; else node.dataset.value = v;
}

function renderStatus() {
  const conn = el["conn-state"];
  const labels = { live: "live", connecting: "connecting…", disconnected: "disconnected" };
  conn.dataset.state = S.wsState;
  setText(conn, S.streamEnabled ? labels[S.wsState] : "stream off");
  const b = S.book;
  const trusted = !!(b && b.trusted && b.inSync && S.wsState === "live");
  el.trust.dataset.trusted = String(trusted);
  let why = "waiting for the book";
  if (b && !b.inSync) why = "gap in the stream, resyncing";
  else if (b && !b.trusted) why = b.reason || "untrusted";
  setText(el.trust, trusted ? "trusted" : b ? "untrusted: " + why : why);
  const h = S.hash;
  el["hash-state"].dataset.state = h.state;
  const ago = h.at ? ` ${((Date.now() - h.at) / 1000).toFixed(0)} s ago` : "";
  setText(el["hash-state"], {
    pending: "hash: waiting for one",
    verified: `hash ✓ verified${ago} (${h.checked})`,
    mismatch: `hash ✗ mismatch${ago} (${h.bad} of ${h.checked})`,
    unavailable: "hash: engine-checked (browser check needs https or localhost)",
  }[h.state]);
  el.resyncs.dataset.value = String(S.resyncs);
  setText(el.resyncs, String(S.resyncs));
  setText(el.seq, b ? String(b.seq) : "–");
  setText(el.updated, b ? `${((Date.now() - b.updated) / 1000).toFixed(0)} s ago` : "–");

  let banner = "";
  if (!S.streamEnabled) banner = "The engine runs without its stream (--no-stream): no live book.";
  else if (S.wsState !== "live") banner = "Disconnected from the stream: reconnecting…";
  else if (S.removed) banner = "The engine removed this book (its market expired).";
  else if (b && !b.inSync) banner = "Gap in the stream: this book is stale until its next snapshot.";
  else if (b && !b.trusted) banner = `Untrusted book (${b.reason || "unknown reason"}): the engine is resyncing it.`;
  el.banner.hidden = !banner;
  setText(el.banner, banner);
  el.book.classList.toggle("stale", !!banner);
}

function canvasCtx(c) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(c.clientWidth * dpr)), h = Math.max(1, Math.round(c.clientHeight * dpr));
  if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, c.clientWidth, c.clientHeight);
  g.font = "11px system-ui, sans-serif";
  return { g, w: c.clientWidth, h: c.clientHeight };
}

const COLORS = { bid: "#2fbf71", ask: "#ef5b5b", dim: "#8795a3", line: "#27313c" };

function drawDepth() {
  const c = el.depth;
  if (!c || c.clientWidth === 0) return;
  const { g, w, h } = canvasCtx(c);
  const b = S.book;
  if (!b) return;
  const s = sorted(b);
  const cum = (list) => {
    let acc = 0;
    return list.slice(0, DEPTH_LEVELS).map(([p, z]) => [parseFloat(p), (acc += parseFloat(z) || 0)]);
  };
  const bids = cum(s.bids), asks = cum(s.asks);
  if (!bids.length && !asks.length) return;
  const xs = bids.concat(asks).map((x) => x[0]);
  let lo = Math.min(...xs), hi = Math.max(...xs);
  if (hi - lo < 1e-9) { lo -= 0.01; hi += 0.01; }
  const ymax = Math.max(bids.length ? bids[bids.length - 1][1] : 0, asks.length ? asks[asks.length - 1][1] : 0) || 1;
  const L = 8, R = 8, T = 8, B = 18;
  const X = (p) => L + ((p - lo) / (hi - lo)) * (w - L - R);
  const Y = (v) => T + (1 - v / ymax) * (h - T - B);
  const area = (pts, color) => {
    if (!pts.length) return;
    g.beginPath();
    g.moveTo(X(pts[0][0]), Y(0));
    let prev = 0;
    for (const [p, v] of pts) { g.lineTo(X(p), Y(prev)); g.lineTo(X(p), Y(v)); prev = v; }
    const end = pts[pts.length - 1][0];
    g.lineTo(X(end), Y(0));
    g.closePath();
    g.globalAlpha = 0.25; g.fillStyle = color; g.fill();
    g.globalAlpha = 1; g.strokeStyle = color; g.lineWidth = 1.5; g.stroke();
  };
  area(bids, COLORS.bid);
  area(asks, COLORS.ask);
  g.fillStyle = COLORS.dim;
  g.textBaseline = "bottom";
  g.textAlign = "left"; g.fillText(String(+lo.toFixed(4)), L, h - 2);
  g.textAlign = "right"; g.fillText(String(+hi.toFixed(4)), w - R, h - 2);
  g.textAlign = "center";
  if (bids.length && asks.length) g.fillText(`mid ${+((bids[0][0] + asks[0][0]) / 2).toFixed(4)}`, w / 2, h - 2);
  g.textAlign = "right"; g.textBaseline = "top";
  g.fillText(fmtInt(ymax), w - R, T);
}

function drawBbo() {
  const c = el.bbo;
  if (!c) return;
  c.dataset.points = String(S.history.length);
  if (c.clientWidth === 0) return;
  const { g, w, h } = canvasCtx(c);
  const now = performance.now();
  while (S.history.length && now - S.history[0].t > HISTORY_MS) S.history.shift();
  const pts = S.history;
  if (!pts.length) {
    g.fillStyle = COLORS.dim; g.textAlign = "center"; g.textBaseline = "middle";
    g.fillText(S.sel ? "waiting for the first best bid / ask…" : "", w / 2, h / 2);
    return;
  }
  const t0 = pts[0].t, t1 = Math.max(now, t0 + 1000);
  let lo = Infinity, hi = -Infinity;
  for (const p of pts) {
    for (const v of [p.bid, p.ask]) if (v !== null && Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  if (!Number.isFinite(lo)) return;
  const pad = Math.max((hi - lo) * 0.1, 0.005);
  lo -= pad; hi += pad;
  const L = 8, R = 44, T = 8, B = 18;
  const X = (t) => L + ((t - t0) / (t1 - t0)) * (w - L - R);
  const Y = (v) => T + (1 - (v - lo) / (hi - lo)) * (h - T - B);
  const line = (key, color) => {
    g.beginPath();
    let started = false, last = null;
    for (const p of pts) {
      const v = p[key];
      if (v === null || !Number.isFinite(v)) { started = false; continue; }
      if (!started) { g.moveTo(X(p.t), Y(v)); started = true; }
      else { g.lineTo(X(p.t), Y(last)); g.lineTo(X(p.t), Y(v)); }
      last = v;
    }
    if (started) g.lineTo(X(t1), Y(last));
    g.strokeStyle = color; g.lineWidth = 1.5; g.stroke();
  };
  line("bid", COLORS.bid);
  line("ask", COLORS.ask);
  g.fillStyle = COLORS.dim;
  g.textAlign = "left"; g.textBaseline = "top"; g.fillText(String(+hi.toFixed(4)), w - R + 4, T);
  g.textBaseline = "bottom"; g.fillText(String(+lo.toFixed(4)), w - R + 4, h - B);
  g.fillText(`${Math.round((t1 - t0) / 1000)} s ago`, L, h - 2);
  g.textAlign = "right"; g.fillText("now", w - R, h - 2);
}

// ---------- engine tiles from /stats ----------

async function pollStats() {
  try {
    const r = await fetch("/stats", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const st = await r.json();
    renderStats(st, performance.now());
    el["engine-state"].dataset.state = "up";
    setText(el["engine-state"], st.replay ? "replay" : "up");
  } catch (e) {
    el["engine-state"].dataset.state = "down";
    setText(el["engine-state"], "unreachable");
  }
  setTimeout(pollStats, STATS_EVERY_MS);
}

function renderStats(st, now) {
  const stream = st.stream || {};
  S.streamEnabled = stream.enabled !== false;
  if (S.streamEnabled && stream.port) {
    // Taken again while disconnected: a restarted engine may stream on another port.
    const override = new URLSearchParams(location.search).get("stream");
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const url = override || `${proto}//${location.hostname}:${stream.port}/ws`;
    if (url !== S.streamUrl && !S.ws) {
      S.streamUrl = url;
      setText(el["stream-url"], url);
      connect();
    }
  }
  if (!S.streamEnabled) markDirty("status");
  const reg = st.registry || {}, integ = st.integrity || {}, pool = st.pool || {}, router = st.router || {};
  setText(el["tile-markets"], `${fmtInt(reg.conditions)} / ${fmtInt(reg.total_markets)}`);
  setText(el["tile-books"], `${fmtInt(integ.trusted_books)} / ${fmtInt(integ.books)}`);
  setText(el["tile-conns"], `${fmtInt(pool.active_connections)} / ${fmtInt(pool.connection_count)}`);
  const count = typeof integ.messages === "number" ? integ.messages : router.messages_routed;
  if (typeof count === "number") {
    if (S.prevCount && now > S.prevCount.t) {
      const rate = Math.max(0, (count - S.prevCount.n) / ((now - S.prevCount.t) / 1000));
      el["tile-rate"].dataset.value = String(Math.round(rate));
      setText(el["tile-rate"], fmtInt(rate));
    }
    S.prevCount = { n: count, t: now };
  }
  const p50 = router.recent_p50_latency_ms ?? router.p50_latency_ms;
  const p99 = router.recent_p99_latency_ms ?? router.p99_latency_ms;
  setText(el["tile-latency"], `${fmtMs(p50)}/${fmtMs(p99)} ms`);
  const causes = Object.entries(integ.resyncs || {});
  setText(el["tile-resyncs"], causes.length ? causes.map(([k, v]) => `${k.replace(/_/g, " ")} ${v}`).join(" · ") : "none");
  setText(el["tile-uptime"], fmtDuration(st.uptime_seconds));
}

// ---------- start ----------

setInterval(() => {
  // The stream says something at least every 5 s (heartbeat); silence means a dead link.
  if (S.ws && S.wsState === "live" && performance.now() - S.lastFrame > SILENCE_MS) S.ws.close();
  markDirty("status", "bbo");
}, 1000);
window.addEventListener("resize", () => markDirty("book", "bbo"));

loadMarkets();
pollStats();
if (location.hash.length > 1) select(decodeURIComponent(location.hash.slice(1)));
renderMarket();
markDirty("book", "bbo", "status");
