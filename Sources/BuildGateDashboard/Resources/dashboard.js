// BuildGate dashboard: live updates over Server-Sent Events. The pages read without it.
"use strict";

const terminal = ["succeeded", "failed", "cancelled", "timedOut", "expired"];

function setStatus(element, status) {
  element.textContent = status;
  element.className = "status status-" + status;
}

// The builds list: every status change of this tenant's builds, from /v1/events.
function followBuilds(table) {
  const body = table.querySelector("tbody");
  const events = new EventSource("/v1/events");
  events.addEventListener("build", (event) => {
    const change = JSON.parse(event.data);
    let row = body.querySelector(`tr[data-build-id="${change.buildId}"]`);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.buildId = change.buildId;
      const link = document.createElement("a");
      link.href = "/ui/builds/" + encodeURIComponent(change.buildId);
      link.textContent = change.buildId;
      const cells = [document.createElement("td"), document.createElement("td")];
      cells[0].appendChild(link);
      const status = document.createElement("span");
      status.dataset.status = "";
      cells[1].appendChild(status);
      row.append(...cells, document.createElement("td"), document.createElement("td"), document.createElement("td"));
      body.prepend(row);
    }
    setStatus(row.querySelector("[data-status]"), change.status);
  });
}

// ANSI colours and bold as classes, the same as the server's rendering.
function renderLine(text) {
  const fragment = document.createDocumentFragment();
  let classes = [];
  let last = 0;
  const pattern = /\x1b\[([0-9;]*)([A-Za-z])/g;
  const add = (part) => {
    if (!part) return;
    const span = document.createElement("span");
    if (classes.length) span.className = classes.join(" ");
    span.textContent = part.replace(/\r/g, "");
    fragment.appendChild(span);
  };
  for (let match; (match = pattern.exec(text)); ) {
    add(text.slice(last, match.index));
    last = pattern.lastIndex;
    if (match[2] !== "m") continue;
    for (const code of (match[1] || "0").split(";").map(Number)) {
      if (code === 0) classes = [];
      else if (code === 1) classes.push("ansi-bold");
      else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97) || code === 39) {
        classes = classes.filter((c) => !c.startsWith("ansi-fg"));
        if (code !== 39) classes.push("ansi-fg" + (code >= 90 ? code - 90 + 8 : code - 30));
      }
    }
  }
  add(text.slice(last));
  return fragment;
}

// One build's page: its log from where the server-rendered text ends, and its status.
function followLog(log) {
  if (log.dataset.terminal === "true") return;
  const id = log.dataset.buildId;
  let lines = log.querySelectorAll(".line").length;
  let partial = null; // the last line, while it has no line end yet
  const status = document.getElementById("build-status");
  const source = new EventSource(`/v1/builds/${encodeURIComponent(id)}/logs?offset=${log.dataset.offset}`);
  const append = (text) => {
    const parts = text.split("\n");
    parts.forEach((part, index) => {
      const last = index === parts.length - 1;
      if (last && part === "") { partial = null; return; }
      if (partial) {
        partial.querySelector(".text").appendChild(renderLine(part));
      } else {
        lines += 1;
        const line = document.createElement("div");
        line.className = "line";
        line.id = "L" + lines;
        const number = document.createElement("a");
        number.className = "number";
        number.href = "#L" + lines;
        number.textContent = lines;
        const content = document.createElement("span");
        content.className = "text";
        content.appendChild(renderLine(part));
        line.append(number, content);
        log.appendChild(line);
        partial = line;
      }
      if (!last) partial = null;
    });
    log.scrollTop = log.scrollHeight;
  };
  source.addEventListener("log", (event) => append(event.data));
  source.addEventListener("status", (event) => setStatus(status, JSON.parse(event.data).status));
  source.addEventListener("end", (event) => {
    const end = JSON.parse(event.data);
    setStatus(status, end.status);
    const cancel = document.getElementById("cancel-form");
    if (cancel && terminal.includes(end.status)) cancel.remove();
    source.close();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.querySelector("table[data-live-events]");
  if (table) followBuilds(table);
  const log = document.getElementById("log");
  if (log) followLog(log);
});
