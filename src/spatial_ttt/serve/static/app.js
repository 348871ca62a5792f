// The spatial-ttt page: grabs frames from a video file or the webcam at the session's rate, pushes them as JPEG,
// asks questions at any time (answers stream in over server-sent events) and shows frames/s and memory live.
"use strict";

const $ = (id) => document.getElementById(id);
const video = $("video"), canvas = $("canvas");
const state = { session: null, source: null, running: false, sending: false, lastT: -1, t0: 0, sent: [], duration: 0 };

function headers(extra = {}) {
  const token = $("token").value.trim();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function api(method, path, body, contentType = "application/json") {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": contentType }) };
  if (body !== undefined) init.body = contentType === "application/json" ? JSON.stringify(body) : body;
  const response = await fetch(`api${path}`, init);
  if (!response.ok) {
    const detail = await response.json().then((j) => j.detail, () => response.statusText);
    throw new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return response;
}

function showError(err) { $("error").textContent = err ? String(err.message || err) : ""; }
const mb = (bytes) => `${(bytes / 1048576).toFixed(2)} MB`;

function videoTime() {
  return state.source === "webcam" ? (performance.now() - state.t0) / 1000 : video.currentTime;
}

function showSession(info) {
  $("observed").textContent = info.frames;
  $("memory").textContent = mb(info.memory_bytes);
}

async function ensureSession() {
  if (state.session) return state.session;
  const [h, w] = $("size").value.toLowerCase().split("x").map(Number);
  const body = { fps: Number($("fps").value), chunk_frames: Number($("chunk").value), size: [h, w] };
  const info = await (await api("POST", "/sessions", body)).json();
  state.session = info.id;
  $("session-id").textContent = info.id;
  for (const id of ["pause", "save", "reset", "delete", "ask"]) $(id).disabled = false;
  showSession(info);
  return info.id;
}

async function pushFrame() {
  if (!state.running || state.sending || video.readyState < 2) return;
  const t = videoTime();
  if (t <= state.lastT) return;  // the video has not moved on
  const [h, w] = $("size").value.toLowerCase().split("x").map(Number);
  canvas.width = w; canvas.height = h;
  canvas.getContext("2d").drawImage(video, 0, 0, w, h);
  state.sending = true;
  try {
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    const response = await api("POST", `/sessions/${state.session}/frames?t=${t.toFixed(3)}`, blob, "image/jpeg");
    state.lastT = t;
    state.sent.push(performance.now());
    $("frames").textContent = state.sent.length;
    showSession(await response.json());
    showError(null);
  } catch (err) {
    showError(err);
  } finally {
    state.sending = false;
  }
}

function tick() {
  const now = performance.now();
  const recent = state.sent.filter((s) => now - s < 5000);
  const span = recent.length > 1 ? (now - recent[0]) / 1000 : 0;
  $("rate").textContent = span > 0 ? ((recent.length - 1) / span).toFixed(1) : "0.0";
  $("clock").textContent = `${videoTime().toFixed(1)} s`;
  if (video.ended && state.running) stop();
}

let timer = null;
async function start() {
  try {
    await ensureSession();
    state.running = true;
    if (state.source === "file") await video.play();
    clearInterval(timer);
    timer = setInterval(pushFrame, 1000 / Number($("fps").value));
    $("pause").textContent = "Pause";
    showError(null);
  } catch (err) { showError(err); }
}

function stop() {
  state.running = false;
  clearInterval(timer);
  if (state.source === "file") video.pause();
  $("pause").textContent = "Resume";
}

function addMark(t) {
  state.duration = Math.max(state.duration, t, video.duration || 0);
  const mark = document.createElement("div");
  mark.className = "mark";
  mark.dataset.t = t;
  $("timeline").appendChild(mark);
  for (const m of $("timeline").children) m.style.left = `${(100 * m.dataset.t) / Math.max(state.duration, 1e-3)}%`;
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || !state.session) return;
  const t = Math.max(state.lastT, 0);
  const item = document.createElement("li");
  item.innerHTML = `<span class="t"></span><span class="q"></span><div class="answer"></div>`;
  item.querySelector(".t").textContent = `${t.toFixed(1)} s`;
  item.querySelector(".q").textContent = question;
  $("answers").prepend(item);
  addMark(t);
  const out = item.querySelector(".answer");
  try {
    const body = { question, max_new_tokens: Number($("max-tokens").value) };
    const response = await api("POST", `/sessions/${state.session}/ask`, body);
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const name = (block.match(/^event: (.*)$/m) || [])[1];
        const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "{}");
        if (name === "token") out.textContent += data.token;
        else if (name === "done") { out.textContent = data.answer; item.classList.add("done"); }
        else if (name === "error") throw new Error(`${data.status}: ${data.detail}`);
      }
    }
  } catch (err) {
    item.classList.add("failed");
    out.textContent = `(${err.message})`;
  }
}

async function refreshServer() {
  try {
    const info = await (await api("GET", "/sessions")).json();
    $("server-memory").textContent = mb(info.memory_bytes);
    const mine = info.sessions.find((s) => s.id === state.session);
    if (mine) showSession(mine);
  } catch (err) { /* the next push shows what is wrong */ }
}

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (!file) return;
  if (video.srcObject) { video.srcObject.getTracks().forEach((track) => track.stop()); video.srcObject = null; }
  video.src = URL.createObjectURL(file);
  state.source = "file";
  $("start").disabled = false;
});

$("webcam").addEventListener("click", async () => {
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
    await video.play();
    state.source = "webcam";
    state.t0 = performance.now() - 1000 * Math.max(state.lastT, 0);  // the clock goes on from the last frame
    $("start").disabled = false;
  } catch (err) { showError(err); }
});

$("start").addEventListener("click", start);
$("pause").addEventListener("click", () => (state.running ? stop() : start()));
$("ask-form").addEventListener("submit", ask);
$("save").addEventListener("click", () => api("POST", `/sessions/${state.session}/save`).then(refreshServer, showError));
$("reset").addEventListener("click", async () => {
  try {
    stop();
    showSession(await (await api("POST", `/sessions/${state.session}/reset`)).json());
    state.lastT = -1;
    state.t0 = performance.now();
    if (state.source === "file") video.currentTime = 0;
    $("answers").textContent = ""; $("timeline").textContent = "";
  } catch (err) { showError(err); }
});
$("delete").addEventListener("click", async () => {
  try {
    stop();
    await api("DELETE", `/sessions/${state.session}`);
    state.session = null; state.lastT = -1; state.sent = [];
    $("session-id").textContent = "none";
    for (const id of ["pause", "save", "reset", "delete", "ask"]) $(id).disabled = true;
  } catch (err) { showError(err); }
});
setInterval(tick, 250);
setInterval(refreshServer, 2000);
