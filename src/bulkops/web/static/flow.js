// bulkops dashboard, the review flow: upload → review (preview, mapping) → check → apply, and
// fixing failed rows in place. Small and dependency-free, like app.js; every text that comes
// from a file or the server is set with textContent (never innerHTML), so it stays text.
"use strict";

(function () {
  const NUMBER = new Intl.NumberFormat("en-US");
  const PLAN_PAGE = 25;
  const FIX_ROWS = 1000;

  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  };

  const count = (n) => NUMBER.format(Number(n) || 0);
  const plural = (n, one, many) => `${count(n)} ${Number(n) === 1 ? one : many}`;

  // An element with its text (never HTML) and attributes.
  function el(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  async function api(method, url, body, contentType, accept) {
    const headers = { "X-CSRF-Token": csrf(), Accept: accept || "application/json" };
    if (contentType) headers["Content-Type"] = contentType;
    let response;
    try {
      response = await fetch(url, { method, body, headers, credentials: "same-origin" });
    } catch (error) {
      return { ok: false, status: 0, data: null, problem: null };
    }
    let data = null;
    try { data = await response.json(); } catch (error) { data = null; }
    return { ok: response.ok, status: response.status, data, problem: response.ok ? null : data };
  }

  // -- problems, in the words of the page they appear on --------------------------------------

  // controls: option name → the label of this page's control for it.
  function explain(result, what, controls) {
    const p = result.problem || {};
    const detail = typeof p.detail === "string" ? p.detail : "";
    const items = [];
    for (const e of Array.isArray(p.errors) ? p.errors : []) {
      let text = e.what !== undefined ? e.what : (e.message || "");
      if (e.hint_field === "mapping" && controls.mapping) {
        text += ` ${controls.mapping}`;
      } else if (e.hint_field && controls[e.hint_field]) {
        const value = e.hint_value ? `“${e.hint_value}”` : "the right one";
        text += ` Choose ${value} under “${controls[e.hint_field]}”${controls.again || ""}.`;
      }
      if (e.column && !text.includes(e.column)) text = `Column “${e.column}”: ${text}`;
      if (e.field && e.field !== "file" && !controls[e.field] && !text.includes(e.field)) {
        text = `${e.field.replace(/_/g, " ")}: ${text}`;
      }
      if (e.line) text += ` (line ${count(e.line)})`;
      items.push(text);
    }
    switch (result.status) {
      case 0: return { lead: "The server could not be reached. Check your connection and try again.", items };
      case 401: return { lead: "Your session has ended. Log in again, then retry.", items };
      case 403: return { lead: detail || `You may not ${what}.`, items };
      case 404: return { lead: detail || "It no longer exists: upload the file again under New operation.", items };
      case 409: return { lead: detail || "This cannot be done now.", items };
      case 413: return { lead: "The file is too large to upload. Split it into smaller files and upload them one by one.", items: detail ? [detail] : items };
      case 415: return { lead: "This file is not a CSV or TSV text file or an Excel workbook (.xlsx) (it looks like an older workbook, PDF, image or other binary file). In your spreadsheet program choose “Save as” → “Excel Workbook (.xlsx)” or “CSV UTF-8” and upload that file.", items: items.length ? items : (detail ? [detail] : []) };
      case 422: return { lead: "The file cannot be read this way. Nothing was changed.", items: items.length ? items : (detail ? [detail] : []) };
      default: return { lead: `Something went wrong (${result.status}). ${detail}`.trim(), items };
    }
  }

  function showProblem(box, explanation) {
    box.textContent = "";
    box.appendChild(el("p", {}, explanation.lead));
    if (explanation.items.length) {
      const list = el("ul");
      for (const text of explanation.items) list.appendChild(el("li", {}, text));
      box.appendChild(list);
    }
    box.hidden = false;
  }

  function formatBytes(n) {
    const units = ["bytes", "KB", "MB", "GB"];
    let size = n;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit += 1; }
    return unit === 0 ? `${count(size)} bytes` : `${size.toFixed(1)} ${units[unit]}`;
  }

  // The options every start of an operation sends, from number inputs and check boxes.
  function readOptions(root, box) {
    const options = {};
    for (const input of root.querySelectorAll("[data-flag]")) options[input.dataset.flag] = input.checked ? "true" : "false";
    for (const input of root.querySelectorAll("[data-number]")) {
      const text = input.value.trim();
      if (!text) continue;
      const value = Number(text);
      const least = input.min === "" ? 0 : Number(input.min);
      const most = input.max === "" ? Infinity : Number(input.max);
      if (!Number.isInteger(value) || value < least || value > most) {
        const label = root.querySelector(`label[for="${input.id}"]`);
        const range = most === Infinity ? `${count(least)} or more` : `from ${count(least)} to ${count(most)}`;
        showProblem(box, { lead: `${label ? label.textContent : input.dataset.number}: a whole number ${range}, please.`, items: [] });
        input.focus();
        return null;
      }
      options[input.dataset.number] = String(value);
    }
    return options;
  }

  const NOTES_KEY = (id) => `bulkops-upload-notes:${id}`;

  function remember(upload) {
    try {
      if (upload.notes && upload.notes.length) {
        window.sessionStorage.setItem(NOTES_KEY(upload.id), JSON.stringify({ notes: upload.notes, encoding: upload.encoding }));
      }
    } catch (error) { /* no session storage: the note is not shown again */ }
  }

  function remembered(id) {
    try { return JSON.parse(window.sessionStorage.getItem(NOTES_KEY(id)) || "null"); } catch (error) { return null; }
  }

  // -- 1. upload -------------------------------------------------------------------------------

  const NEW_CONTROLS = {
    encoding: "Encoding (CSV)", delimiter: "Delimiter (CSV)",
    decimal_separator: "Decimal separator of prices", sheet: "Sheet (Excel workbook)",
    again: " (under “How to read the file”) and upload it again",
  };

  function setUpNew(form) {
    const entity = form.querySelector("#entity_type");
    const fileInput = form.querySelector("#file");
    const zone = form.querySelector("[data-drop-zone]");
    const chosen = form.querySelector("[data-chosen]");
    const box = document.getElementById("upload-errors");
    const busy = form.querySelector("[data-upload-busy]");
    const button = form.querySelector("#upload-button");
    const maxBytes = Number(form.dataset.maxBytes);
    let file = null;

    const syncEntity = () => {
      const name = encodeURIComponent(entity.value);
      const csv = document.getElementById("template-link");
      const xlsx = document.getElementById("template-link-xlsx");
      if (csv) csv.href = `/api/v1/templates/${name}`;
      if (xlsx) xlsx.href = `/api/v1/templates/${name}?format=xlsx`;
      for (const label of document.querySelectorAll("[data-template-entity]")) label.textContent = entity.value;
      for (const block of document.querySelectorAll("[data-columns-for]")) block.hidden = block.dataset.columnsFor !== entity.value;
    };
    entity.addEventListener("change", syncEntity);
    syncEntity();

    const send = async () => {
      if (!file) {
        showProblem(box, { lead: "Choose or drop the CSV or Excel file to upload first.", items: [] });
        fileInput.focus();
        return;
      }
      if (maxBytes && file.size > maxBytes) {
        showProblem(box, { lead: `This file is ${formatBytes(file.size)}; the limit is ${formatBytes(maxBytes)}. Split it into smaller files and upload them one by one.`, items: [] });
        box.focus();
        return;
      }
      const body = new FormData();
      body.append("entity_type", entity.value);
      body.append("operation_type", form.querySelector("#operation_type").value);
      for (const name of ["encoding", "delimiter", "decimal_separator", "sheet"]) {
        const control = form.querySelector(`#${name}`);
        if (control && control.value.trim()) body.append(name, control.value.trim());
      }
      body.append("file", file, file.name);
      button.disabled = true;
      busy.hidden = false;
      box.hidden = true;
      const result = await api("POST", "/api/v1/uploads", body);
      button.disabled = false;
      busy.hidden = true;
      if (result.ok && result.data && result.data.id) {
        // What the first reading found (an encoding proposed) is said only in this answer:
        // the review page shows it from here.
        remember(result.data);
        window.location.assign(`/uploads/${encodeURIComponent(result.data.id)}`);
        return;
      }
      const explanation = explain(result, "upload files", NEW_CONTROLS);
      showProblem(box, explanation);
      const hinted = ((result.problem || {}).errors || []).some((e) => NEW_CONTROLS[e.hint_field]);
      if (hinted) form.querySelector("details.read-options").open = true;
      box.focus();
    };

    const take = (chosenFile) => {
      file = chosenFile || null;
      chosen.textContent = file ? `${file.name} (${formatBytes(file.size)})` : "";
      if (file) send();
    };
    fileInput.addEventListener("change", () => take(fileInput.files && fileInput.files[0]));
    for (const name of ["dragenter", "dragover"]) {
      zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("dragging"); });
    }
    for (const name of ["dragleave", "drop"]) {
      zone.addEventListener(name, () => zone.classList.remove("dragging"));
    }
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      const dropped = event.dataTransfer && event.dataTransfer.files && event.dataTransfer.files[0];
      if (dropped) take(dropped);
    });
    form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
  }

  // -- 1. review -------------------------------------------------------------------------------

  const REVIEW_CONTROLS = {
    encoding: "Encoding", delimiter: "Delimiter", decimal_separator: "Decimal separator of prices",
    sheet: "Sheet", mapping: "Choose the field of that column (or “ignore”) under Columns.",
  };

  const folded = (text) => String(text).replace(/^\s+|\s+$/g, "").replace(/^\ufeff/, "").trim().toLowerCase();

  function howText(entry) {
    switch (entry.how) {
      case "exact": return "exact";
      case "case_or_space": return "exact but for case or spaces";
      case "similar": return `similar ${Number(entry.score).toFixed(2)}`;
      case "saved": return "saved";
      case "given": return "your choice";
      default:
        return folded(entry.header).startsWith("_") ? "ignored (starts with _)" : "no match";
    }
  }

  function setUpReview(root) {
    const id = root.dataset.uploadId;
    const readOnly = root.hasAttribute("data-read-only");
    let fields = [];
    try { fields = JSON.parse(document.getElementById("review-fields").textContent); } catch (error) { fields = []; }
    const box = document.getElementById("review-errors");
    const notes = root.querySelector("[data-review-notes]");
    const missingLine = root.querySelector("[data-review-missing]");
    const otherLine = root.querySelector("[data-review-other]");
    const mappingBody = root.querySelector("[data-review-mapping]");
    const previewHead = root.querySelector("[data-review-preview-head]");
    const previewBody = root.querySelector("[data-review-preview-body]");
    const readBusy = root.querySelector("[data-review-busy]");
    const blocked = root.querySelector("[data-start-blocked]");
    const startBusy = root.querySelector("[data-start-busy]");
    const buttons = Array.from(root.querySelectorAll("[data-start]"));
    const state = { upload: null, given: {}, readable: false, starting: false, sequence: 0 };

    const natural = (header) => {
      const wanted = folded(header);
      const match = fields.find((f) => f.name.toLowerCase() === wanted);
      return match ? match.name : null;
    };

    // The mapping option an operation needs: every column not read as its own name.
    const mappingOption = () => {
      const option = {};
      for (const entry of state.upload ? state.upload.mapping : []) {
        const text = folded(entry.header);
        if (!text || text.startsWith("_")) continue;
        const field = entry.field || "";
        if (field && natural(entry.header) === field) continue;
        option[entry.header] = field;
      }
      return option;
    };

    const duplicates = () => {
      const seen = {};
      for (const entry of state.upload ? state.upload.mapping : []) {
        if (entry.field) seen[entry.field] = (seen[entry.field] || 0) + 1;
      }
      return Object.keys(seen).filter((name) => seen[name] > 1);
    };

    const gate = () => {
      const upload = state.upload;
      const reasons = [];
      if (!state.readable || !upload) reasons.push("The file cannot be read with these settings.");
      else {
        if (upload.missing_required.length) reasons.push(`Map a column to ${upload.missing_required.join(", ")} first.`);
        const twice = duplicates();
        if (twice.length) reasons.push(`Two columns fill ${twice.join(", ")}: choose “ignore” for one of them.`);
      }
      for (const button of buttons) button.disabled = state.starting || reasons.length > 0;
      if (blocked) {
        blocked.textContent = reasons.join(" ");
        blocked.hidden = reasons.length === 0;
      }
    };

    // A file chosen for the wrong entity: its columns are all another entity's.
    const renderOther = (upload) => {
      if (!otherLine) return;
      otherLine.textContent = "";
      otherLine.hidden = !upload.other_entity;
      if (!upload.other_entity) return;
      const other = upload.other_entity;
      otherLine.append(
        `These are the columns of ${other}, not of ${upload.entity_type}. If the file holds ${other}, `,
        el("a", { href: `/operations/new?entity=${encodeURIComponent(other)}` }, `start again with ${other}`),
        ".",
      );
    };

    const renderMissing = (upload) => {
      renderOther(upload);
      if (upload.missing_required.length) {
        missingLine.textContent = `Required and not mapped: ${upload.missing_required.join(", ")}. Choose the column that holds ${upload.missing_required.length === 1 ? "it" : "each"} below; Check waits until then.`;
        missingLine.hidden = false;
      } else {
        missingLine.textContent = "";
        missingLine.hidden = true;
      }
      const twice = duplicates();
      if (twice.length) {
        missingLine.textContent += `${missingLine.textContent ? " " : ""}More than one column fills ${twice.join(", ")}.`;
        missingLine.hidden = false;
      }
    };

    const renderMapping = (upload) => {
      const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.column : undefined;
      mappingBody.textContent = "";
      // The column's first value that is not blank (in the rows of the preview): a column
      // empty in the first row still shows what it holds.
      const readable = upload.preview.filter((record) => !record.error);
      const sampleOf = (index) => {
        const found = readable.find((record) => (record.cells[index] || "").trim() !== "");
        return found ? found.cells[index] : "";
      };
      const missing = new Set(upload.missing_required);
      upload.mapping.forEach((entry, index) => {
        const row = el("tr", { className: entry.field ? "" : "ignored" });
        const name = el("td", { "data-label": "File column" });
        name.appendChild(el("span", { className: "column-name" }, entry.header === "" ? "(no name)" : entry.header));
        row.appendChild(name);
        row.appendChild(el("td", { "data-label": "First value", className: "sample" }, sampleOf(index)));
        const cell = el("td", { "data-label": "Field" });
        const select = el("select", {
          "aria-label": `Field for the column ${entry.header || index + 1}`, "data-column": String(index),
          disabled: readOnly || folded(entry.header).startsWith("_"),
        });
        select.appendChild(el("option", { value: "" }, "— ignore —"));
        for (const field of fields) {
          const needed = field.required ? (missing.has(field.name) ? " (required, not mapped)" : " (required)") : "";
          const option = el("option", { value: field.name }, `${field.name}${needed}`);
          if (entry.field === field.name) option.selected = true;
          select.appendChild(option);
        }
        select.addEventListener("change", () => {
          state.given[entry.header] = select.value;
          reread({});
        });
        cell.appendChild(select);
        row.appendChild(cell);
        row.appendChild(el("td", { "data-label": "Why", className: `how how-${entry.how}` }, howText(entry)));
        mappingBody.appendChild(row);
      });
      if (focused !== undefined) {
        const again = mappingBody.querySelector(`select[data-column="${focused}"]`);
        if (again) again.focus();
      }
    };

    const renderPreview = (upload) => {
      previewHead.textContent = "";
      previewBody.textContent = "";
      const head = el("tr");
      head.appendChild(el("th", { scope: "col", className: "num" }, "Row"));
      upload.mapping.forEach((entry) => {
        const th = el("th", { scope: "col" });
        th.appendChild(el("span", { className: "column-name" }, entry.header));
        th.appendChild(el("span", { className: entry.field ? "maps-to" : "maps-to none" }, entry.field ? `→ ${entry.field}` : "ignored"));
        head.appendChild(th);
      });
      previewHead.appendChild(head);
      for (const record of upload.preview) {
        const row = el("tr", { className: record.error ? "unreadable" : "" });
        row.appendChild(el("td", { className: "num" }, count(record.row)));
        if (record.error) {
          row.appendChild(el("td", { colspan: String(Math.max(upload.header.length, 1)), className: "error" }, record.error));
        } else {
          upload.header.forEach((_, index) => {
            const value = record.cells[index] !== undefined ? record.cells[index] : "";
            row.appendChild(el("td", { className: upload.mapping[index] && upload.mapping[index].field ? "" : "ignored" }, value));
          });
        }
        previewBody.appendChild(row);
      }
      const note = root.querySelector("[data-review-preview-note]");
      const unreadable = upload.preview.filter((record) => record.error).length;
      note.textContent = upload.preview.length
        ? `The first ${plural(upload.preview.length, "row", "rows")}, as read. Ignored columns are greyed.`
        : "The file has a header but no rows.";
      if (unreadable) {
        note.textContent += ` ${count(unreadable)} of them cannot be read with these settings (in red): check the encoding and delimiter above.`;
        note.classList.add("error");
      } else {
        note.classList.remove("error");
      }
    };

    const setControls = (upload) => {
      const values = {
        encoding: upload.encoding, delimiter: upload.delimiter === "\t" ? "tab" : upload.delimiter,
        decimal_separator: upload.decimal_separator, sheet: upload.sheet || (upload.sheets ? upload.sheets[0] : null),
      };
      for (const control of root.querySelectorAll("[data-option]")) {
        const value = values[control.dataset.option];
        if (value === null || value === undefined) continue;
        if (!Array.from(control.options).some((o) => o.value === value)) control.appendChild(el("option", { value }, value));
        control.value = value;
      }
    };

    const render = (upload) => {
      state.upload = upload;
      state.readable = true;
      box.hidden = true;
      setControls(upload);
      notes.textContent = "";
      const kept = remembered(id);
      const said = (upload.notes || []).length ? upload.notes
        : (kept && kept.encoding === upload.encoding ? kept.notes : []);
      for (const text of said) notes.appendChild(el("p", {}, text));
      notes.hidden = !said.length;
      renderMissing(upload);
      renderMapping(upload);
      renderPreview(upload);
      gate();
    };

    const failed = (result) => {
      state.readable = false;
      showProblem(box, explain(result, "read this upload", REVIEW_CONTROLS));
      gate();
    };

    async function reread(changed) {
      const sequence = ++state.sequence;
      const payload = { ...changed };
      if (Object.keys(state.given).length) payload.mapping = state.given;
      readBusy.hidden = false;
      const result = await api("POST", `/api/v1/uploads/${encodeURIComponent(id)}/preview`, JSON.stringify(payload), "application/json");
      if (sequence !== state.sequence) return; // a later change answers instead
      readBusy.hidden = true;
      if (result.ok && result.data) {
        const before = state.upload ? state.upload.header.join("\u001f") : "";
        if (result.data.header.join("\u001f") !== before) {
          // Other columns (another delimiter or sheet): earlier choices no longer apply.
          const headers = new Set(result.data.header);
          for (const header of Object.keys(state.given)) if (!headers.has(header)) delete state.given[header];
        }
        render(result.data);
      } else {
        failed(result);
      }
    }

    for (const control of root.querySelectorAll("[data-option]")) {
      // Reading again keeps the choice for the upload: an editor's change, not a viewer's.
      if (readOnly) control.disabled = true;
      control.addEventListener("change", () => reread({ [control.dataset.option]: control.value }));
    }

    for (const button of buttons) {
      button.addEventListener("click", async () => {
        const check = button.dataset.start === "check";
        const options = readOptions(root, box);
        if (!options) return;
        const body = new FormData();
        body.append("upload_id", id);
        body.append("entity_type", root.dataset.entity);
        body.append("operation_type", root.dataset.operation);
        body.append("validate_only", check ? "true" : "false");
        for (const [name, value] of Object.entries(options)) body.append(name, value);
        const mapping = mappingOption();
        if (Object.keys(mapping).length) body.append("mapping", JSON.stringify(mapping));
        state.starting = true;
        startBusy.hidden = false;
        gate();
        const result = await api("POST", "/api/v1/operations", body);
        if (result.ok && result.data && result.data.id) {
          window.location.assign(`/operations/${encodeURIComponent(result.data.id)}`);
          return;
        }
        state.starting = false;
        startBusy.hidden = true;
        gate();
        showProblem(box, explain(result, "start operations", REVIEW_CONTROLS));
        box.focus();
      });
    }

    (async () => {
      const result = await api("GET", `/api/v1/uploads/${encodeURIComponent(id)}`);
      if (result.ok && result.data) render(result.data);
      else failed(result);
    })();
  }

  // -- 2. the check's planned changes and Apply -----------------------------------------------

  const keyText = (key) => Object.values(key || {}).map((v) => (v === null ? "" : String(v))).join(" / ");
  const valueText = (value) => (value === null || value === undefined || value === "" ? "(empty)" : String(value));

  function changeList(item) {
    const list = el("ul", { className: "changes" });
    if (item.action === "delete") {
      list.appendChild(el("li", { className: "muted" }, "the row is deleted"));
      return list;
    }
    for (const change of item.changes) {
      const li = el("li");
      li.appendChild(el("span", { className: "field-name" }, change.field));
      li.appendChild(document.createTextNode(" "));
      if (item.action === "update") {
        li.appendChild(el("del", { className: "before" }, valueText(change.current)));
        li.appendChild(el("span", { className: "arrow", "aria-label": "becomes" }, " → "));
      }
      li.appendChild(el("ins", { className: "after" }, valueText(change.new)));
      list.appendChild(li);
    }
    if (!item.changes.length) list.appendChild(el("li", { className: "muted" }, "no field changes"));
    return list;
  }

  function setUpCheck(section) {
    const id = section.dataset.checkId;
    const rows = section.querySelector("[data-plan-rows]");
    const status = section.querySelector("[data-plan-status]");
    const next = section.querySelector("[data-plan-next]");
    const first = section.querySelector("[data-plan-first]");
    const filters = Array.from(section.querySelectorAll("[data-plan-action]"));
    const state = { action: "", cursors: [null], page: 0, next: null };

    const load = async () => {
      if (!rows) return;
      const params = new URLSearchParams({ limit: String(PLAN_PAGE) });
      if (state.action) params.set("action", state.action);
      const cursor = state.cursors[state.page];
      if (cursor) params.set("cursor", cursor);
      status.textContent = "Loading…";
      const result = await api("GET", `/api/v1/operations/${encodeURIComponent(id)}/changes?${params}`);
      rows.textContent = "";
      if (!result.ok || !result.data) {
        status.textContent = explain(result, "read the planned changes", {}).lead;
        return;
      }
      for (const item of result.data.items) {
        const row = el("tr", { className: `plan-${item.action}` });
        row.appendChild(el("td", { className: "num", "data-label": "Row" }, count(item.row)));
        row.appendChild(el("td", { "data-label": "Key", className: "key" }, keyText(item.key)));
        const action = el("td", { "data-label": "Action" });
        action.appendChild(el("span", { className: `badge action-${item.action}` }, item.action));
        row.appendChild(action);
        const changes = el("td", { "data-label": "Changes" });
        changes.appendChild(changeList(item));
        row.appendChild(changes);
        rows.appendChild(row);
      }
      state.next = result.data.next_cursor;
      const from = state.page * PLAN_PAGE + 1;
      const to = state.page * PLAN_PAGE + result.data.items.length;
      const what = state.action ? `${state.action}s` : "changes";
      status.textContent = result.data.items.length
        ? `Page ${count(state.page + 1)}: planned ${what} ${count(from)} to ${count(to)}${state.next ? "" : " (the last)"}.`
        : `No planned ${what}.`;
      next.disabled = !state.next;
      first.disabled = state.page === 0;
    };

    for (const button of filters) {
      button.addEventListener("click", () => {
        state.action = button.dataset.planAction;
        state.cursors = [null];
        state.page = 0;
        for (const other of filters) other.setAttribute("aria-pressed", String(other === button));
        load();
      });
    }
    if (next) next.addEventListener("click", () => {
      if (!state.next) return;
      state.cursors[state.page + 1] = state.next;
      state.page += 1;
      load();
    });
    if (first) first.addEventListener("click", () => { state.page = 0; load(); });

    const csv = section.querySelector("[data-plan-csv]");
    if (csv) csv.addEventListener("click", async (event) => {
      event.preventDefault();
      const params = state.action ? `?action=${encodeURIComponent(state.action)}` : "";
      let response;
      try {
        response = await fetch(`/api/v1/operations/${encodeURIComponent(id)}/changes${params}`, { headers: { Accept: "text/csv" }, credentials: "same-origin" });
      } catch (error) { status.textContent = "The server could not be reached."; return; }
      if (!response.ok) { status.textContent = `The download failed (${response.status}).`; return; }
      const url = URL.createObjectURL(await response.blob());
      const link = el("a", { href: url, download: `changes-${id}.csv` });
      document.body.appendChild(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 10000);
    });

    const apply = section.querySelector("[data-apply-check]");
    if (apply) apply.addEventListener("click", async () => {
      const box = section.querySelector("[data-apply-error]");
      const busy = section.querySelector("[data-apply-busy]");
      apply.disabled = true;
      busy.hidden = false;
      box.hidden = true;
      const result = await api("POST", `/api/v1/operations/${encodeURIComponent(id)}/apply`);
      if (result.ok && result.data && result.data.id) {
        window.location.assign(`/operations/${encodeURIComponent(result.data.id)}`);
        return;
      }
      apply.disabled = false;
      busy.hidden = true;
      showProblem(box, explain(result, "apply checks", {}));
      box.focus();
    });

    if (section.dataset.checkStatus === "completed") load();
  }

  // -- 2. fix in place -------------------------------------------------------------------------

  // The rule of bulkops.formats.writer.neutralise: a value a spreadsheet could run gets one
  // "'" in front, which the importer removes again, so a fixed row reads back exactly as typed.
  const FORMULA_START = "=@＝＠＋－";
  const MAYBE_RISKY = "=+-@＝＋－＠\t\r\n'";
  const NUMERIC_LITERAL = /^\s*[+-]?(?:[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+)(?:[eE][+-]?[0-9]+)?\s*$/;
  function formulaLike(value) {
    if (!value) return false;
    if ("\t\r\n".includes(value[0])) return true;
    const text = value.trimStart();
    if (!text) return false;
    if (FORMULA_START.includes(text[0])) return true;
    if ("+-".includes(text[0])) return !NUMERIC_LITERAL.test(text);
    return false;
  }
  function neutralise(value) {
    const text = String(value);
    const risky = text && (MAYBE_RISKY.includes(text[0]) || /\s/.test(text[0]));
    return risky && formulaLike(text.replace(/^'+/, "")) ? `'${text}` : text;
  }
  const csvCell = (value) => `"${neutralise(value).replace(/"/g, '""')}"`;
  const csvLine = (cells) => cells.map(csvCell).join(",");

  function setUpFix(section) {
    const id = section.dataset.fixOp;
    const head = section.querySelector("[data-fix-head]");
    const body = section.querySelector("[data-fix-rows]");
    const status = section.querySelector("[data-fix-status]");
    const button = section.querySelector("[data-fix-recheck]");
    const box = section.querySelector("[data-fix-error]");
    const busy = section.querySelector("[data-fix-busy]");
    if (!body) return;
    let config = {};
    try { config = JSON.parse(section.querySelector("[data-fix-config]").textContent) || {}; } catch (error) { config = {}; }
    const rows = []; // { item, values (edited), inputs }
    let header = [];

    const changedRows = () => rows.filter((r) => r.values.some((v, i) => v !== r.item.values[i]));
    const update = () => {
      const fixed = changedRows().length;
      button.disabled = fixed === 0;
      status.textContent = `${plural(rows.length, "failed row", "failed rows")}; ${plural(fixed, "row", "rows")} changed.`;
      button.textContent = fixed ? `Re-check the ${plural(fixed, "fixed row", "fixed rows")}` : "Re-check the fixed rows";
    };

    const render = () => {
      const top = el("tr");
      top.appendChild(el("th", { scope: "col", className: "num" }, "Row"));
      top.appendChild(el("th", { scope: "col" }, "Problem"));
      for (const name of header) top.appendChild(el("th", { scope: "col" }, name));
      head.appendChild(top);
      const position = {};
      header.forEach((name, index) => { position[folded(name)] = index; });
      for (const item of rows.map((r) => r.item)) {
        const entry = rows.find((r) => r.item === item);
        const failing = new Set();
        let whole = false;
        for (const error of item.errors) {
          const at = error.column ? position[folded(error.column)] : undefined;
          if (at === undefined) whole = true; else failing.add(at);
        }
        const tr = el("tr");
        tr.appendChild(el("td", { className: "num" }, count(item.row)));
        const problems = el("td", { className: "problems" });
        for (const error of item.errors) {
          problems.appendChild(el("p", {}, error.column ? `${error.column}: ${error.message}` : error.message));
        }
        tr.appendChild(problems);
        header.forEach((name, index) => {
          const value = item.values[index] !== undefined ? item.values[index] : "";
          const td = el("td", {});
          if (whole || failing.has(index)) {
            td.className = "failing";
            const input = el("input", { type: "text", value, "aria-label": `Row ${item.row}, ${name}`, "data-fix-cell": `${item.row}:${index}` });
            input.value = value;
            input.addEventListener("input", () => {
              entry.values[index] = input.value;
              tr.classList.toggle("fixed", entry.values.some((v, i) => v !== item.values[i]));
              update();
            });
            td.appendChild(input);
          } else {
            td.appendChild(el("span", { className: "value" }, value));
          }
          tr.appendChild(td);
        });
        body.appendChild(tr);
      }
      update();
    };

    const recheck = async () => {
      const fixed = changedRows();
      if (!fixed.length) return;
      const lines = [csvLine(["_row", "_line", "_errors", ...header])];
      for (const r of fixed) {
        const messages = r.item.errors.map((e) => (e.column ? `${e.column}: ${e.message}` : e.message)).join("; ");
        lines.push(csvLine([String(r.item.row), String(r.item.line), messages, ...r.values]));
      }
      const original = section.dataset.fixFile || "file";
      const name = `fixed-rows-of-${original.replace(/\.[A-Za-z0-9]+$/, "")}.csv`;
      const upload = new FormData();
      upload.append("entity_type", section.dataset.fixEntity);
      upload.append("operation_type", section.dataset.fixType);
      upload.append("encoding", "utf-8");
      upload.append("delimiter", ",");
      if (config.decimal_separator) upload.append("decimal_separator", config.decimal_separator);
      upload.append("file", new File([lines.join("\r\n") + "\r\n"], name, { type: "text/csv" }), name);
      button.disabled = true;
      busy.hidden = false;
      box.hidden = true;
      const stored = await api("POST", "/api/v1/uploads", upload);
      let result = stored;
      if (stored.ok && stored.data && stored.data.id) {
        const start = new FormData();
        start.append("upload_id", stored.data.id);
        start.append("entity_type", section.dataset.fixEntity);
        start.append("operation_type", section.dataset.fixType);
        start.append("validate_only", "true");
        for (const option of ["rollback_on_error", "max_errors", "chunk_size", "max_concurrent"]) {
          if (config[option] !== undefined && config[option] !== null) start.append(option, String(config[option]));
        }
        if (config.mapping && Object.keys(config.mapping).length) start.append("mapping", JSON.stringify(config.mapping));
        result = await api("POST", "/api/v1/operations", start);
        if (result.ok && result.data && result.data.id) {
          window.location.assign(`/operations/${encodeURIComponent(result.data.id)}`);
          return;
        }
      }
      busy.hidden = true;
      update();
      showProblem(box, explain(result, "start checks", {}));
      box.focus();
    };
    button.addEventListener("click", recheck);

    (async () => {
      const result = await api("GET", `/api/v1/operations/${encodeURIComponent(id)}/errors?limit=${FIX_ROWS}`);
      if (!result.ok || !result.data) {
        status.textContent = explain(result, "read the error report", {}).lead;
        return;
      }
      header = result.data.header || [];
      for (const item of result.data.items) {
        const values = header.map((_, i) => (item.values[i] !== undefined ? item.values[i] : ""));
        item.values = values;
        rows.push({ item, values: values.slice() });
      }
      render();
    })();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("flow-upload");
    if (form) setUpNew(form);
    const review = document.getElementById("review");
    if (review) setUpReview(review);
    const check = document.getElementById("planned-changes");
    if (check) setUpCheck(check);
    const fix = document.getElementById("fix-errors");
    if (fix) setUpFix(fix);
  });
})();
