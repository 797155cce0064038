// cnnlab serve: draw or upload an image, send it to POST /api/explain, show the answer.
// Plain JavaScript, no library. The canvas takes mouse, pen and touch alike (pointer events).
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const LINE_WIDTH = canvas.width / 14; // a stroke about as thick, relative to the digit, as MNIST's
const DRAW_DEBOUNCE_MS = 250; // while drawing, ask at most this long after the last movement
const MAX_BARS = 20; // more classes than this: show the most probable ones
const STAGE_WIDTH = 560; // px a stage's mosaic may take

let model = null;
let blank = true;
let drawing = false;
let last = null;
let timer = null;
let inFlight = false;
let queued = null; // the latest image waiting while a request is in flight
const stageViews = new Map();

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function clearCanvas() {
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  blank = true;
}

function point(event) {
  const rect = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - rect.left) * canvas.width) / rect.width,
    y: ((event.clientY - rect.top) * canvas.height) / rect.height,
  };
}

function strokeTo(p) {
  ctx.strokeStyle = $("ink").value;
  ctx.lineWidth = LINE_WIDTH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(last.x, last.y);
  ctx.lineTo(p.x, p.y);
  ctx.stroke();
  last = p;
  blank = false;
}

canvas.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  drawing = true;
  last = point(event);
  strokeTo(last); // a dot
});

canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) strokeTo(point(e));
  clearTimeout(timer);
  timer = setTimeout(sendCanvas, DRAW_DEBOUNCE_MS);
});

function endStroke() {
  if (!drawing) return;
  drawing = false;
  clearTimeout(timer);
  sendCanvas();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

$("clear").addEventListener("click", () => {
  clearCanvas();
  clearTimeout(timer);
  queued = null;
  setStatus(model && model.digits ? "draw a digit" : "draw or upload an image");
});

$("upload").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  event.target.value = ""; // the same file can be chosen again
  if (!file) return;
  send(file, file.type || "application/octet-stream");
  try {
    const bitmap = await createImageBitmap(file);
    clearCanvas();
    const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    const w = bitmap.width * scale;
    const h = bitmap.height * scale;
    ctx.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    blank = false;
  } catch (err) {
    // the browser cannot show it; the server's answer says why
  }
});

// aria-busy on the results: true from a stroke's end until its answer is shown.
function setBusy(busy) {
  $("result-panel").setAttribute("aria-busy", busy ? "true" : "false");
}

function sendCanvas() {
  if (blank) return;
  setBusy(true);
  canvas.toBlob((blob) => send(blob, "image/png"), "image/png");
}

async function send(body, type) {
  if (inFlight) {
    queued = { body, type };
    return;
  }
  inFlight = true;
  setBusy(true);
  setStatus("thinking…");
  try {
    const started = performance.now();
    const response = await fetch("/api/explain?k=3", {
      method: "POST",
      headers: { "Content-Type": type },
      body,
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    render(answer);
    setStatus(`answered in ${Math.round(performance.now() - started)} ms`);
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    inFlight = false;
    if (queued) {
      const next = queued;
      queued = null;
      send(next.body, next.type);
    } else {
      setBusy(false);
    }
  }
}

function percent(p) {
  return `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;
}

function barRow(label, fraction, text, highlight) {
  const row = document.createElement("div");
  row.className = highlight ? "bar-row best" : "bar-row";
  const name = document.createElement("span");
  name.className = "label";
  name.textContent = label;
  name.title = label;
  const track = document.createElement("span");
  track.className = "track";
  const fill = document.createElement("span");
  fill.className = "fill";
  fill.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
  track.append(fill);
  const value = document.createElement("span");
  value.className = "value";
  value.textContent = text;
  row.append(name, track, value);
  return row;
}

function renderProbabilities(answer) {
  const probs = answer.probabilities;
  let order = probs.map((_, i) => i);
  if (probs.length > MAX_BARS) order = order.sort((a, b) => probs[b] - probs[a]).slice(0, MAX_BARS);
  $("probabilities-title").textContent =
    probs.length > MAX_BARS ? `The ${MAX_BARS} most probable of ${probs.length} classes` : "Class probabilities";
  $("probabilities").replaceChildren(
    ...order.map((i) => barRow(model.classes[i], probs[i], percent(probs[i]), i === answer.index)),
  );
}

// Bars of a vector, centred on zero: blue up for positive values, orange down for negative.
function drawVector(target, values) {
  const barWidth = Math.max(2, Math.min(8, Math.floor(STAGE_WIDTH / values.length)));
  target.width = values.length * barWidth;
  target.height = 64;
  const c = target.getContext("2d");
  const finite = values.filter((v) => v !== null);
  const peak = Math.max(1e-12, ...finite.map(Math.abs));
  const mid = target.height / 2;
  c.clearRect(0, 0, target.width, target.height);
  c.fillStyle = "#d0d7de";
  c.fillRect(0, mid, target.width, 1);
  values.forEach((v, i) => {
    if (v === null) return;
    const h = (Math.abs(v) / peak) * (mid - 2);
    c.fillStyle = v >= 0 ? "#1f6feb" : "#e8772e";
    c.fillRect(i * barWidth, v >= 0 ? mid - h : mid + 1, Math.max(1, barWidth - 1), h);
  });
}

function stageView(key) {
  if (stageViews.has(key)) return stageViews.get(key);
  const box = document.createElement("div");
  box.className = "stage";
  const heading = document.createElement("h4");
  const caption = document.createElement("div");
  caption.className = "caption";
  box.append(heading, caption);
  $("stages").append(box);
  const view = { box, heading, caption, figure: null };
  stageViews.set(key, view);
  return view;
}

// The view's picture: an <img> for maps or a <canvas> for bars, made on first use.
function figureOf(view, tag, className) {
  if (!view.figure) {
    view.figure = document.createElement(tag);
    view.figure.className = className;
    view.box.insertBefore(view.figure, view.caption);
  }
  return view.figure;
}

function showMaps(view, stage) {
  const [c, h, w] = stage.shape;
  const img = figureOf(view, "img", "maps");
  const gridWidth = stage.columns * (w + 1) + 1;
  const scale = Math.max(1, Math.min(8, Math.floor(STAGE_WIDTH / gridWidth)));
  img.alt = `${stage.name}: ${c} feature maps`;
  img.src = stage.image;
  img.style.width = `${gridWidth * scale}px`;
  view.caption.textContent = stage.shown < c ? `the first ${stage.shown} of ${c} maps` : "";
}

function showVector(view, values, caption) {
  drawVector(figureOf(view, "canvas", "vector"), values);
  view.caption.textContent = caption;
}

function renderInside(answer) {
  for (const stage of answer.stages) {
    const view = stageView(`stage:${stage.name}`);
    view.heading.textContent = `${stage.name} · ${stage.shape.join("×")}`;
    if (stage.kind === "maps") showMaps(view, stage);
    else showVector(view, stage.values, `${stage.shape[0]} values, one per map`);
  }
  const f = answer.features;
  const fview = stageView("features");
  fview.heading.textContent = `${f.name} · ${f.values.length}`;
  showVector(fview, f.values, "the vector the classifier reads");
  if (answer.rbf_distances) {
    const d = answer.rbf_distances;
    const view = stageView("rbf");
    view.heading.textContent = "output · distance to each class prototype (RBF)";
    const far = Math.max(1e-12, ...d.filter((v) => v !== null));
    const rows = d.map((v, i) =>
      barRow(model.classes[i], v === null ? 1 : v / far, v === null ? "–" : v.toFixed(1), i === answer.index),
    );
    const list = document.createElement("div");
    list.className = "bars rbf";
    list.append(...rows);
    view.caption.replaceChildren(list, "the prediction is the nearest prototype (smallest distance)");
  }
}

function render(answer) {
  $("prediction").querySelector(".class").textContent = answer.class;
  $("prediction").querySelector(".probability").textContent = percent(answer.probability);
  $("model-input").src = answer.model_input;
  $("gradcam").src = answer.gradcam.image;
  $("gradcam-caption").textContent = `Grad-CAM at ${answer.gradcam.layer}`;
  $("saliency").src = answer.saliency.image;
  renderProbabilities(answer);
  renderInside(answer);
  document.body.classList.add("answered");
}

async function start() {
  clearCanvas();
  try {
    const response = await fetch("/api/model");
    model = await response.json();
    if (!response.ok) throw new Error(model.error || response.statusText);
  } catch (err) {
    setStatus(`cannot read the model: ${err.message}`, true);
    return;
  }
  const [c, h, w] = model.input_size;
  const trained = model.dataset ? ` on ${model.dataset}` : "";
  $("model-info").textContent =
    `${model.name}${trained} · ${model.num_classes} classes · input ${c}×${h}×${w}` +
    (model.output === "rbf" ? " · RBF output" : "");
  $("model-input-caption").textContent = `what the model saw (${h}×${w})`;
  $("input-title").textContent = model.digits ? "Draw a digit" : "Draw or upload an image";
  $("ink-label").hidden = c !== 3;
  setStatus(model.digits ? "draw a digit" : "draw or upload an image");
}

start();
