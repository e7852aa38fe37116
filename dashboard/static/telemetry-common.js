/* Shared by the /telemetry views: API calls, form state <-> URL, downloads, formatting.
   No inline script anywhere: the pages only load files (ready for a strict CSP). */
"use strict";
window.TM = (function () {
  const API = new URL("api/v1/", window.location.href);

  async function api(path, params) {
    const url = new URL(path, API);
    if (params) url.search = params.toString();
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  /* The whole state of a form as URL parameters (empty values left out). */
  function readState(form) {
    const params = new URLSearchParams();
    for (const element of form.elements) {
      if (!element.name || element.disabled) continue;
      if ((element.type === "radio" || element.type === "checkbox") && !element.checked) continue;
      if (element.value !== "") params.set(element.name, element.value);
    }
    return params;
  }

  function ensureOption(select, value) {
    if (value === "" || [...select.options].some((o) => o.value === value)) return;
    select.add(new Option(value, value));
  }

  /* Put URL parameters back into the form; unknown values become options so nothing is lost. */
  function writeState(form, params) {
    for (const element of form.elements) {
      if (!element.name) continue;
      const value = params.get(element.name);
      if (element.type === "radio") element.checked = value !== null ? element.value === value : element.defaultChecked;
      else if (element.type === "checkbox") element.checked = value === element.value;
      else if (value !== null) {
        if (element.tagName === "SELECT") ensureOption(element, value);
        element.value = value;
      }
    }
  }

  function fillSelect(select, values, labels) {
    const keep = [...select.options].filter((o) => o.value === "");
    const current = select.value;
    select.replaceChildren(...keep);
    values.forEach((v, i) => select.add(new Option(labels ? labels[i] : v, v)));
    if ([...select.options].some((o) => o.value === current)) select.value = current;
  }

  function fillCommon(form, filters) {
    const list = document.getElementById("tm-metrics");
    list.replaceChildren(...filters.metrics.map((m) => new Option(m.description, m.name)));
    for (const select of form.querySelectorAll("select[data-dimension]")) {
      fillSelect(select, filters.dimensions[select.dataset.dimension] || []);
    }
    for (const select of form.querySelectorAll("select[data-dates]")) fillSelect(select, filters.dates);
    const updated = document.getElementById("tm-updated");
    if (updated && filters.updated) updated.textContent = `Aggregates computed ${filters.updated.slice(0, 16).replace("T", " ")} UTC by the daily telemetry-aggregates job.`;
  }

  function describe(filters, metric) {
    const found = filters.metrics.find((m) => m.name === metric);
    document.getElementById("tm-description").textContent = found ? found.description : metric ? "unknown metric" : "";
  }

  function status(text, bad) {
    const element = document.getElementById("tm-status");
    element.textContent = text;
    element.classList.toggle("bad", Boolean(bad));
  }

  function download(name, type, text) {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type }));
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }

  function csv(rows) {
    const cell = (v) => (v === null || v === undefined ? "" : /[",\n]/.test(String(v)) ? `"${String(v).replaceAll('"', '""')}"` : String(v));
    return rows.map((row) => row.map(cell).join(",")).join("\n") + "\n";
  }

  function number(value) {
    if (value === null || value === undefined) return "–";
    return Math.abs(value) >= 100 ? Math.round(value).toLocaleString("en") : Number(value.toPrecision(3)).toString();
  }

  /* The filters both views start from; null (with the reason shown) when there are none. */
  async function loadFilters() {
    let filters;
    try {
      filters = await api("filters");
    } catch (error) {
      status(`Cannot load the aggregates: ${error.message}`, true);
      return null;
    }
    if (!filters.metrics.length) {
      status("No aggregates yet: the telemetry-aggregates job has not published any.");
      return null;
    }
    return filters;
  }

  /* Keep the URL (and the permalink) equal to the state on screen. */
  function remember(form) {
    const params = readState(form);
    history.replaceState(null, "", "?" + params.toString());
    document.getElementById("tm-permalink").href = window.location.href;
    return params;
  }

  return { api, loadFilters, readState, writeState, fillSelect, fillCommon, describe, status, download, csv, number, remember };
})();
