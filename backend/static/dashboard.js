// The dashboard's only script: swaps in the live part of the page once a second, and
// submits the form through the API (POST /tasks), showing the API's own answer.
"use strict";

const REFRESH_MS = 1000;

async function refresh() {
  const live = document.getElementById("live");
  const connection = document.getElementById("connection");
  try {
    const response = await fetch(live.dataset.src, { cache: "no-store" });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error || `the backend answered ${response.status}`);
    }
    // Keep open what the reader opened: the swap would close every <details>.
    const open = [...live.querySelectorAll("details[open]")].map((d) => d.dataset.task);
    live.innerHTML = await response.text();
    for (const task of open) {
      const details = live.querySelector(`details[data-task="${task}"]`);
      if (details) details.open = true;
    }
    connection.textContent = "";
    live.classList.remove("stale");
  } catch (error) {
    connection.textContent = `Not updating, the figures below are from ${new Date(
      live.dataset.updated || Date.now()).toLocaleTimeString()}: ${error.message}`;
    live.classList.add("stale");
    return;
  }
  live.dataset.updated = Date.now();
}

async function schedule() {
  // No polling while the tab is hidden, and never two requests at once on a slow link.
  if (!document.hidden) await refresh();
  setTimeout(schedule, REFRESH_MS);
}

// "s3://bucket/some/key.csv" -> an S3 source; anything else is a path under DATA_DIR.
function sourceOf(text) {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(text);
  return match ? { storage: "s3", bucket: match[1], key: match[2] }
               : { storage: "local", path: text };
}

async function submit(event) {
  event.preventDefault();
  const form = event.target;
  const result = document.getElementById("submit-result");
  const fields = new FormData(form);
  const options = {};
  if (fields.get("header")) options.header = fields.get("header") === "true";
  if (fields.get("delimiter")) options.delimiter = fields.get("delimiter");
  const file = fields.get("file");
  const source = String(fields.get("source") || "").trim();

  let request;
  if (file && file.size > 0) {
    const query = new URLSearchParams(
      Object.entries(options).map(([name, value]) => [name, String(value)]));
    query.set("filename", file.name);  // kept as source.filename, for people to read
    request = fetch(`${form.dataset.api}?${query}`, {
      method: "POST", headers: { "Content-Type": "text/csv" }, body: file });
  } else if (source) {
    request = fetch(form.dataset.api, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...sourceOf(source), ...options }) });
  } else {
    result.textContent = "Name a file, or choose one to upload.";
    result.className = "error";
    return;
  }
  result.textContent = "Submitting…";
  result.className = "";
  try {
    const response = await request;
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `the backend answered ${response.status}`);
    result.textContent = `Task ${body.id.slice(0, 8)} is ${body.status}.`;
    form.reset();
  } catch (error) {
    result.textContent = error.message;
    result.className = "error";
  }
  refresh();
}

document.getElementById("submit").addEventListener("submit", submit);
document.getElementById("live").dataset.updated = Date.now();  // rendered with the page
setTimeout(schedule, REFRESH_MS);
