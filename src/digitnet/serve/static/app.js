// The drawing page: strokes on a 280×280 canvas, sent as PNG to POST /predict while drawing;
// or a photo (chosen or dropped on the pad), sent as it is. No framework, no build step.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen").getContext("2d");
const labelOut = document.getElementById("label");
const confidence = document.getElementById("confidence");
const statusLine = document.getElementById("status");
const bars = document.getElementById("bars");
const top3 = document.getElementById("top3");
const why = document.getElementById("why").getContext("2d");
const answerBox = document.querySelector(".answer");

const LIVE_INTERVAL_MS = 150; // at most this often while the pen moves
// Below this top probability the page says "not sure" rather than stating an answer.
const SURE_AT_LEAST = 0.6;
// A drawing with less ink than this (canvas pixels), or smaller than this on both sides, is a
// dot or a slip of the pen: no digit to read (one short stroke of a "1" has about 3,000).
const MIN_INK_PIXELS = 1200;
const MIN_EXTENT = 60;
let photo = null; // the chosen or dropped file, sent as it is until the pen draws over it
let drawing = false;
let last = null;
let version = 0; // bumps on every change, so a late answer for an old drawing is ignored
let empty = true;
let inFlight = false;
let timer = null;

// One bar per class: ten for digits; a binary model (one sigmoid unit) answers two.
function makeBars(n) {
  bars.replaceChildren();
  for (let d = 0; d < n; d++) {
    const li = document.createElement("li");
    li.innerHTML = `<span>${d}</span><span class="track"><span class="fill"></span></span><span class="pct"></span>`;
    bars.appendChild(li);
  }
}
makeBars(10);

function resetPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
  ctx.lineWidth = 20;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
}

function point(event) {
  const r = pad.getBoundingClientRect();
  return { x: (event.clientX - r.left) * (pad.width / r.width),
           y: (event.clientY - r.top) * (pad.height / r.height) };
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = point(event);
  ctx.beginPath();
  ctx.arc(last.x, last.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
  ctx.fill();
  changed();
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const p = point(event);
  ctx.beginPath();
  ctx.moveTo(last.x, last.y);
  ctx.lineTo(p.x, p.y);
  ctx.stroke();
  last = p;
  changed();
});

function endStroke() {
  if (!drawing) return;
  drawing = false;
  predictSoon(0);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function changed() {
  photo = null; // the pad (the photo with strokes on it) is what gets sent now
  empty = false;
  version++;
  pad.dataset.version = version;
  predictSoon(LIVE_INTERVAL_MS);
}

function predictSoon(delay) {
  if (timer !== null) {
    if (delay > 0) return; // one is already scheduled
    clearTimeout(timer);
  }
  timer = setTimeout(() => { timer = null; predict(); }, delay);
}

async function predict() {
  if (empty) return;
  if (inFlight) { predictSoon(LIVE_INTERVAL_MS); return; }
  inFlight = true;
  const asked = version;
  try {
    const blob = photo || await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
    const response = await fetch("/predict?explain=true", {
      method: "POST", headers: { "Content-Type": blob.type || "application/octet-stream" },
      body: blob });
    const answer = await response.json();
    if (asked !== version) return; // the drawing changed meanwhile; a newer request follows
    if (!response.ok) { showError(answer.detail || response.statusText); }
    else { show(answer); }
    pad.dataset.predicted = asked;
  } catch (err) {
    showError(`request failed: ${err}`);
  } finally {
    inFlight = false;
  }
}

function inkExtent() {
  // Dark pixels on the white pad, and the larger side of their bounding box.
  const data = ctx.getImageData(0, 0, pad.width, pad.height).data;
  let count = 0, x0 = pad.width, y0 = pad.height, x1 = -1, y1 = -1;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] < 128) {
      const x = (i / 4) % pad.width, y = Math.floor(i / 4 / pad.width);
      count++;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  }
  return { count, extent: count ? Math.max(x1 - x0, y1 - y0) + 1 : 0 };
}

function show(answer) {
  const p = answer.probabilities;
  if (bars.children.length !== p.length) makeBars(p.length);
  const order = p.map((v, d) => [v, d]).sort((a, b) => b[0] - a[0]);
  const ink = photo ? null : inkExtent();
  const tooLittle = ink !== null && (ink.count < MIN_INK_PIXELS || ink.extent < MIN_EXTENT);
  const verdict = tooLittle ? "empty" : p[answer.label] < SURE_AT_LEAST ? "unsure" : "sure";
  answerBox.dataset.verdict = verdict;
  answerBox.classList.toggle("unsure", verdict !== "sure");
  labelOut.textContent = verdict === "empty" ? "?" : String(answer.label);
  const pct = (v) => `${(100 * v).toFixed(1)}%`;
  confidence.textContent = verdict === "sure" ? `${pct(p[answer.label])} sure`
    : verdict === "unsure" ? `not sure: maybe ${order[0][1]} (${pct(order[0][0])}) or ${order[1][1]} (${pct(order[1][0])})`
    : "not sure: too little ink to be a digit; draw it larger";
  statusLine.textContent = photo ? "Your photo, as the model read it. Draw on it, or clear to start again."
    : "Keep drawing, or clear to start again.";
  statusLine.classList.remove("error");
  top3.replaceChildren(...order.slice(0, 3).map(([v, d]) => {
    const li = document.createElement("li");
    li.textContent = `${d}: ${pct(v)}`;
    return li;
  }));
  bars.querySelectorAll("li").forEach((li, d) => {
    li.classList.toggle("top", d === answer.label);
    li.querySelector(".fill").style.width = pct(p[d]);
    li.querySelector(".pct").textContent = pct(p[d]);
  });
  const rows = answer.input;
  const img = seen.createImageData(rows[0].length, rows.length);
  rows.flat().forEach((v, i) => {
    img.data.set([v, v, v, 255], 4 * i);
  });
  seen.putImageData(img, 0, 0);
  if (answer.explanation) {
    // white where nothing pushed; red towards the answer, blue away, by strength
    const e = answer.explanation;
    const heat = why.createImageData(e[0].length, e.length);
    e.flat().forEach((v, i) => {
      const a = Math.min(1, Math.abs(v));
      const rgb = v >= 0 ? [255, 255 * (1 - a), 255 * (1 - a)] : [255 * (1 - a), 255 * (1 - 0.6 * a), 255];
      heat.data.set([...rgb, 255], 4 * i);
    });
    why.putImageData(heat, 0, 0);
  }
}

function showError(message) {
  answerBox.dataset.verdict = "error";
  labelOut.textContent = "?";
  confidence.textContent = "";
  statusLine.textContent = message;
  statusLine.classList.add("error");
}

function clearAll() {
  resetPad();
  empty = true;
  version++;
  delete pad.dataset.version;
  delete pad.dataset.predicted;
  photo = null;
  delete answerBox.dataset.verdict;
  answerBox.classList.remove("unsure");
  top3.replaceChildren();
  why.clearRect(0, 0, 28, 28);
  labelOut.textContent = "?";
  confidence.textContent = "";
  statusLine.textContent = "Draw a digit (0–9) with the mouse, a pen or a finger, or drop a photo of one on the pad.";
  statusLine.classList.remove("error");
  bars.querySelectorAll("li").forEach((li) => {
    li.classList.remove("top");
    li.querySelector(".fill").style.width = "0";
    li.querySelector(".pct").textContent = "";
  });
  seen.clearRect(0, 0, 28, 28);
}

document.getElementById("clear").addEventListener("click", clearAll);

async function usePhoto(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    showError(`${file.name}: not an image (${file.type || "unknown type"})`);
    return;
  }
  clearAll();
  try { // shown on the pad, fitted and centred; the server reads the file itself
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const w = bitmap.width * scale, h = bitmap.height * scale;
    ctx.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch (err) { /* a format the browser cannot draw: the server may still read it */ }
  photo = file;
  empty = false;
  version++;
  pad.dataset.version = version;
  predictSoon(0);
}

const upload = document.getElementById("upload");
upload.addEventListener("change", () => { usePhoto(upload.files[0]); upload.value = ""; });
pad.addEventListener("dragover", (event) => { event.preventDefault(); pad.classList.add("dragover"); });
pad.addEventListener("dragleave", () => pad.classList.remove("dragover"));
pad.addEventListener("drop", (event) => {
  event.preventDefault();
  pad.classList.remove("dragover");
  usePhoto(event.dataTransfer.files[0]);
});

// The model's own test set, by name and size (a run trained on other data, or a binary model
// evaluated on 0/1 labels, is not scored on MNIST's 10,000 digits).
function testSetText(data) {
  const name = data.name === "mnist" ? "MNIST" : data.name;
  const size = Number.isInteger(data.test_size) ? ` (${data.test_size.toLocaleString("en")} images)` : "";
  return name ? `the ${name} test set${size}` : "its test set";
}

fetch("/model").then((r) => r.json()).then((m) => {
  const acc = m.metrics && m.metrics.test_accuracy;
  document.getElementById("model-info").textContent =
    `${m.name}: MLP ${m.architecture} (${m.activation})` +
    (acc ? `, ${(100 * acc).toFixed(2)}% on ${testSetText(m.dataset || {})}` : "");
  // One bar per class from the start: two for a one-sigmoid-unit model, not ten.
  const classes = m.spec && (m.spec.output === "sigmoid" ? 2 : m.spec.num_classes);
  if (Number.isInteger(classes) && classes > 0 && bars.children.length !== classes) makeBars(classes);
}).catch(() => {});

resetPad();
