// nerfsculpt labeling page: pick best and worst (or rank fully) of 2-6 geometries, or left/right in an A/B study.
// Talks to the server's /api routes; every answer is saved on the server before the next question shows.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
const NAME_KEY = "nerfsculpt.annotator";
const SKIP_KEY = "nerfsculpt.skipped";

const ui = {
  annotator: localStorage.getItem(NAME_KEY),
  state: null,       // last /api/state response
  best: null,        // slot picked as best
  worst: null,       // slot picked as worst
  order: [],         // slots in rank order (full ranking)
  showRgb: false,
  busy: false,
};

const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (TOKEN) headers["X-Nerfsculpt-Token"] = TOKEN;
  const response = await fetch(path, body === undefined ? { headers } :
    { method: "POST", headers, body: JSON.stringify(body) });
  const data = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(data.detail || response.statusText);
  return data;
}

function skipped() {
  return JSON.parse(sessionStorage.getItem(SKIP_KEY) || "[]");
}

// Keys, card clicks and the buttons do nothing while an answer or undo is being saved: a quick
// second key press must not answer the question that shows next.
function ready() {
  return !ui.busy && ui.state !== null && ui.state.question !== null;
}

function status(message) {
  $("status").textContent = message || "";
}

async function load(questionId) {
  const params = new URLSearchParams({ annotator: ui.annotator, skip: skipped().join(",") });
  if (questionId !== undefined) params.set("question", questionId);
  try {
    show(await api("api/state?" + params.toString()));
  } catch (error) {
    status(error.message);
  }
}

function show(state) {
  ui.state = state;
  ui.best = ui.worst = null;
  ui.order = [];
  $("study").textContent = `nerfsculpt · ${state.study.name}`;
  $("progress").textContent = `${state.progress.answered} / ${state.progress.available} answered`;
  $("who").textContent = ui.annotator;
  $("undo").disabled = !state.can_undo;
  $("undo-done").disabled = !state.can_undo;
  const ab = state.study.kind === "ab";
  $("fullbox").hidden = ab;
  $("cant").textContent = ab ? "No preference (0)" : "Can't decide (0)";
  if (state.question === null) {
    if (skipped().length) {           // skipped questions come back once everything else is answered
      sessionStorage.removeItem(SKIP_KEY);
      load();
      return;
    }
    $("task").hidden = true;
    $("done").hidden = false;
    return;
  }
  $("task").hidden = false;
  $("done").hidden = true;
  const n = state.question.items.length;
  $("instructions").textContent = ab
    ? "Which face geometry looks better? Click it or press 1 (left) / 2 (right); 0 for no preference."
    : ($("full").checked
      ? `Click (or press 1-${n}) from best to worst.`
      : `Click (or press 1-${n}) the best geometry, then the worst.`);
  render();
}

function render() {
  const question = ui.state.question;
  const n = question.items.length;
  const cols = n === 4 ? 2 : Math.min(n, 3);
  const cards = $("cards");
  cards.style.setProperty("--cols", cols);   // app.css sizes the images so that the rows fit the window
  cards.style.setProperty("--rows", Math.ceil(n / cols));
  cards.replaceChildren(...question.items.map((item) => card(item)));
}

function image(item, view) {
  const img = document.createElement("img");
  if (item.views.includes(view)) {
    img.src = `images/${item.item_id}/${view}` + (TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : "");
  }
  img.alt = `${view} of item ${item.slot + 1}`;
  return img;
}

function card(item) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.slot = item.slot;
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = String(item.slot + 1);
  const mark = document.createElement("span");
  mark.className = "mark";
  const views = document.createElement("div");   // a box of fixed size: no jump while images load
  views.className = ui.showRgb ? "views rgb" : "views";
  views.append(...(ui.showRgb ? ["rgb"] : ["front", "three_quarter", "profile"]).map((view) => image(item, view)));
  div.append(label, mark, views);
  if (ui.best === item.slot) { div.classList.add("best"); mark.textContent = "best"; }
  if (ui.worst === item.slot) { div.classList.add("worst"); mark.textContent = "worst"; }
  const rank = ui.order.indexOf(item.slot);
  if (rank >= 0) { div.classList.add("ranked"); mark.textContent = `#${rank + 1}`; }
  div.addEventListener("click", () => pick(item.slot));
  return div;
}

function pick(slot) {
  if (!ready()) return;
  const n = ui.state.question.items.length;
  if (slot < 0 || slot >= n) return;
  if (ui.state.study.kind === "ab") {
    submit({ best: slot, worst: 1 - slot });
    return;
  }
  if ($("full").checked) {
    const at = ui.order.indexOf(slot);
    if (at >= 0) ui.order = ui.order.slice(0, at);
    else ui.order.push(slot);
    if (ui.order.length === n - 1) {
      const last = [...Array(n).keys()].find((s) => !ui.order.includes(s));
      submit({ ranking: [...ui.order, last] });
      return;
    }
  } else if (ui.best === null) {
    ui.best = slot;
    if (n === 2) { submit({ best: slot, worst: 1 - slot }); return; }
  } else if (slot === ui.best) {
    ui.best = null;
  } else {
    ui.worst = slot;
    submit({ best: ui.best, worst: ui.worst });
    return;
  }
  render();
}

async function submit(verdict) {
  ui.busy = true;
  render();
  try {
    await api("api/answer", { question_id: ui.state.question.id, annotator: ui.annotator, ...verdict });
    status("");
    await load();
  } catch (error) {
    status(`Not saved: ${error.message}`);
    ui.best = ui.worst = null;
    ui.order = [];
    render();
  } finally {
    ui.busy = false;
  }
}

async function undo() {
  if (ui.busy) return;
  ui.busy = true;
  try {
    show(await api("api/undo", { annotator: ui.annotator }));
    status("Last answer undone: answer it again.");
  } catch (error) {
    status(error.message);
  } finally {
    ui.busy = false;
  }
}

function skip() {
  if (!ready()) return;
  sessionStorage.setItem(SKIP_KEY, JSON.stringify([...skipped(), ui.state.question.id]));
  load();
}

function toggleRgb() {
  ui.showRgb = !ui.showRgb;
  $("rgb").textContent = ui.showRgb ? "Show geometry (R)" : "Show RGB (R)";
  if (ui.state && ui.state.question) render();
}

document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" && event.target.type !== "checkbox") return;
  if (!ui.annotator || ui.busy) return;
  const key = event.key.toLowerCase();
  if (key >= "1" && key <= "6") pick(Number(key) - 1);
  else if (key === "0") $("cant").click();
  else if (key === "u") undo();
  else if (key === "s") skip();
  else if (key === "r") toggleRgb();
  else if (key === "f" && ui.state && ui.state.study.kind !== "ab") { $("full").click(); }
});

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  if (!name) return;
  ui.annotator = name;
  localStorage.setItem(NAME_KEY, name);
  $("login").hidden = true;
  load();
});
$("who").addEventListener("click", () => {
  localStorage.removeItem(NAME_KEY);
  location.reload();
});
$("undo").addEventListener("click", undo);
$("undo-done").addEventListener("click", undo);
$("skip").addEventListener("click", skip);
$("rgb").addEventListener("click", toggleRgb);
$("cant").addEventListener("click", () => {
  if (ready()) submit({ cant_decide: true });
});
$("full").addEventListener("change", () => { if (ui.state) show(ui.state); });

if (ui.annotator) load();
else $("login").hidden = false;
