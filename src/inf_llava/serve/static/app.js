// The INF-LLaVA web page: upload an image, see its DCM crop layout, chat with answers streamed over SSE from the
// OpenAI-compatible API served by the same process. No framework, no external resources.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { image: null, history: [], model: null, busy: false };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function setStatus(text) { $("status").textContent = text; }

async function errorMessage(response) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || response.statusText;
  } catch (e) {
    return response.status + " " + response.statusText;
  }
}

async function loadModel() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (response.ok) {
    const body = await response.json();
    state.model = body.data[0].id;
    $("model-name").textContent = state.model;
  }
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function useImage(file) {
  if (!file) return;
  state.image = await readFile(file);
  state.history = [];
  $("messages").replaceChildren();
  $("preview").src = state.image;
  $("preview").hidden = false;
  $("drop-hint").textContent = file.name;
  await showLayout();
}

function gridLines(container, rows, cols) {
  container.querySelectorAll(".line").forEach((el) => el.remove());
  for (let i = 1; i < rows; i++) {
    const line = document.createElement("div");
    line.className = "line";
    Object.assign(line.style, { left: 0, right: 0, top: (100 * i / rows) + "%", height: "2px" });
    container.appendChild(line);
  }
  for (let j = 1; j < cols; j++) {
    const line = document.createElement("div");
    line.className = "line";
    Object.assign(line.style, { top: 0, bottom: 0, left: (100 * j / cols) + "%", width: "2px" });
    container.appendChild(line);
  }
}

function fillGrid(container, urls, cols, kind) {
  container.style.gridTemplateColumns = `repeat(${cols}, 1fr)`;
  container.replaceChildren(...urls.map((url, k) => {
    const img = document.createElement("img");
    img.src = url;
    img.alt = `${kind} view ${k}`;
    img.title = `${kind} view ${k} (row ${Math.floor(k / cols)}, column ${k % cols})`;
    return img;
  }));
}

async function showLayout() {
  setStatus("computing crop layout…");
  const response = await fetch("/v1/inf-llava/views", {
    method: "POST", headers: headers(), body: JSON.stringify({ image: state.image }),
  });
  if (!response.ok) {
    $("layout").hidden = true;
    addMessage("error", "image refused: " + await errorMessage(response));
    setStatus("ready");
    return;
  }
  const views = await response.json();
  const [rows, cols] = views.grid;
  $("view-image").src = views.image;
  gridLines($("high-res"), rows, cols);
  fillGrid($("views-local"), views.local, cols, "local");
  fillGrid($("views-global"), views.global, cols, "global");
  $("layout-caption").textContent =
    `${views.input_size[0]}×${views.input_size[1]} input → ${views.high_res[1]}×${views.high_res[0]} ` +
    `(padded to the grid's aspect), ${rows}×${cols} grid${views.dynamic ? " (chosen for this image)" : ""}, ` +
    `${views.view_size}px views, ` +
    `${views.tokens_per_image} image tokens`;
  $("layout").hidden = false;
  $("layout").dataset.ready = "true";
  setStatus("ready");
}

function addMessage(role, text) {
  const el = document.createElement("div");
  el.className = "message " + role;
  el.textContent = text;
  $("messages").appendChild(el);
  el.scrollIntoView({ block: "end" });
  return el;
}

function userMessage(text) {
  if (state.history.length === 0 && state.image) {
    return { role: "user", content: [
      { type: "image_url", image_url: { url: state.image } }, { type: "text", text: text },
    ] };
  }
  return { role: "user", content: text };
}

async function ask(text) {
  const message = userMessage(text);
  addMessage("user", text);
  const bubble = addMessage("assistant pending", "");
  state.busy = true;
  $("send").disabled = true;
  setStatus("generating…");
  let answer = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({
        model: state.model,
        messages: [...state.history, message],
        stream: true,
        max_tokens: Number($("max-tokens").value) || 256,
        temperature: Number($("temperature").value) || 0,
      }),
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let finished = false;
    while (!finished) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") { finished = true; break; }
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          const delta = chunk.choices.length ? chunk.choices[0].delta.content : null;
          if (delta) {
            answer += delta;
            bubble.textContent = answer;
            bubble.dataset.pieces = String(Number(bubble.dataset.pieces || 0) + 1);
          }
        }
      }
    }
    state.history.push(message, { role: "assistant", content: answer });
    bubble.dataset.done = "true";
    setStatus("ready");
  } catch (error) {
    bubble.classList.add("error");
    bubble.textContent = (answer ? answer + "\n" : "") + "error: " + error.message;
    bubble.dataset.done = "error";
    setStatus("error");
  } finally {
    bubble.classList.remove("pending");
    state.busy = false;
    $("send").disabled = false;
  }
}

$("image-input").addEventListener("change", (e) => useImage(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  useImage(e.dataTransfer.files[0]);
});
$("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("question").value.trim();
  if (!text || state.busy) return;
  $("question").value = "";
  ask(text);
});
$("question").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask").requestSubmit(); }
});
$("reset").addEventListener("click", () => { state.history = []; $("messages").replaceChildren(); });
$("api-key").addEventListener("change", loadModel);
loadModel();
