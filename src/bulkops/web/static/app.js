// bulkops dashboard: small, dependency-free. Text from the server is only ever set with
// textContent (never innerHTML), so file names, values and messages stay text.
"use strict";

(function () {
  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  };

  // The labels are bulkops.model's, rendered into the page as a JSON block (one source).
  const STATUS_LABELS = (() => {
    const block = document.getElementById("status-labels");
    try { return block ? JSON.parse(block.textContent) : {}; } catch (error) { return {}; }
  })();

  const OUTCOME_LABELS = (() => {
    const block = document.getElementById("outcome-labels");
    try { return block ? JSON.parse(block.textContent) : {}; } catch (error) { return {}; }
  })();

  // The badge's words for an ended operation (the server's outcome_text, for live updates).
  function outcomeText(data) {
    if (data.outcome === "completed_with_errors") {
      const failed = Number(data.failed_records) || 0;
      return `completed with ${failed.toLocaleString("en-US")} error${failed === 1 ? "" : "s"}`;
    }
    return OUTCOME_LABELS[data.outcome] || data.outcome;
  }

  const number = (n) => (Number(n) || 0).toLocaleString("en-US");

  // "1,204 updated · 6 failed": the server's count_summary (routes.py), for live updates.
  function countSummary(data) {
    if (data.operation_type === "export") {
      const rows = Number(data.processed_records) || 0;
      return `${number(rows)} row${rows === 1 ? "" : "s"} written`;
    }
    const check = Boolean(data.config && data.config.validate_only);
    const words = [
      ["created_records", "created", "to create"], ["updated_records", "updated", "to update"],
      ["deleted_records", "deleted", "to delete"], ["unchanged_records", "unchanged", "unchanged"],
      ["failed_records", "failed", "would fail"], ["rolled_back_records", "rolled back", "rolled back"],
      ["conflict_records", "conflicts", "conflicts"],
    ];
    const parts = [];
    for (const [name, done, would] of words) {
      if (Number(data[name])) parts.push(`${number(data[name])} ${check ? would : done}`);
    }
    return parts.join(" · ") || "no records";
  }

  // -- times: the browser's locale and time zone ---------------------------------------------

  const exactFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "long" });
  const dayFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });

  // The same words as the server's _ago (routes.py).
  function ago(moment, now) {
    const seconds = Math.max((now - moment) / 1000, 0);
    if (seconds < 45) return "just now";
    if (seconds < 3600 - 30) return `${Math.max(Math.round(seconds / 60), 1)} min ago`;
    if (seconds < 86400 - 1800) return `${Math.round(seconds / 3600)} h ago`;
    const days = Math.round(seconds / 86400);
    if (days <= 1) return "yesterday";
    if (days < 7) return `${days} days ago`;
    return dayFormat.format(moment);
  }

  function showTimes() {
    const now = new Date();
    for (const node of document.querySelectorAll("time[data-time]")) {
      const moment = new Date(node.getAttribute("datetime"));
      if (Number.isNaN(moment.getTime())) continue;
      if (node.dataset.time === "ago") {
        node.textContent = ago(moment, now);
        node.title = exactFormat.format(moment);
      } else {
        node.textContent = exactFormat.format(moment);
      }
    }
  }

  // The server words its fallback times, and counts "today", in this zone.
  function rememberTimeZone() {
    let zone = "";
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (error) { zone = ""; }
    if (!zone || zone.length > 64) return;
    const current = document.cookie.split("; ").find((c) => c.startsWith("bulkops_tz="));
    if (current && decodeURIComponent(current.slice("bulkops_tz=".length)) === zone) return;
    const secure = window.location.protocol === "https:" ? "; Secure" : "";
    document.cookie = `bulkops_tz=${encodeURIComponent(zone)}; path=/; max-age=31536000; SameSite=Lax${secure}`;
  }

  function formatBytes(n) {
    const units = ["bytes", "KB", "MB", "GB"];
    let size = n;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit += 1; }
    return unit === 0 ? `${size} bytes` : `${size.toFixed(1)} ${units[unit]}`;
  }

  function formatSeconds(s) {
    if (s === null || s === undefined) return "time remaining unknown";
    if (s < 1) return "less than a second left";
    if (s < 90) return `about ${Math.round(s)} s left`;
    if (s < 5400) return `about ${Math.round(s / 60)} min left`;
    return `about ${(s / 3600).toFixed(1)} h left`;
  }

  // -- talking to the API -------------------------------------------------------------------

  async function api(method, url, body, contentType) {
    const headers = { "X-CSRF-Token": csrf(), Accept: "application/json" };
    if (contentType) headers["Content-Type"] = contentType;
    let response;
    try {
      response = await fetch(url, { method, body, headers, credentials: "same-origin" });
    } catch (error) {
      return { ok: false, status: 0, problem: null };
    }
    let data = null;
    try { data = await response.json(); } catch (error) { data = null; }
    return { ok: response.ok, status: response.status, data, problem: response.ok ? null : data };
  }

  // The labels of the form's controls (new.html), by the option they set.
  const CONTROL_OF = {
    encoding: "Encoding (CSV)", sheet: "Sheet (Excel workbook)", delimiter: "Delimiter (CSV)",
    decimal_separator: "Decimal separator of prices",
  };

  function dashboardRemedy(e) {
    if (e.hint_field === "mapping") {
      if (e.code === "duplicate_column") return "";
      if (e.suggestion) return ` Rename the column to “${e.suggestion}” in your file and upload it again.`;
      return " Rename or remove the column in your file (the columns bulkops knows are listed beside the form) and upload it again.";
    }
    if (e.hint_field && CONTROL_OF[e.hint_field]) {
      const what = e.hint_value ? `“${e.hint_value}”` : "it";
      return ` Choose ${what} under “${CONTROL_OF[e.hint_field]}” above and start again.`;
    }
    return "";
  }

  // Turns a problem+json answer into sentences for someone who does not read JSON.
  function explain(result, what) {
    const p = result.problem || {};
    const detail = typeof p.detail === "string" ? p.detail : "";
    const items = [];
    for (const e of Array.isArray(p.errors) ? p.errors : []) {
      // A file problem says what is wrong and where ("what"); how to settle it is worded
      // here with this page's controls, never with the API's fields or the CLI's flags.
      let text = e.what !== undefined ? e.what + dashboardRemedy(e) : (e.message || "");
      if (e.column && !text.includes(e.column)) text = `Column “${e.column}”: ${text}`;
      if (e.field && e.field !== "file" && !text.includes(e.field)) text = `${e.field.replace(/_/g, " ")}: ${text}`;
      if (e.suggestion && !text.includes(e.suggestion)) text += ` Did you mean “${e.suggestion}”?`;
      if (e.line) text += ` (line ${e.line})`;
      items.push(text);
    }
    switch (result.status) {
      case 0:
        return { lead: "The server could not be reached. Check your connection and try again.", items };
      case 401:
        return { lead: "Your session has ended. Log in again, then retry.", items };
      case 403:
        return { lead: detail || `You may not ${what}.`, items };
      case 409:
        return { lead: detail || `This cannot be done now.`, items };
      case 413:
        return { lead: "The file is too large to upload. Split it into smaller files and upload them one by one.", items: detail ? [detail] : items };
      case 415:
        return { lead: "This file is not a CSV or TSV text file or an Excel workbook (.xlsx) (it looks like an older workbook, PDF, image or other binary file). In your spreadsheet program choose “Save as” → “Excel Workbook (.xlsx)” or “CSV UTF-8” and upload that file.", items: items.length ? items : (detail ? [detail] : []) };
      case 422:
        return { lead: "The file or the settings need fixing before anything can be imported. Nothing was changed.", items: items.length ? items : (detail ? [detail] : []) };
      default:
        return { lead: `Something went wrong (${result.status}). ${detail}`.trim(), items };
    }
  }

  function showProblem(box, explanation) {
    box.textContent = "";
    const lead = document.createElement("p");
    lead.textContent = explanation.lead;
    box.appendChild(lead);
    if (explanation.items.length) {
      const list = document.createElement("ul");
      for (const text of explanation.items) {
        const li = document.createElement("li");
        li.textContent = text;
        list.appendChild(li);
      }
      box.appendChild(list);
    }
    box.hidden = false;
  }

  // -- confirmation dialog -------------------------------------------------------------------

  function confirmAction(text) {
    const dialog = document.getElementById("confirm");
    if (!dialog || typeof dialog.showModal !== "function") return Promise.resolve(window.confirm(text));
    document.getElementById("confirm-text").textContent = text;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
      document.getElementById("confirm-ok").focus();
    });
  }

  // -- new operation -------------------------------------------------------------------------

  function setUpUpload(form) {
    const entity = form.querySelector("#entity_type");
    const link = document.getElementById("template-link");
    const label = document.querySelector("[data-template-entity]");
    const box = document.getElementById("upload-errors");
    const busy = form.querySelector("[data-upload-busy]");
    const button = form.querySelector("#upload-button");
    const fileInput = form.querySelector("#file");
    const maxBytes = Number(form.dataset.maxBytes);

    const syncEntity = () => {
      link.href = `/api/v1/templates/${encodeURIComponent(entity.value)}`;
      const xlsxLink = document.getElementById("template-link-xlsx");
      if (xlsxLink) xlsxLink.href = `/api/v1/templates/${encodeURIComponent(entity.value)}?format=xlsx`;
      label.textContent = entity.value;
      for (const block of document.querySelectorAll("[data-columns-for]")) {
        block.hidden = block.dataset.columnsFor !== entity.value;
      }
    };
    entity.addEventListener("change", syncEntity);
    syncEntity();

    const checkSize = () => {
      const file = fileInput.files && fileInput.files[0];
      if (file && maxBytes && file.size > maxBytes) {
        showProblem(box, {
          lead: `This file is ${formatBytes(file.size)}; the limit is ${formatBytes(maxBytes)}. Split it into smaller files and upload them one by one.`,
          items: [],
        });
        return false;
      }
      box.hidden = true;
      return true;
    };
    fileInput.addEventListener("change", checkSize);

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = fileInput.files && fileInput.files[0];
      if (!file) {
        showProblem(box, { lead: "Choose the CSV file to upload first.", items: [] });
        fileInput.focus();
        return;
      }
      if (!checkSize()) { fileInput.focus(); return; }
      const chunk = form.querySelector("#chunk_size");
      // min and max are rendered from OperationConfig's schema (see new.html).
      const least = Number(chunk.min);
      const most = Number(chunk.max);
      if (chunk.value && !(Number(chunk.value) >= least && Number(chunk.value) <= most && Number.isInteger(Number(chunk.value)))) {
        const range = `${least.toLocaleString("en-US")} to ${most.toLocaleString("en-US")}`;
        showProblem(box, { lead: `Chunk size must be a whole number from ${range}.`, items: [] });
        chunk.focus();
        return;
      }
      const body = new FormData(form);
      if (!chunk.value) body.delete("chunk_size");
      button.disabled = true;
      busy.hidden = false;
      box.hidden = true;
      const result = await api("POST", "/api/v1/operations", body);
      button.disabled = false;
      busy.hidden = true;
      if (result.ok && result.data && result.data.id) {
        window.location.assign(`/operations/${encodeURIComponent(result.data.id)}`);
        return;
      }
      showProblem(box, explain(result, "start operations"));
      box.focus();
    });
  }

  // -- export, cancel, rollback --------------------------------------------------------------

  function setUpExport(form) {
    const entity = form.querySelector("#export-entity");
    const column = form.querySelector("#export-column");
    const value = form.querySelector("#export-value");
    const box = form.querySelector("#export-errors");
    const button = form.querySelector("#export-button");
    const busy = form.querySelector("[data-export-busy]");

    // Only the chosen entity's columns can filter it.
    const syncColumns = () => {
      for (const option of column.querySelectorAll("option[data-entity]")) {
        const other = option.dataset.entity !== entity.value;
        option.hidden = other;
        option.disabled = other;
      }
      if (column.selectedOptions[0] && column.selectedOptions[0].disabled) column.value = "";
      value.disabled = !column.value;
    };
    entity.addEventListener("change", syncColumns);
    column.addEventListener("change", syncColumns);
    syncColumns();

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const filters = {};
      if (column.value) {
        if (!value.value.trim()) {
          showProblem(box, { lead: `Enter the value of “${column.value}” to export, or choose “No filter: every row”.`, items: [] });
          value.focus();
          return;
        }
        filters[column.value] = value.value.trim();
      }
      const format = form.querySelector('input[name="format"]:checked');
      const body = new URLSearchParams({
        operation_type: "export", entity_type: entity.value, format: format ? format.value : "csv",
      });
      if (column.value) body.set("filters", JSON.stringify(filters));
      button.disabled = true;
      busy.hidden = false;
      box.hidden = true;
      const result = await api("POST", "/api/v1/operations", body.toString(), "application/x-www-form-urlencoded");
      button.disabled = false;
      busy.hidden = true;
      if (result.ok && result.data && result.data.id) {
        window.location.assign(`/operations/${encodeURIComponent(result.data.id)}`);
        return;
      }
      showProblem(box, explain(result, "start exports"));
      box.focus();
    });
  }

  function setUpActions() {
    const box = document.querySelector("[data-action-error]");
    for (const form of document.querySelectorAll("form[data-action]")) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const checkbox = form.querySelector('input[type="checkbox"]');
        const checked = Boolean(checkbox && checkbox.checked);
        const text = checked ? form.dataset.confirmChecked : form.dataset.confirm;
        if (!(await confirmAction(text))) return;
        const action = form.dataset.action;
        const payload = action === "cancel" ? { rollback: checked } : { force: checked };
        const url = `/api/v1/operations/${encodeURIComponent(form.dataset.opId)}/${action}`;
        const result = await api("POST", url, JSON.stringify(payload), "application/json");
        if (result.ok) { window.location.reload(); return; }
        if (box) showProblem(box, explain(result, `${action} operations`));
      });
    }
  }

  // -- live progress -------------------------------------------------------------------------

  function watch(element) {
    const id = element.dataset.liveOp;
    const reloadOnDone = element.hasAttribute("data-reload-on-done");
    const connection = element.querySelector('[data-field="connection"]');
    let source = null;
    let delay = 1000;
    let finished = false;

    const set = (name, value) => {
      for (const node of element.querySelectorAll(`[data-field="${name}"]`)) {
        if (name === "progress") node.value = Number(value) || 0;
        else if (name.endsWith("_records")) node.textContent = number(value);
        else node.textContent = String(value);
      }
    };
    const setStatus = (data) => {
      const status = data.status;
      // Once it has ended, the badge says how it went (the outcome), not only "completed".
      const text = data.outcome ? outcomeText(data) : (STATUS_LABELS[status] || status);
      const className = data.outcome ? `badge outcome-${data.outcome}` : `badge status-${status}`;
      const badges = Array.from(element.querySelectorAll('[data-field="status"]'));
      const pageBadge = document.querySelector('.title-row [data-field="status"]');
      if (reloadOnDone && pageBadge) badges.push(pageBadge);
      for (const badge of badges) {
        badge.textContent = text;
        badge.className = className;
      }
      const queued = element.querySelector("[data-queued]");
      if (queued) queued.hidden = status !== "pending";
    };
    const apply = (data) => {
      if (data.status) setStatus(data);
      for (const name of ["processed_records", "total_records", "created_records", "updated_records",
        "deleted_records", "unchanged_records", "failed_records"]) {
        if (data[name] !== undefined && data[name] !== null) set(name, data[name]);
      }
      if (data.percentage !== undefined) { set("percentage", data.percentage); set("progress", data.percentage); }
      if (data.rate !== undefined && data.rate !== null) set("rate", number(Math.round(Number(data.rate))));
      if ("estimated_time_remaining" in data) set("remaining", formatSeconds(data.estimated_time_remaining));
    };
    const onMessage = (event) => {
      delay = 1000;
      if (connection) connection.textContent = "";
      try { apply(JSON.parse(event.data)); } catch (error) { /* a malformed frame is skipped */ }
    };
    const connect = () => {
      source = new EventSource(`/api/v1/operations/${encodeURIComponent(id)}/events`);
      for (const name of ["progress", "rollback-progress", "status"]) source.addEventListener(name, onMessage);
      source.addEventListener("open", () => { if (connection) connection.textContent = ""; });
      source.addEventListener("done", (event) => {
        finished = true;
        onMessage(event);
        if (element.hasAttribute("data-summary-live")) {
          // A history line: the progress gives way to the final counts.
          try {
            const data = JSON.parse(event.data);
            const cell = element.querySelector(".op-summary");
            if (cell) {
              const summary = document.createElement("span");
              summary.dataset.field = "summary";
              summary.textContent = countSummary(data);
              cell.replaceChildren(summary);
            }
          } catch (error) { /* the numbers already shown stay */ }
        }
        source.close();
        element.removeAttribute("data-live-op");
        if (reloadOnDone) window.setTimeout(() => window.location.reload(), 300);
      });
      source.addEventListener("error", () => {
        if (finished) return;
        if (connection) connection.textContent = "Connection lost; reconnecting…";
        if (source.readyState === EventSource.CLOSED) {
          // The browser gave up (e.g. the server answered with an error): try again later.
          window.setTimeout(connect, delay);
          delay = Math.min(delay * 2, 30000);
        }
      });
    };
    connect();
  }

  rememberTimeZone();

  document.addEventListener("DOMContentLoaded", () => {
    showTimes();
    window.setInterval(showTimes, 30000);
    const upload = document.getElementById("upload-form");
    if (upload) setUpUpload(upload);
    const exportForm = document.getElementById("export-form");
    if (exportForm) setUpExport(exportForm);
    setUpActions();
    for (const element of document.querySelectorAll("[data-live-op]")) watch(element);
  });
})();
