// lamina playground: the page. It sends settings and play/pause/step/reset/export over one WebSocket
// and draws the frames the server trains; the settings live in the address after '#'.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const ORANGE = [245, 147, 34], BLUE = [8, 119, 189], WHITE = [232, 234, 235];
let ws = null, choices = null, settings = null, setup = null, history = [], playing = false;
let frameTimes = [], sendTimer = null, lastFrame = null, sentId = 0;

// ------------------------------------------------------------------ settings <-> controls <-> address

function encodeHash(s) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(s)) {
    if (k === "layers") p.set(k, v.map((l) => `${l.units}:${l.activation}`).join(","));
    else if (k === "features") p.set(k, v.join(","));
    else p.set(k, String(v));
  }
  return p.toString();
}

function decodeHash(hash, defaults) {
  const s = JSON.parse(JSON.stringify(defaults));
  const p = new URLSearchParams(hash.replace(/^#/, ""));
  for (const [k, v] of p.entries()) {
    if (!(k in s)) continue;
    if (k === "layers") {
      s.layers = v === "" ? [] : v.split(",").map((t) => {
        const [u, a] = t.split(":");
        return { units: Number(u), activation: a };
      });
    } else if (k === "features") s.features = v ? v.split(",") : [];
    else if (typeof defaults[k] === "number") s[k] = Number(v);
    else if (typeof defaults[k] === "boolean") s[k] = v === "true";
    else s[k] = v;
  }
  return s;
}

function fillSelect(el, values, label) {
  el.innerHTML = "";
  for (const v of values) {
    const o = document.createElement("option");
    o.value = String(v);
    o.textContent = label ? label(v) : String(v);
    el.appendChild(o);
  }
}

function buildControls() {
  fillSelect($("dataset"), choices.datasets);
  fillSelect($("optimizer"), choices.optimizers);
  fillSelect($("learning-rate"), choices.learning_rates);
  fillSelect($("regularization"), choices.regularizations);
  fillSelect($("regularization-rate"), choices.regularization_rates);
  fillSelect($("loss"), choices.losses);
  fillSelect($("output-activation"), ["auto", ...choices.activations]);
  const names = { x: "x", y: "y", x2: "x\u00b2", y2: "y\u00b2", xy: "xy", sinx: "sin \u03c0x", siny: "sin \u03c0y" };
  const box = $("features");
  for (const f of choices.features) {
    const l = document.createElement("label");
    l.innerHTML = `<input type="checkbox" value="${f}"> ${names[f] || f}`;
    box.appendChild(l);
  }
  for (const el of document.querySelectorAll("[data-key]")) el.addEventListener("change", onControl);
  for (const el of document.querySelectorAll("input[type=range]")) el.addEventListener("input", showRanges);
  box.addEventListener("change", onControl);
}

function selectValue(el, v) {
  // Keep a value the menu lacks (from a shared link) selectable, so the control shows the truth.
  if (![...el.options].some((o) => o.value === String(v))) {
    const o = document.createElement("option");
    o.value = o.textContent = String(v);
    el.appendChild(o);
  }
  el.value = String(v);
}

function showSettings(s) {
  for (const el of document.querySelectorAll("[data-key]")) {
    const v = s[el.dataset.key];
    if (el.type === "checkbox") el.checked = !!v;
    else if (el.tagName === "SELECT") selectValue(el, v);
    else el.value = String(v);
  }
  for (const cb of $("features").querySelectorAll("input")) cb.checked = s.features.includes(cb.value);
  renderLayers(s.layers);
  showRanges();
}

function showRanges() {
  for (const out of document.querySelectorAll("output[for]")) out.textContent = $(out.htmlFor).value;
}

function readSettings() {
  const s = {};
  for (const el of document.querySelectorAll("[data-key]")) {
    const k = el.dataset.key, d = choices.defaults[k];
    if (el.type === "checkbox") s[k] = el.checked;
    else if (typeof d === "number") s[k] = Number(el.value);
    else s[k] = el.value;
  }
  s.features = [...$("features").querySelectorAll("input:checked")].map((cb) => cb.value);
  s.layers = [...document.querySelectorAll("#layers .layer-card")].map((card) => ({
    units: Number(card.querySelector(".units").value),
    activation: card.querySelector(".activation").value,
  }));
  return s;
}

function renderLayers(layers) {
  const box = $("layers"), cards = box.querySelectorAll(".layer-card");
  if (cards.length === layers.length) {  // same shape: update in place, so a menu being used stays put
    layers.forEach((l, i) => {
      const units = cards[i].querySelector(".units"), act = cards[i].querySelector(".activation");
      if (units.value !== String(l.units)) units.value = String(l.units);
      if (act.value !== l.activation) selectValue(act, l.activation);
    });
    return;
  }
  box.innerHTML = "";
  layers.forEach((l, i) => {
    const card = document.createElement("div");
    card.className = "layer-card";
    card.innerHTML = `<h3>Hidden ${i + 1}</h3>
      <label>Units <input class="units" type="number" min="1" max="${choices.max_units}"></label>
      <label>Activation <select class="activation"></select></label>
      <div class="neurons"></div>`;
    fillSelect(card.querySelector(".activation"), choices.activations);
    card.querySelector(".units").value = String(l.units);
    selectValue(card.querySelector(".activation"), l.activation);
    card.querySelector(".units").dataset.layer = card.querySelector(".activation").dataset.layer = String(i + 1);
    for (const el of card.querySelectorAll("input, select")) el.addEventListener("change", onControl);
    box.appendChild(card);
  });
  $("layer-count").textContent = String(layers.length);
}

function onControl() {
  clearTimeout(sendTimer);
  sendTimer = setTimeout(() => applySettings(readSettings()), 120);  // one message per burst of edits
}

function applySettings(s) {
  settings = s;
  sendTimer = null;
  history_replace(s);
  sentId += 1;  // the server echoes it: setups and frames of older settings are dropped
  send({ type: "settings", settings: s, id: sentId });
}

function history_replace(s) {
  window.history.replaceState(null, "", `${location.pathname}${location.search}#${encodeHash(s)}`);
}

// ------------------------------------------------------------------ the channel

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(TOKEN)}`);
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "hello") onHello(msg);
    else if (msg.type === "setup") onSetup(msg);
    else if (msg.type === "frame") { if (setup && msg.id === setup.id) onFrame(msg); }
    else if (msg.type === "error") showError(msg);
    else if (msg.type === "export") download(msg);
  };
  ws.onclose = () => showError({ message: "the connection to the server closed: restart `lamina playground` and reload." });
}

function onHello(msg) {
  choices = msg.choices;
  buildControls();
  const s = decodeHash(location.hash, choices.defaults);
  showSettings(s);
  applySettings(s);
}

function showError(msg) {
  const box = $("error");
  box.textContent = msg.message;
  box.hidden = false;
  document.body.dataset.error = msg.key || "";
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function onSetup(msg) {
  if (msg.id !== sentId && msg.id !== null) return;  // an older request's answer: a newer one is coming
  clearError();
  setup = msg;
  settings = msg.settings;
  history = msg.frame.history.slice();
  if (sendTimer === null) showSettings(settings);  // not while an edit waits to be sent
  history_replace(settings);
  drawCurves(msg.curves);
  showLint(msg.lint);
  onFrame(msg.frame, true);
  document.body.dataset.ready = "1";
  document.body.dataset.settings = encodeHash(settings);  // what the page now trains (read by tests)
  if (playing) send({ type: "play" });
}

function onFrame(f, fromSetup) {
  lastFrame = f;  // kept for redraws (the test points toggle)
  if (!fromSetup) history.push(...f.history);
  $("epoch").textContent = f.epoch.toFixed(f.epoch < 10 ? 1 : 0);
  const fmt = (v, d) => (v === null || v === undefined ? "nan" : v.toFixed(d));
  $("train-loss").textContent = fmt(f.train_loss, 3);
  $("test-loss").textContent = fmt(f.test_loss, 3);
  $("train-accuracy").textContent = fmt(f.train_accuracy, 3);
  $("test-accuracy").textContent = fmt(f.test_accuracy, 3);
  drawBoundary(f);
  drawNeurons(f);
  drawLoss();
  showHealth(f.health);
  const now = performance.now();
  frameTimes.push(now);
  while (frameTimes.length && now - frameTimes[0] > 1000) frameTimes.shift();
  $("fps").textContent = String(frameTimes.length);
  document.body.dataset.step = String(f.step);
}

// ------------------------------------------------------------------ drawing

function decode(b64) {
  const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function mix(t) {  // 0 -> orange (class 0), 0.5 -> white, 1 -> blue (class 1)
  const [a, b, u] = t < 0.5 ? [ORANGE, WHITE, t * 2] : [WHITE, BLUE, t * 2 - 1];
  return [0, 1, 2].map((i) => Math.round(a[i] + (b[i] - a[i]) * u));
}

function heatmap(canvas, b64, n) {
  const v = decode(b64), small = document.createElement("canvas");
  small.width = small.height = n;
  const ctx = small.getContext("2d"), img = ctx.createImageData(n, n);
  for (let i = 0; i < n * n; i++) {
    const [r, g, b] = mix(v[i] / 255);
    img.data.set([r, g, b, 255], i * 4);
  }
  ctx.putImageData(img, 0, 0);
  const c = canvas.getContext("2d");
  c.imageSmoothingEnabled = true;
  c.drawImage(small, 0, 0, canvas.width, canvas.height);
}

function drawBoundary(f) {
  const canvas = $("boundary");
  heatmap(canvas, f.boundary, f.grid);
  const c = canvas.getContext("2d"), L = setup.limit, W = canvas.width;
  const px = (v) => ((v + L) / (2 * L)) * W, py = (v) => ((L - v) / (2 * L)) * W;
  const draw = (pts, hollow) => {
    for (const [x, y, label] of pts) {
      c.beginPath();
      c.arc(px(x), py(y), 3.2, 0, 2 * Math.PI);
      const col = `rgb(${(label ? BLUE : ORANGE).join(",")})`;
      c.lineWidth = 1.2;
      c.fillStyle = col; c.fill();
      c.strokeStyle = hollow ? "#222" : "#fff";  // test points: a dark ring
      c.stroke();
    }
  };
  draw(setup.train, false);
  if ($("show-test").checked) draw(setup.test, true);
}

function drawNeurons(f) {
  const boxes = [...document.querySelectorAll("#layers .neurons"), $("output-neurons")];
  f.neurons.forEach((layer, i) => {
    const box = boxes[i];
    if (!box) return;
    if (box.children.length !== layer.length) {
      box.innerHTML = "";
      for (let u = 0; u < layer.length; u++) {
        const cv = document.createElement("canvas");
        cv.width = cv.height = 36;
        box.appendChild(cv);
      }
    }
    layer.forEach((unit, u) => {
      heatmap(box.children[u], unit.image, f.neuron_grid);
      box.children[u].title = `unit ${u + 1}: output from ${fmtNum(unit.min)} to ${fmtNum(unit.max)}`;
    });
  });
}

function fmtNum(v) { return v === null ? "nan" : Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.01) ? v.toExponential(1) : v.toFixed(2); }

function axes(c, W, H, xmin, xmax, ymin, ymax) {
  const pad = 28, sx = (x) => pad + ((x - xmin) / (xmax - xmin || 1)) * (W - pad - 6);
  const sy = (y) => H - 16 - ((y - ymin) / (ymax - ymin || 1)) * (H - 24);
  c.clearRect(0, 0, W, H);
  c.strokeStyle = "#bbb"; c.lineWidth = 1;
  c.beginPath(); c.moveTo(pad, 4); c.lineTo(pad, H - 16); c.lineTo(W - 4, H - 16); c.stroke();
  c.fillStyle = "#555"; c.font = "10px sans-serif";
  c.fillText(fmtNum(ymax), 0, 12); c.fillText(fmtNum(ymin), 0, H - 18);
  return [sx, sy];
}

function line(c, xs, ys, sx, sy, color, dash) {
  c.strokeStyle = color; c.lineWidth = 2; c.setLineDash(dash || []);
  c.beginPath();
  let started = false;
  xs.forEach((x, i) => {
    const y = ys[i];
    if (y === null || !isFinite(y)) { started = false; return; }
    if (started) c.lineTo(sx(x), sy(y)); else { c.moveTo(sx(x), sy(y)); started = true; }
  });
  c.stroke(); c.setLineDash([]);
}

function drawLoss() {
  const canvas = $("loss-chart"), c = canvas.getContext("2d");
  const xs = history.map((h) => h.epoch), vals = history.flatMap((h) => [h.train_loss, h.test_loss]).filter((v) => v !== null);
  const ymax = Math.max(0.01, ...vals);
  const [sx, sy] = axes(c, canvas.width, canvas.height, xs[0] || 0, Math.max(1, xs[xs.length - 1] || 1), 0, ymax);
  line(c, xs, history.map((h) => h.train_loss), sx, sy, "#333");
  line(c, xs, history.map((h) => h.test_loss), sx, sy, "#999", [4, 3]);
  c.fillStyle = "#333"; c.fillText("training loss", canvas.width - 180, 12);
  c.fillStyle = "#999"; c.fillText("test loss (dashed)", canvas.width - 100, 12);
}

const CURVE_COLORS = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"];

function drawCurves(curves) {
  const canvas = $("activation-chart"), c = canvas.getContext("2d");
  const all = curves.flatMap((k) => [...k.y, ...k.dy]).filter((v) => v !== null && isFinite(v));
  const ymin = Math.max(-6, Math.min(-1, ...all)), ymax = Math.min(6, Math.max(1, ...all));
  const [sx, sy] = axes(c, canvas.width, canvas.height, -5, 5, ymin, ymax);
  const clip = (ys) => ys.map((v) => (v === null || v < ymin || v > ymax ? null : v));
  c.strokeStyle = "#ddd"; c.beginPath(); c.moveTo(sx(-5), sy(0)); c.lineTo(sx(5), sy(0)); c.moveTo(sx(0), sy(ymin)); c.lineTo(sx(0), sy(ymax)); c.stroke();
  curves.forEach((k, i) => {
    const col = CURVE_COLORS[i % CURVE_COLORS.length];
    line(c, k.x, clip(k.y), sx, sy, col);
    line(c, k.x, clip(k.dy), sx, sy, col, [5, 4]);
    c.fillStyle = col; c.fillText(`${k.name} (dashed: derivative)`, 34, 14 + 12 * i);
  });
  const pairs = curves.filter((k) => k.pair).map((k) => k.name);
  $("activation-note").textContent = (pairs.length ? `${pairs.join(", ")} act on a whole vector: drawn on the pair (x, 0). ` : "")
    + "Derivatives come from lamina's autodiff.";
}

function pct(v) { return v === null || v === undefined ? "" : `${Math.round(v * 100)}%`; }

function showHealth(h) {
  const body = $("health").querySelector("tbody");
  body.innerHTML = "";
  for (const e of h.layers) {
    const tr = document.createElement("tr");
    const cells = [e.layer, e.activation || "", pct(e.dead), pct(e.saturated), e.grad_norm === null ? "nan" : fmtNum(e.grad_norm)];
    cells.forEach((t, i) => {
      const td = document.createElement("td");
      td.textContent = t;
      if ((i === 2 && e.dead > 0.5) || (i === 3 && e.saturated > 0.5 && !e.paired_with_loss)) td.className = "bad";
      // An output whose loss is computed from its logits: a flat sigmoid there is a confident answer, not a stuck one.
      if (i === 3 && e.paired_with_loss) td.title = "the loss is computed from this layer's logits: no vanishing gradient";
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
  listInto($("warnings"), h.warnings.map((w) => ({ cls: "warning", text: w })));
}

function showLint(findings) {
  const items = findings.map((f) => ({ cls: f.severity, head: `${f.severity} · ${f.rule}`, text: `${f.message} Fix: ${f.fix}` }));
  if (!items.length) items.push({ cls: "ok", text: "No lint findings for this network." });
  listInto($("lint"), items);
}

function listInto(ul, items) {
  const key = JSON.stringify(items);
  if (ul.dataset.shown === key) return;
  ul.dataset.shown = key;
  ul.innerHTML = "";
  for (const it of items) {
    const li = document.createElement("li");
    li.className = it.cls;
    if (it.head) { const b = document.createElement("b"); b.textContent = it.head + ": "; li.appendChild(b); }
    li.appendChild(document.createTextNode(it.text));
    ul.appendChild(li);
  }
}

function download(msg) {
  const blob = msg.format === "keras"
    ? new Blob([decode(msg.data)], { type: "application/octet-stream" })
    : new Blob([msg.text], { type: "text/x-python" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = msg.filename;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

// ------------------------------------------------------------------ buttons

function wire() {
  $("play").onclick = () => { playing = true; send({ type: "play" }); document.body.dataset.playing = "1"; };
  $("pause").onclick = () => { playing = false; send({ type: "pause" }); document.body.dataset.playing = "0"; };
  $("step").onclick = () => { playing = false; send({ type: "step" }); document.body.dataset.playing = "0"; };
  $("reset").onclick = () => send({ type: "reset" });
  $("export-keras").onclick = () => send({ type: "export", format: "keras" });
  $("export-python").onclick = () => send({ type: "export", format: "python" });
  $("copy-link").onclick = () => navigator.clipboard && navigator.clipboard.writeText(location.href);
  $("show-test").onchange = () => lastFrame && drawBoundary(lastFrame);
  $("add-layer").onclick = () => {
    const s = readSettings();
    if (s.layers.length < choices.max_layers) s.layers.push({ units: 4, activation: "relu" });
    renderLayers(s.layers); applySettings(s);
  };
  $("remove-layer").onclick = () => {
    const s = readSettings();
    s.layers.pop(); renderLayers(s.layers); applySettings(s);
  };
  connect();
}

document.addEventListener("DOMContentLoaded", wire);
