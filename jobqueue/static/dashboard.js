// The dashboard's live parts: plain JavaScript over the JSON API and the /api/events feed.
"use strict";

const EVENT_TYPES = ["submitted", "created", "released", "started", "progress", "completed",
  "retry_scheduled", "dead", "canceled", "retried", "cancel_requested", "timed_out", "lost",
  "priority_changed", "queue_paused", "queue_resumed", "limits_changed"];

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Requested-With": "fetch" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json();
  if (!response.ok) {
    const message = (data && (data.detail || data.title)) || response.statusText;
    throw new Error(typeof message === "string" ? message : JSON.stringify(message));
  }
  return data;
}

// The feed starts from a cursor taken before the page read its data: a change made while the
// page rendered or before the feed connects is replayed, not lost. Reconnects resume by the
// cursor of the last message (the browser sends it as Last-Event-ID).
function eventSource() {
  const from = document.body.dataset.eventsFrom;
  return new EventSource(
    from ? `/api/events?last_event_id=${encodeURIComponent(from)}` : "/api/events");
}

function onEvents(handler) {
  const source = eventSource();
  const dispatch = (message) => {
    try { handler(JSON.parse(message.data)); } catch (e) { /* keep-alive or malformed */ }
  };
  source.onmessage = dispatch;
  EVENT_TYPES.forEach((t) => source.addEventListener(t, dispatch));
  return source;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
  children.forEach((c) => node.append(c));
  return node;
}

// --- charts: hand-drawn SVG ---------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
  return node;
}

function noData(container, message) {
  container.replaceChildren(el("p", { class: "no-data" }, message));
}

function barChart(container, points, series) {
  // points: [{label, a: n, b: n}], series: [{key, color}] stacked bars.
  const width = 600, height = 160, pad = 24;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  const max = Math.max(1, ...points.map((p) => series.reduce((s, x) => s + (p[x.key] || 0), 0)));
  const step = (width - pad * 2) / Math.max(1, points.length);
  points.forEach((p, i) => {
    let y = height - pad;
    series.forEach((s) => {
      const h = ((p[s.key] || 0) / max) * (height - pad * 2);
      y -= h;
      root.append(svg("rect", { x: pad + i * step + 1, y, width: Math.max(1, step - 2),
        height: h, fill: s.color }));
    });
  });
  const axis = svg("text", { x: 2, y: 12, "font-size": 11, fill: "#6b7280" });
  axis.textContent = String(max);
  root.append(axis, svg("line", { x1: pad, y1: height - pad, x2: width - pad,
    y2: height - pad, stroke: "#e5e7eb" }));
  if (points.length) {
    const first = svg("text", { x: pad, y: height - 6, "font-size": 11, fill: "#6b7280" });
    first.textContent = points[0].label;
    const last = svg("text", { x: width - pad, y: height - 6, "font-size": 11,
      fill: "#6b7280", "text-anchor": "end" });
    last.textContent = points[points.length - 1].label;
    root.append(first, last);
  } else {
    const none = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle",
      fill: "#6b7280" });
    none.textContent = "no data yet";
    root.append(none);
  }
  container.replaceChildren(root);
}

// points: one per time slot, {label, value (0..1) or null when nothing ran}. Slots without
// attempts leave a gap instead of reading as 0%.
function rateChart(container, points) {
  const width = 600, height = 160, pad = 28;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  const step = (width - pad * 2) / Math.max(1, points.length - 1);
  const x = (i) => pad + i * step;
  const y = (v) => height - pad - v * (height - pad * 2);
  for (const [v, label] of [[0, "0%"], [0.5, "50%"], [1, "100%"]]) {
    root.append(svg("line", { x1: pad, y1: y(v), x2: width - pad, y2: y(v), stroke: "#e5e7eb" }));
    const t = svg("text", { x: 2, y: y(v) + 4, "font-size": 11, fill: "#6b7280" });
    t.textContent = label;
    root.append(t);
  }
  let run = [];
  const flush = () => {
    if (run.length > 1) root.append(svg("polyline", { points: run.join(" "), fill: "none",
      stroke: "#dc2626", "stroke-width": 2 }));
    run = [];
  };
  points.forEach((p, i) => {
    if (p.value == null) { flush(); return; }
    run.push(`${x(i)},${y(p.value)}`);
    const dot = svg("circle", { cx: x(i), cy: y(p.value), r: 2.5, fill: "#dc2626" });
    const tip = svg("title", {});
    tip.textContent = `${p.label}: ${(p.value * 100).toFixed(0)}% of ${p.total} attempts failed`;
    dot.append(tip);
    root.append(dot);
  });
  flush();
  for (const [i, anchor] of [[0, "start"], [points.length - 1, "end"]]) {
    const t = svg("text", { x: x(i), y: height - 8, "font-size": 11, fill: "#6b7280",
      "text-anchor": anchor });
    t.textContent = points[i].label;
    root.append(t);
  }
  container.replaceChildren(root);
}

// rows: [{label, value}], one labelled horizontal bar each (reads as well with one row).
function hbarChart(container, rows, unit) {
  const max = Math.max(1, ...rows.map((r) => r.value));
  container.replaceChildren(el("div", { class: "hbars" }, ...rows.map((r) =>
    el("div", { class: "hbar" },
      el("span", { class: "hbar-label" }, r.label),
      el("span", { class: "hbar-track" }, el("span", { class: "hbar-fill",
        style: `width: ${Math.max(1, (r.value / max) * 100)}%` })),
      el("span", { class: "hbar-value" }, `${r.value} ${unit}`)))));
}

// One time format everywhere: local time, with the zone and the exact instant on hover.
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
const pad = (n) => String(n).padStart(2, "0");

function localTime(iso) {
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function timeEl(iso) {
  const node = el("time", { datetime: iso });
  return localizeTime(node);
}

function localizeTime(node) {
  const iso = node.getAttribute("datetime");
  node.textContent = localTime(iso);
  node.title = `${ZONE} · ${new Date(iso).toISOString()}`;
  return node;
}

function localizeTimes(root) { root.querySelectorAll("time[datetime]").forEach(localizeTime); }

// Axis labels: the same 24-hour local time as everywhere else, to the minute.
function time(iso) { return localTime(iso).slice(11, 16); }

// --- pages ----------------------------------------------------------------------------------

async function loadOverview() {
  const since = new Date(Date.now() - 3600 * 1000).toISOString();
  const m = await api("GET", `/api/metrics?since=${encodeURIComponent(since)}`);
  const counts = document.getElementById("counts");
  counts.replaceChildren(...Object.entries(m.counts_by_status || {}).map(([status, n]) =>
    el("a", { class: "count", href: `/jobs?status=${status}`, "data-status": status },
      el("b", {}, String(n)), status)));
  // One slot per minute of the hour, so a quiet minute shows as a gap, not as nothing.
  const byMinute = new Map((m.throughput || []).map((t) =>
    [Math.floor(new Date(t.at).getTime() / 60000), t]));
  const now = Math.floor(Date.now() / 60000);
  const throughput = [];
  for (let minute = now - 59; minute <= now; minute++) {
    const t = byMinute.get(minute) || { completed: 0, failed: 0 };
    throughput.push({ label: time(new Date(minute * 60000).toISOString()),
      completed: t.completed, failed: t.failed });
  }
  const finished = throughput.some((t) => t.completed + t.failed > 0);
  if (finished) {
    barChart(document.getElementById("throughput-chart"), throughput,
      [{ key: "completed", color: "#16a34a" }, { key: "failed", color: "#dc2626" }]);
    rateChart(document.getElementById("failure-chart"), throughput.map((t) => ({
      label: t.label, total: t.completed + t.failed,
      value: t.completed + t.failed ? t.failed / (t.completed + t.failed) : null })));
  } else {
    noData(document.getElementById("throughput-chart"), "No job finished in the last hour.");
    noData(document.getElementById("failure-chart"), "No attempt finished in the last hour.");
  }
  const depth = (m.queue_depth_by_priority || []).filter((q) => q.depth > 0);
  if (depth.length) {
    hbarChart(document.getElementById("depth-chart"), depth.map((q) =>
      ({ label: `priority ${q.priority}`, value: q.depth })), "waiting");
  } else {
    noData(document.getElementById("depth-chart"), "No job is waiting to run.");
  }
  const body = document.querySelector("#types-table tbody");
  body.replaceChildren(...(m.failure_rate_by_type || []).map((t) => el("tr", {},
    el("td", {}, el("a", { href: `/types/${encodeURIComponent(t.job_type)}` }, t.job_type)),
    el("td", {}, String(t.attempts)), el("td", {}, String(t.failed)),
    el("td", {}, `${(t.rate * 100).toFixed(1)}%`))));
  if (!body.children.length) {
    body.append(el("tr", {}, el("td", { colspan: "4", class: "hint" }, "No attempt finished in the last hour.")));
  }
}

function throttled(fn, ms) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    setTimeout(() => { pending = false; fn().catch(() => {}); }, ms);
  };
}

// A page whose data any event may change: loaded now, again on events (at most once a
// second), and every `everyMs` in case the feed is reconnecting.
function keepCurrent(load, everyMs) {
  load().catch(() => {});
  const refresh = throttled(load, 1000);
  onEvents(refresh);
  setInterval(refresh, everyMs);
}

function initOverview() { keepCurrent(loadOverview, 10000); }

function currentFilter() {
  const form = document.getElementById("filters");
  const data = new FormData(form);
  const filter = {};
  for (const key of ["status", "job_type", "organization"]) {
    const value = data.get(key);
    if (value) filter[key] = value;
  }
  return filter;
}

function jobRow(job) {
  return el("tr", { "data-job-id": String(job.id) },
    el("td", {}, el("a", { href: `/jobs/${job.id}` }, String(job.id))),
    el("td", {}, el("a", { href: `/types/${encodeURIComponent(job.job_type)}` }, job.job_type)),
    el("td", {}, job.organization),
    el("td", { class: "status" }, el("span", { class: `badge ${job.status}` }, job.status)),
    el("td", {}, String(job.priority)), el("td", { class: "attempt" }, String(job.attempt)),
    el("td", { class: "progress" }, job.progress == null ? "" : `${job.progress}%`),
    el("td", {}, timeEl(job.created_at)));
}

function initJobs() {
  const filter = currentFilter();
  const onFirstPage = !new URLSearchParams(location.search).get("before_id");
  const tbody = document.querySelector("#jobs-table tbody");
  // Events only mark jobs as changed; at most once a second the page asks for what it shows:
  // the first page afresh (one request, new jobs included), or on older pages the changed
  // rows that are on screen. A burst of 100,000 events costs the same as one.
  const changed = new Set();
  const flush = async () => {
    const ids = new Set(changed);
    changed.clear();
    if (onFirstPage) {
      const query = new URLSearchParams({ ...filter, limit: "50" });
      const { jobs } = await api("GET", `/api/jobs?${query}`);
      tbody.replaceChildren(...jobs.map(jobRow));
      if (!jobs.length) tbody.append(el("tr", { class: "empty" }, el("td", { colspan: "8" }, "No jobs match.")));
    } else {
      const visible = [...tbody.querySelectorAll("tr[data-job-id]")]
        .filter((row) => ids.has(row.dataset.jobId));
      for (const row of visible) {
        try { row.replaceWith(jobRow(await api("GET", `/api/jobs/${row.dataset.jobId}`))); } catch (e) { /* gone */ }
      }
    }
  };
  const refresh = throttled(flush, 1000);
  onEvents((event) => { if (event.job) { changed.add(String(event.job)); refresh(); } });
  const result = document.getElementById("bulk-result");
  const everyOrg = document.getElementById("bulk-every-org");
  const say = (text, kind) => {
    result.textContent = text;
    result.className = `notice ${kind}`;
    result.hidden = false;
  };
  const bulk = async (action) => {
    // Acting on every organization takes a deliberate choice, not an empty filter.
    if (everyOrg && !everyOrg.checked) {
      say("Choose an organization in the filter first, or tick “act on all organizations”.", "warn");
      return;
    }
    const what = describeFilter(filter, action);
    const question = action === "cancel"
      ? `Cancel ${what}?\n\nWaiting, queued and retrying jobs are canceled at once; running ones are asked to stop.`
      : `Retry ${what}?\n\nDead and canceled jobs are queued again with a fresh retry budget.`;
    if (!confirm(question)) return;
    try {
      const answer = await api("POST", `/api/jobs/bulk-${action}`, filter);
      say(reportBulk(action, answer), "ok");
    } catch (e) { say(`Nothing was changed: ${e.message}`, "bad"); }
  };
  document.getElementById("bulk-cancel").onclick = () => bulk("cancel");
  document.getElementById("bulk-retry").onclick = () => bulk("retry");
}

function describeFilter(filter, action) {
  const status = filter.status ? `${filter.status} ` : "";
  const type = filter.job_type ? ` of type ${filter.job_type}` : "";
  const where = filter.organization ? ` in ${filter.organization}` : " in every organization you can see";
  return `every ${status}job${type}${where}`;
}

function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }

function reportBulk(action, answer) {
  if (action === "cancel") {
    const parts = [];
    if (answer.canceled) parts.push(`Canceled ${plural(answer.canceled, "job")}`);
    if (answer.cancel_requested) parts.push(`asked ${plural(answer.cancel_requested, "running job")} to stop`);
    return parts.length ? `${parts.join("; ")}.` : "Nothing to cancel: no waiting, queued, retrying or running job matches.";
  }
  return answer.retried ? `Queued ${plural(answer.retried, "job")} again.`
    : "Nothing to retry: no dead or canceled job matches.";
}

function renderJob(job) {
  const badge = document.getElementById("job-status");
  badge.textContent = job.status;
  badge.className = `badge ${job.status}`;
  const percent = job.status === "completed" ? 100 : (job.progress || 0);
  const bar = document.getElementById("progress");
  // A bar only for a job that reports progress (or has finished): 0% would say nothing.
  bar.hidden = job.progress == null && job.status !== "completed";
  bar.setAttribute("aria-valuenow", String(percent));
  bar.querySelector(".fill").style.width = `${percent}%`;
  document.getElementById("progress-label").textContent =
    `${percent}%${job.progress_message ? " · " + job.progress_message : ""}`;
  document.getElementById("job-attempt").textContent = `${job.attempt} (max retries ${job.max_retries})`;
  document.getElementById("job-result").textContent = JSON.stringify(job.result, null, 2);
  document.getElementById("job-error").textContent = job.last_error || "";
  document.getElementById("error-section").hidden = !job.last_error;
  document.getElementById("cancel-job").disabled = ["completed", "dead", "canceled"].includes(job.status);
  document.getElementById("retry-job").disabled = !["dead", "canceled"].includes(job.status);
  document.getElementById("job-queue").textContent = `${job.queue} / ${job.priority}`;
  const waiting = ["waiting", "queued", "retrying"].includes(job.status);
  document.getElementById("set-priority").disabled = !waiting;
  document.getElementById("job-priority").disabled = !waiting;
}

function renderAttempts(attempts) {
  const list = document.getElementById("attempts");
  list.replaceChildren(...attempts.map((a) => {
    const item = el("li", { class: a.outcome || "running" }, el("strong", {}, `#${a.attempt}`),
      ` ${a.outcome || "running"} · started `, timeEl(a.started_at),
      (a.duration_ms != null ? ` · ${Math.round(a.duration_ms)} ms` : "")
      + (a.worker_id ? ` · worker ${a.worker_id}` : ""));
    if (a.error) item.append(el("pre", {}, a.error));
    return item;
  }));
  if (!attempts.length) list.append(el("li", { class: "none hint" }, "No attempt yet."));
}

function initJob(root) {
  const jobId = root.dataset.jobId;
  // The page's Content-Security-Policy allows no inline style: the bar's first width comes from here.
  const bar = document.getElementById("progress");
  bar.querySelector(".fill").style.width = `${bar.getAttribute("aria-valuenow")}%`;
  const load = async () => {
    renderJob(await api("GET", `/api/jobs/${jobId}`));
    renderAttempts((await api("GET", `/api/jobs/${jobId}/attempts`)).attempts);
  };
  const refresh = throttled(load, 200);
  onEvents((event) => { if (String(event.job) === jobId) refresh(); });
  // Events drive the page; a slow poll covers a feed that reconnects.
  setInterval(refresh, 2000);
  load().catch(() => {});
  const result = document.getElementById("action-result");
  const act = (action) => async () => {
    try {
      renderJob(await api("POST", `/api/jobs/${jobId}/${action}`));
      result.textContent = "";
    } catch (e) { result.textContent = e.message; }
  };
  document.getElementById("cancel-job").onclick = act("cancel");
  document.getElementById("retry-job").onclick = act("retry");
  document.getElementById("set-priority").onclick = async () => {
    try {
      const priority = Number(document.getElementById("job-priority").value);
      renderJob(await api("POST", `/api/jobs/${jobId}/priority`, { priority }));
      result.textContent = "";
    } catch (e) { result.textContent = e.message; }
  };
}

function initJobType(root) { keepCurrent(() => loadJobType(root.dataset.jobType), 10000); }

async function loadJobType(name) {
  const m = await api("GET", "/api/metrics");
  const row = (m.failure_rate_by_type || []).find((t) => t.job_type === name);
  const body = document.querySelector("#type-metrics tbody");
  body.replaceChildren(row
    ? el("tr", {}, el("td", {}, String(row.attempts)), el("td", {}, String(row.failed)),
      el("td", {}, `${(row.rate * 100).toFixed(1)}%`))
    : el("tr", {}, el("td", { colspan: "3" }, "No attempts in the last 24 hours.")));
}

async function loadWorkers() {
  const { workers } = await api("GET", "/api/workers");
  const body = document.querySelector("#workers-table tbody");
  body.replaceChildren(...workers.map((w) => {
    const ago = Math.max(0, Math.round((Date.now() - new Date(w.last_heartbeat)) / 1000));
    const heartbeat = el("time", { datetime: w.last_heartbeat }, `${ago} s ago`);
    heartbeat.title = `${localTime(w.last_heartbeat)} (${ZONE})`;
    const running = w.running.length
      ? w.running.map((j) => el("a", { href: `/jobs/${j.job_id}`, class: "badge running" },
        `${j.job_id} ${j.job_type}${j.progress != null ? " " + j.progress + "%" : ""}`))
      : [el("span", { class: "hint" }, "idle")];
    return el("tr", { "data-worker-id": String(w.worker_id) },
      el("td", {}, String(w.worker_id)),
      el("td", { class: "host" }, w.host || "—"),
      el("td", { class: "pid" }, w.pid == null ? "—" : String(w.pid)),
      el("td", { class: "queues" }, w.queues ? w.queues.join(", ") : (w.host ? "every queue" : "—")),
      el("td", { class: "concurrency" }, w.concurrency == null ? "—"
        : `${w.running.length} of ${w.concurrency} busy`),
      el("td", {}, w.started_at ? timeEl(w.started_at) : "—"),
      el("td", {}, heartbeat),
      el("td", { class: "running" }, ...running));
  }));
  if (!workers.length) body.append(el("tr", {}, el("td", { colspan: "8" }, "No live workers.")));
}

function initJobTypes() { keepCurrent(loadJobTypes, 10000); }

async function loadJobTypes() {
  const m = await api("GET", "/api/metrics");
  const byType = new Map((m.failure_rate_by_type || []).map((t) => [t.job_type, t]));
  document.querySelectorAll("#job-types-table tr[data-job-type]").forEach((row) => {
    const t = byType.get(row.dataset.jobType);
    row.querySelector(".attempts").textContent = t ? String(t.attempts) : "0";
    row.querySelector(".rate").textContent = t ? `${(t.rate * 100).toFixed(1)}%` : "—";
  });
}

// --- schedules: run now, enable, disable; the table follows schedule events -----------------

// The table is re-read from the page's own HTML and swapped in place: a refresh never
// navigates, so a click in flight or the last action's result is never lost to it.
async function reloadSchedules() {
  const response = await fetch(location.href, { credentials: "same-origin" });
  if (!response.ok) throw new Error(response.statusText);  // keep the table; the next try may do
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html")
    .querySelector("#schedules-table tbody");
  if (!fresh) { location.reload(); return; }  // signed out: the reload shows the login page
  localizeTimes(fresh);
  document.querySelector("#schedules-table tbody").replaceWith(fresh);
}

function initSchedules() {
  const result = document.getElementById("schedule-result");
  const refresh = throttled(reloadSchedules, 1000);
  document.getElementById("schedules-table").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const [org, name] = button.closest("tr").dataset.schedule.split("/");
    const path = `/api/schedules/${encodeURIComponent(org)}/${encodeURIComponent(name)}`;
    button.disabled = true;
    try {
      let said;
      if (button.dataset.action === "run") {
        const job = await api("POST", `${path}/run`);
        said = job.duplicate
          ? `${name}: job ${job.id} is still active, so no new job was submitted.`
          : `${name}: submitted job ${job.id}.`;
      } else {
        const enable = button.dataset.action === "enable";
        await api("PATCH", path, { enabled: enable });
        said = `${name} is ${enable ? "enabled" : "disabled"}.`;
      }
      // The words come with the table that shows them, not before it.
      await reloadSchedules().catch(() => {});
      result.textContent = said;
      result.hidden = false;
    } catch (e) {
      result.textContent = e.message;
      result.hidden = false;
      button.disabled = false;
    }
  });
  // Fired ticks and changes made elsewhere show up without a manual reload.
  const source = eventSource();
  ["schedule_created", "schedule_updated", "schedule_enabled", "schedule_disabled",
    "schedule_deleted", "schedule_planned", "schedule_fired", "schedule_tick_failed",
    "schedule_missed", "schedule_failed"]
    .forEach((t) => source.addEventListener(t, refresh));
  setInterval(refresh, 30000);  // the next run moves on with the ticks
}

// --- queues: pauses, caps and what each organization uses --------------------------------

function cap(running, limit) { return limit == null ? `${running}` : `${running} / ${limit}`; }

function numberOrNull(input) { return input.value === "" ? null : Number(input.value); }

async function loadQueues(root) {
  const admin = root.dataset.admin === "yes";
  const result = document.getElementById("queues-result");
  const act = (fn) => async () => {
    try { await fn(); result.textContent = ""; } catch (e) { result.textContent = e.message; }
    loadQueues(root).catch(() => {});
  };
  const [{ queues }, { usage }] = await Promise.all(
    [api("GET", "/api/queues"), api("GET", "/api/queue-usage")]);
  document.querySelector("#queues-table tbody").replaceChildren(...queues.map((q) => {
    const row = el("tr", { "data-queue": q.queue },
      el("td", {}, q.queue),
      el("td", {}, el("span", { class: `badge ${q.paused ? "dead" : "completed"}` },
        q.paused ? "paused" : "running")),
      el("td", {}, cap(q.running, q.concurrency)),
      el("td", {}, q.organization_concurrency == null ? "—" : String(q.organization_concurrency)),
      el("td", {}, String(q.queued)));
    const actions = el("td", {});
    if (admin) {
      const toggle = el("button", { type: "button", class: "pause-queue" }, q.paused ? "Resume" : "Pause");
      toggle.onclick = act(() => api("POST", `/api/queues/${encodeURIComponent(q.queue)}/${q.paused ? "resume" : "pause"}`, {}));
      const total = el("input", { type: "number", min: "0", placeholder: "queue cap", class: "queue-cap" });
      const each = el("input", { type: "number", min: "0", placeholder: "per organization", class: "org-cap" });
      if (q.concurrency != null) total.value = String(q.concurrency);
      if (q.organization_concurrency != null) each.value = String(q.organization_concurrency);
      const save = el("button", { type: "button", class: "save-limits" }, "Set caps");
      save.onclick = act(() => api("POST", `/api/queues/${encodeURIComponent(q.queue)}/limits`,
        { concurrency: numberOrNull(total), organization_concurrency: numberOrNull(each) }));
      actions.append(toggle, " ", total, each, save);
    }
    row.append(actions);
    return row;
  }));
  if (!queues.length) {
    document.querySelector("#queues-table tbody").replaceChildren(
      el("tr", {}, el("td", { colspan: "6" }, "No queues yet.")));
  }
  document.querySelector("#usage-table tbody").replaceChildren(...usage.map((u) => {
    const path = `/api/queues/${encodeURIComponent(u.queue)}`;
    const state = u.queue_paused ? "queue paused" : (u.paused ? "paused" : "running");
    const row = el("tr", { "data-queue": u.queue, "data-organization": u.organization },
      el("td", {}, u.queue), el("td", {}, u.organization),
      el("td", {}, el("span", { class: `badge ${state === "running" ? "completed" : "dead"}` }, state)),
      el("td", { class: "usage" }, cap(u.running, u.concurrency)),
      el("td", {}, String(u.queued)), el("td", {}, String(u.weight)));
    // Pausing one organization is for its admins too: the engine says who may.
    const toggle = el("button", { type: "button", class: "pause-org" }, u.paused ? "Resume" : "Pause");
    toggle.onclick = act(() => api("POST", `${path}/${u.paused ? "resume" : "pause"}`,
      { organization: u.organization }));
    const actions = el("td", {}, toggle);
    if (admin) {
      const limit = el("input", { type: "number", min: "0", placeholder: "cap", class: "org-limit" });
      const weight = el("input", { type: "number", min: "1", max: "1000", class: "org-weight" });
      if (u.concurrency != null) limit.value = String(u.concurrency);
      weight.value = String(u.weight);
      const save = el("button", { type: "button", class: "save-org" }, "Set cap and weight");
      save.onclick = act(() => api("POST",
        `${path}/organizations/${encodeURIComponent(u.organization)}/limits`,
        { concurrency: numberOrNull(limit), weight: Number(weight.value) || 1 }));
      actions.append(" ", limit, weight, save);
    }
    row.append(actions);
    return row;
  }));
  if (!usage.length) {
    document.querySelector("#usage-table tbody").replaceChildren(
      el("tr", {}, el("td", { colspan: "7" }, "No organization has jobs in a queue.")));
  }
}

function initQueues(root) { keepCurrent(() => loadQueues(root), 5000); }

async function initTypeLimits(name) {
  const form = document.getElementById("type-limits");
  const [concurrency, startLimit, startPeriod] = ["type-concurrency", "type-start-limit",
    "type-start-period"].map((id) => document.getElementById(id));
  const { job_type_limits: limits } = await api("GET", "/api/job-type-limits");
  const mine = limits.find((t) => t.job_type === name);
  if (mine) {
    if (mine.concurrency != null) concurrency.value = String(mine.concurrency);
    if (mine.start_limit != null) startLimit.value = String(mine.start_limit);
    if (mine.start_period != null) startPeriod.value = String(mine.start_period);
  }
  if (form.dataset.admin !== "yes") {
    form.querySelectorAll("input, button").forEach((n) => { n.disabled = true; });
    return;
  }
  form.onsubmit = async (event) => {
    event.preventDefault();
    const result = document.getElementById("type-limits-result");
    try {
      await api("POST", `/api/job-types/${encodeURIComponent(name)}/limits`, {
        concurrency: numberOrNull(concurrency), start_limit: numberOrNull(startLimit),
        start_period: numberOrNull(startPeriod) });
      result.textContent = "saved";
    } catch (e) { result.textContent = e.message; }
  };
}

function initLogin() {
  const form = document.getElementById("login-form");
  form.onsubmit = async (event) => {
    event.preventDefault();
    const error = document.getElementById("login-error");
    try {
      await api("POST", "/api/session", { token: document.getElementById("token").value });
      location.href = "/";
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  };
}

document.addEventListener("DOMContentLoaded", () => {
  localizeTimes(document);
  const signOut = document.getElementById("sign-out");
  if (signOut) signOut.onclick = async () => { await api("DELETE", "/api/session"); location.href = "/login"; };
  if (document.getElementById("login-form")) return initLogin();
  const page = document.querySelector("[data-page]");
  if (!page) return;
  switch (page.dataset.page) {
    case "overview": return initOverview();
    case "jobs": return initJobs();
    case "job": return initJob(page);
    case "job-type":
      initTypeLimits(page.dataset.jobType).catch(() => {});
      return initJobType(page);
    case "queues": return initQueues(page);
    case "schedules": return initSchedules();
    case "job-types": return initJobTypes();
    case "workers":
      loadWorkers().catch(() => {});
      return setInterval(() => loadWorkers().catch(() => {}), 2000);
  }
});
