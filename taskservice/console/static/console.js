// taskservice console: confirmation dialogs, and the live views of one invocation and of one execution. No framework, no build step.
"use strict";

// Every form with data-confirm asks first, in a <dialog>; a confirmed form is sent with confirmed=1.
// Without JavaScript the server asks on a page of its own instead.
// Listening on the document, so forms a live view draws later (the execution page's Stop and Redrive) ask too.
(function confirmations() {
  const dialog = document.getElementById("confirm-dialog");
  if (!dialog) return;
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.matches("form[data-confirm]")) return;
    if (form.dataset.confirmed === "1") return;
    event.preventDefault();
    dialog.querySelector(".question").textContent = form.dataset.confirm;
    document.getElementById("confirm-ok").textContent = "Yes, " + (form.dataset.confirmLabel || "go").toLowerCase();
    dialog.returnValue = "";
    dialog.showModal();
    dialog.addEventListener("close", function onClose() {
      dialog.removeEventListener("close", onClose);
      if (dialog.returnValue !== "ok") return;
      const flag = document.createElement("input");
      flag.type = "hidden"; flag.name = "confirmed"; flag.value = "1";
      form.appendChild(flag);
      form.dataset.confirmed = "1";
      if (!form.isConnected) {  // a live view redrew its part while the dialog was open: send the form all the same
        form.hidden = true;
        document.body.appendChild(form);
      }
      form.submit();
    });
  });
})();

// Filter forms leave their empty fields out of the URL, so a shared link says only what was chosen.
document.querySelectorAll("form.filters").forEach((form) => {
  form.addEventListener("submit", () => {
    form.querySelectorAll("input, select").forEach((field) => { if (field.value === "") field.disabled = true; });
  });
});

// The invocation page polls its live endpoint while the invocation has not ended: progress, status and new log
// lines. A change of status reloads the page, so buttons, timeline, result and destinations are drawn afresh.
(function liveInvocation() {
  const root = document.getElementById("invocation");
  if (!root || root.dataset.terminal === "true") return;
  const logs = document.getElementById("logs");
  const empty = document.getElementById("logs-empty");
  const progressCard = document.getElementById("progress-card");
  let lastLog = Number(root.dataset.lastLog || 0);
  const shownStatus = root.dataset.status;

  function setProgress(percent, message) {
    if (percent === null || percent === undefined) return;
    progressCard.hidden = false;
    const box = progressCard.querySelector(".progress");
    box.setAttribute("aria-valuenow", String(percent));
    box.querySelector(".bar").style.width = Math.max(0, Math.min(100, percent)) + "%";
    box.querySelector(".label").textContent = Math.round(percent) + " %" + (message ? " · " + message : "");
  }

  function appendLogs(lines) {
    if (!lines.length) return;
    const atBottom = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 8;
    for (const line of lines) {
      const span = document.createElement("span");
      span.className = "log-" + line.level.toLowerCase();
      span.dataset.id = line.id;
      span.textContent = "[" + line.at.replace("T", " ").replace("Z", " UTC") + "] #" + line.attempt + " " +
        line.level + " " + line.message;
      logs.appendChild(span);
      logs.appendChild(document.createTextNode("\n"));
    }
    empty.hidden = true;
    if (atBottom) logs.scrollTop = logs.scrollHeight;
  }

  async function poll() {
    let data;
    try {
      const response = await fetch(root.dataset.liveUrl + "?after=" + lastLog, {credentials: "same-origin",
                                                                                headers: {Accept: "application/json"}});
      if (response.status === 401) { window.location.reload(); return; }
      if (!response.ok) throw new Error("HTTP " + response.status);
      data = await response.json();
    } catch (err) {
      document.getElementById("log-state").textContent = "reconnecting…";
      setTimeout(poll, 3000);
      return;
    }
    document.getElementById("log-state").textContent = "live";
    appendLogs(data.logs);
    lastLog = data.lastLogId;
    setProgress(data.progress.percent, data.progress.message);
    document.getElementById("attempts").textContent = data.attempts;
    if (data.status !== shownStatus) { window.location.reload(); return; }
    setTimeout(poll, data.logs.length >= 1000 ? 50 : 1000);
  }
  setTimeout(poll, 1000);
})();

// The execution page polls its live endpoint while the execution has not ended. The endpoint sends the page's
// changing parts (status, buttons, facts, the step graph, the iterations, input and output) as HTML drawn by the
// same macros as the page, and the history rows after the last one shown; a part is swapped only when it changed,
// so nothing flickers and the page never reloads. One more poll after the end draws the final state.
(function liveExecution() {
  const root = document.getElementById("execution");
  if (!root || root.dataset.terminal === "true") return;
  const history = document.querySelector("#history tbody");
  const state = document.getElementById("live-state");
  const shown = {};
  let lastEvent = Number(root.dataset.lastEvent || 0);

  // Every render signs a fresh CSRF token: a part that differs only in it is the same part, and is left alone
  // (a focused Stop button must not be replaced under the keyboard every second).
  const sameness = (html) => html.replace(/name="csrf_token" value="[^"]*"/g, "");

  function swap(id, html) {
    const key = sameness(html);
    if (shown[id] === key) return;
    const element = document.getElementById(id);
    if (element && sameness(element.innerHTML) !== key) element.innerHTML = html;
    shown[id] = key;
  }

  async function poll() {
    let data;
    try {
      const response = await fetch(root.dataset.liveUrl + "?after=" + lastEvent, {credentials: "same-origin",
                                                                                  headers: {Accept: "application/json"}});
      if (response.status === 401) { window.location.reload(); return; }
      if (!response.ok) throw new Error("HTTP " + response.status);
      data = await response.json();
    } catch (err) {
      state.textContent = "reconnecting…";
      setTimeout(poll, 3000);
      return;
    }
    for (const [id, html] of Object.entries(data.parts)) swap(id, html);
    if (root.dataset.cut !== "true" && data.events.length) history.insertAdjacentHTML("beforeend", data.events.join(""));
    lastEvent = data.lastEventId;
    root.dataset.status = data.status;
    if (data.terminal) {
      root.dataset.terminal = "true";
      state.textContent = "";
      return;
    }
    state.textContent = "live";
    setTimeout(poll, data.events.length >= 1000 ? 50 : 1000);
  }
  setTimeout(poll, 1000);
})();
