// framewire live view: one server-sent events stream of snapshots; frames are fetched per source when new.
"use strict";
const $ = (id) => document.getElementById(id);
const cards = new Map();

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(v, unit) { return v === null || v === undefined ? "–" : `${v}${unit || ""}`; }

function card(src) {
  let c = cards.get(src.source_id);
  if (!c) {
    const root = el("div", { class: "card", "data-source": src.source_id });
    const img = el("img", { alt: src.source_id });
    const meta = el("div", { class: "meta" });
    root.append(img, meta);
    $("grid").append(root);
    c = { root, img, meta, pts: null };
    cards.set(src.source_id, c);
  }
  return c;
}

function render(s) {
  $("run").textContent = s.run_id ? `run ${s.run_id}` : "";
  $("conn").textContent = s.connected ? "following Kafka" : "Kafka unreachable, retrying";
  const seen = new Set();
  const select = $("source-select");
  const chosen = select.value;
  select.replaceChildren();
  for (const src of s.sources) {
    seen.add(src.source_id);
    select.append(el("option", { value: src.source_id }, src.source_id));
    const c = card(src);
    if (src.frame_pts !== null && src.frame_pts !== c.pts) {
      // loaded off-screen and swapped in whole: the card never blanks while the next frame downloads
      const pts = c.pts = src.frame_pts, frames = src.frames_seen;
      const next = el("img", { alt: src.source_id });
      next.onload = () => {
        if (c.shown !== undefined && pts <= c.shown) return;  // a newer frame got there first
        c.shown = pts;
        c.img.replaceWith(next);
        c.img = next;
        c.root.dataset.pts = String(pts);
        c.root.dataset.frames = String(frames);
      };
      next.src = `/frame/${encodeURIComponent(src.source_id)}.jpg?pts=${pts}`;
    }
    const boxes = (src.boxes || []).map((b) => b.label + (b.track_id !== null ? ` #${b.track_id}` : "")).join(", ");
    const zones = Object.entries(src.zones || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
    const lines = Object.entries(src.lines || {}).map(([k, v]) => `${k}: ${v[0]} in / ${v[1]} out`).join(", ");
    c.meta.replaceChildren(
      el("div", { class: "name" }, src.source_id),
      el("div", { class: "muted" }, src.uri || ""),
      el("div", {}, ""),
    );
    const row = c.meta.lastChild;
    row.append(el("span", { class: `state ${src.state}` }, src.state || "?"),
      ` ${fmt(src.fps, " fps")} · p50 ${fmt(src.latency_p50_ms, " ms")} · p95 ${fmt(src.latency_p95_ms, " ms")}` +
      ` · dropped ${fmt(src.dropped)} · frames ${fmt(src.frames)}`);
    if (boxes) c.meta.append(el("div", { class: "boxes" }, boxes));
    if (zones || lines) c.meta.append(el("div", { class: "muted" }, [zones, lines].filter(Boolean).join(" · ")));
    c.root.dataset.state = src.state || "";
  }
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  for (const [id, c] of cards) if (!seen.has(id)) { c.root.remove(); cards.delete(id); }
  $("queries").replaceChildren(...(s.queries || []).map((q) => {
    const li = el("li", {}, `${q.query}${q.sources ? " (" + q.sources.join(", ") + ")" : ""} `);
    const b = el("button", { type: "button" }, "remove");
    b.onclick = () => command("remove_query", { text: q.query });
    li.append(b);
    return li;
  }));
  $("matches").replaceChildren(...(s.matches || []).map((m) => el("li", {}, `${m.source_id}: ${m.query} (${m.frames} frames)`)));
  $("events").replaceChildren(...(s.events || []).map((e) => el("li", { "data-type": e.type }, e.text)));
}

async function command(op, args) {
  $("reply").textContent = `${op}…`;
  const r = await fetch("/api/command", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ op, args }) });
  const body = await r.json();
  $("reply").textContent = body.ok ? `${op}: ok ${JSON.stringify(body.result)}` : `${op}: ${body.error}`;
  return body;
}

$("add-source").onsubmit = (e) => { e.preventDefault(); command("add_source", { uri: e.target.uri.value }); e.target.reset(); };
$("remove-source").onsubmit = (e) => { e.preventDefault(); command("remove_source", { source: e.target.source.value }); };
$("add-query").onsubmit = (e) => {
  e.preventDefault();
  const args = { text: e.target.text.value };
  if (e.target.source.value) args.sources = [e.target.source.value];
  command("add_query", args);
  e.target.reset();
};

const es = new EventSource("/api/stream");
es.onmessage = (m) => render(JSON.parse(m.data));
es.onerror = () => { $("conn").textContent = "UI server unreachable, retrying"; };
