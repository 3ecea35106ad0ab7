// The drawing page: strokes on a 280×280 canvas, sent as PNG to POST /predict while drawing.
// No framework, no build step: this file is served as is.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen").getContext("2d");
const labelOut = document.getElementById("label");
const confidence = document.getElementById("confidence");
const statusLine = document.getElementById("status");
const bars = document.getElementById("bars");

const LIVE_INTERVAL_MS = 150; // at most this often while the pen moves
let drawing = false;
let last = null;
let version = 0; // bumps on every change, so a late answer for an old drawing is ignored
let empty = true;
let inFlight = false;
let timer = null;

for (let d = 0; d < 10; d++) {
  const li = document.createElement("li");
  li.innerHTML = `<span>${d}</span><span class="track"><span class="fill"></span></span><span class="pct"></span>`;
  bars.appendChild(li);
}

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
    const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
    const response = await fetch("/predict", {
      method: "POST", headers: { "Content-Type": "image/png" }, body: blob });
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

function show(answer) {
  const p = answer.probabilities;
  labelOut.textContent = String(answer.label);
  confidence.textContent = `${(100 * p[answer.label]).toFixed(1)}% sure`;
  statusLine.textContent = "Keep drawing, or clear to start again.";
  statusLine.classList.remove("error");
  bars.querySelectorAll("li").forEach((li, d) => {
    li.classList.toggle("top", d === answer.label);
    li.querySelector(".fill").style.width = `${(100 * p[d]).toFixed(1)}%`;
    li.querySelector(".pct").textContent = `${(100 * p[d]).toFixed(1)}%`;
  });
  const rows = answer.input;
  const img = seen.createImageData(rows[0].length, rows.length);
  rows.flat().forEach((v, i) => {
    img.data.set([v, v, v, 255], 4 * i);
  });
  seen.putImageData(img, 0, 0);
}

function showError(message) {
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
  labelOut.textContent = "?";
  confidence.textContent = "";
  statusLine.textContent = "Draw a digit (0–9) with the mouse, a pen or a finger.";
  statusLine.classList.remove("error");
  bars.querySelectorAll("li").forEach((li) => {
    li.classList.remove("top");
    li.querySelector(".fill").style.width = "0";
    li.querySelector(".pct").textContent = "";
  });
  seen.clearRect(0, 0, 28, 28);
}

document.getElementById("clear").addEventListener("click", clearAll);

fetch("/model").then((r) => r.json()).then((m) => {
  const acc = m.metrics && m.metrics.test_accuracy;
  document.getElementById("model-info").textContent =
    `${m.name}: MLP ${m.architecture} (${m.activation})` +
    (acc ? `, ${(100 * acc).toFixed(2)}% on the MNIST test set` : "");
}).catch(() => {});

resetPad();
