"use strict";
// The page talks to this server only: GET /api/model for the facts, POST /api/predict per file.
const $ = (id) => document.getElementById(id);
let threshold = 0.5;
let objectUrl = null;

const fmt = (p) => (p === null || p === undefined ? "none" : p.toFixed(4));
// green (Real) to red (Fake) through the score
const colour = (p) => `hsl(${Math.round(120 * (1 - p))}, 75%, 40%)`;

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function loadFacts() {
  const response = await fetch("/api/model");
  const facts = await response.json();
  threshold = facts.threshold;
  if (facts.warning) {  // a model trained on the generated sample: said before anything is scored
    $("model-warning").textContent = facts.warning;
    $("model-warning").hidden = false;
  }
  const auc = (v) => (v === null || v === undefined ? "not recorded" : fmt(v));
  const items = [
    ["model", `${facts.model} (${facts.file}, sha256 ${facts.sha256.slice(0, 12)})`],
    ["input", `${facts.image_size} × ${facts.image_size} RGB`],
    ["trained (file written)", facts.trained],
    ["threshold", `${fmt(facts.threshold)}${facts.threshold_rule ? ` (${facts.threshold_rule})` : ""}`],
    ["Validation AUC", auc(facts.validation_auc)],
    ["Test AUC", auc(facts.test_auc)],
    ["learned from", facts.trained_on || "not recorded in the model file"],
    ["limits", `${(facts.limits.upload_bytes / 2 ** 20).toFixed(0)} MiB upload, `
      + `${(facts.limits.pixels / 1e6).toFixed(0)} megapixels, ${facts.limits.video_seconds} s of video`],
  ];
  const list = $("facts-list");
  list.replaceChildren();
  for (const [key, value] of items) {
    const dt = document.createElement("dt");
    dt.textContent = key;
    const dd = document.createElement("dd");
    dd.textContent = value;
    dd.id = `fact-${key.split(" ")[0].toLowerCase()}`;
    list.append(dt, dd);
  }
}

async function analyse(file) {
  $("result").hidden = true;
  setStatus(`Scoring ${file.name} …`);
  const form = new FormData();
  form.append("file", file);
  form.append("detect", $("detect").checked);
  form.append("explain", $("explain").checked);
  const started = performance.now();
  let response, body;
  try {
    response = await fetch("/api/predict", { method: "POST", body: form });
    body = await response.json();
  } catch (error) {
    setStatus(`The server did not answer (${error.message}); is it still running?`, true);
    return;
  }
  if (!response.ok) {
    setStatus(`Not scored: ${body.detail}`, true);
    return;
  }
  setStatus(`Scored in ${Math.round(performance.now() - started)} ms.`);
  show(file, body);
}

function show(file, body) {
  const verdict = body.rows.find((row) => row.kind === "file");
  const faces = body.rows.map((row, index) => ({ ...row, index })).filter((row) => row.kind === "face");
  const cams = new Map((body.explain || []).map((item) => [item.row, item.png]));
  // no face found: no verdict (null label and score), never one from the scene around it
  $("verdict-label").textContent = verdict.label || "No face found";
  $("verdict").className = verdict.label || "none";
  $("verdict-score").textContent = fmt(verdict.p_fake);
  $("verdict-score").dataset.pFake = String(verdict.p_fake);
  $("verdict-note").textContent = `${verdict.file}: ${verdict.note}; threshold ${fmt(body.threshold)}`;
  // what this verdict is worth: the model's own figures on its held-out Validation split
  const v = body.validation;
  $("verdict-model").textContent = (v
    ? `The model on its Validation split: ROC-AUC ${fmt(v.roc_auc)}, balanced accuracy `
      + `${fmt(v.balanced_accuracy)} (${v.n_real} real, ${v.n_fake} fake images).`
    : "The model's Validation figures are not recorded for this file (run `dvc repro evaluate`).")
    + (body.warning ? " It was trained on the generated sample: this score means nothing for a real photo." : "");
  if (objectUrl) URL.revokeObjectURL(objectUrl);
  objectUrl = URL.createObjectURL(file);
  const isVideo = verdict.frames !== null;
  $("canvas").hidden = isVideo;
  $("video").hidden = !isVideo;
  $("strip-box").hidden = !isVideo;
  $("video-note").hidden = true;
  if (isVideo) {
    $("video").src = objectUrl;
    drawStrip(faces);
  } else {
    drawBoxes(objectUrl, faces);
  }
  fillTable(faces, cams);
  $("result").hidden = false;
}

// A codec the browser lacks (OpenCV's mp4v) fails with an error, or loads with no picture (width 0).
function wireVideoNote() {
  const video = $("video");
  const note = () => { if (!video.hidden) $("video-note").hidden = false; };
  video.addEventListener("error", note);
  video.addEventListener("loadedmetadata", () => { if (!video.videoWidth) note(); });
}

function drawBoxes(url, faces) {
  const image = new Image();
  image.onload = () => {
    const canvas = $("canvas");
    const scale = Math.min(1, 800 / image.naturalWidth);
    canvas.width = Math.round(image.naturalWidth * scale);
    canvas.height = Math.round(image.naturalHeight * scale);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    ctx.lineWidth = 3;
    ctx.font = "bold 16px system-ui, sans-serif";
    faces.forEach((face, k) => {
      const [x, y, w, h] = face.box.map((v) => v * scale);
      ctx.strokeStyle = ctx.fillStyle = colour(face.p_fake);
      ctx.strokeRect(x, y, w, h);
      const text = `${k + 1}: ${face.label} ${fmt(face.p_fake)}`;
      const top = y > 22 ? y - 22 : y;
      ctx.fillRect(x, top, ctx.measureText(text).width + 8, 22);
      ctx.fillStyle = "white";
      ctx.fillText(text, x + 4, top + 16);
    });
  };
  image.onerror = () => setStatus("Scored, but this browser cannot show the image itself.");
  image.src = url;
}

function drawStrip(faces) {
  const perFrame = new Map();  // frame → [time, its most suspicious face's P(fake)]
  for (const face of faces) {
    const seen = perFrame.get(face.frame);
    if (!seen || face.p_fake > seen[1]) perFrame.set(face.frame, [face.time, face.p_fake]);
  }
  const frames = [...perFrame.entries()].sort((a, b) => a[0] - b[0]);
  const canvas = $("strip");
  canvas.width = canvas.clientWidth || 800;
  const ctx = canvas.getContext("2d");
  const width = canvas.width / Math.max(frames.length, 1);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  frames.forEach(([, [, p]], i) => {
    ctx.fillStyle = colour(p);
    const height = Math.max(2, p * canvas.height);
    ctx.fillRect(i * width + 1, canvas.height - height, Math.max(1, width - 2), height);
  });
  ctx.strokeStyle = "#000";
  ctx.setLineDash([4, 3]);
  const line = canvas.height * (1 - threshold);
  ctx.beginPath();
  ctx.moveTo(0, line);
  ctx.lineTo(canvas.width, line);
  ctx.stroke();
  canvas.dataset.frames = String(frames.length);
  canvas.onclick = (event) => {
    const i = Math.floor((event.offsetX / canvas.clientWidth) * frames.length);
    if (frames[i]) $("video").currentTime = frames[i][1][0];
  };
}

function fillTable(faces, cams) {
  const rows = faces.map((face, k) => {
    const tr = document.createElement("tr");
    const cells = [k + 1, face.frame ?? "", face.time ?? "", face.box.join(", ")
      + (face.face ? "" : " (whole image)"), fmt(face.p_fake), face.label];
    for (const value of cells) {
      const td = document.createElement("td");
      td.textContent = String(value);
      tr.append(td);
    }
    tr.children[5].className = face.label;
    const cam = document.createElement("td");
    if (cams.has(face.index)) {
      const img = document.createElement("img");
      img.src = cams.get(face.index);
      img.alt = `Grad-CAM of face ${k + 1}: evidence for ${face.label}`;
      cam.append(img);
    }
    tr.append(cam);
    return tr;
  });
  $("faces").tBodies[0].replaceChildren(...rows);
}

function wireDropZone() {
  const zone = $("drop");
  $("file").addEventListener("change", () => {
    const chosen = $("file").files[0];
    $("file").value = "";  // choosing the same file again is a new change
    if (chosen) analyse(chosen);
  });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length) analyse(event.dataTransfer.files[0]);
  });
}

wireDropZone();
wireVideoNote();
loadFacts().catch((error) => setStatus(`Cannot read the model's facts (${error.message}).`, true));
