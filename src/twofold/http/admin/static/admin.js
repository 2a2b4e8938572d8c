/* twofold admin dashboard: a face on /admin/api/. No framework, no request outside the
   server. The API key (when the server has keys) is kept in sessionStorage for this tab and
   sent as a header, never in a URL. Text from the server is always set as text, never as HTML. */
"use strict";

const KEY_NAME = "twofold.admin.key";
const POLL_MS = 2000;
const CHART_SECONDS = 300;
const COLORS = ["#0b5cad", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#57606a"];

const state = {
  projections: [],
  samples: [],          // [{t, lags: {name: lag_events}}], the last CHART_SECONDS
  rebuilding: new Map(), // projection -> {done, total}
  polling: null,
};

// -- helpers ---------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

function fmt(n, digits) {
  if (n === null || n === undefined) return "–";
  if (typeof n !== "number") return String(n);
  return digits === undefined ? n.toLocaleString("en") : n.toFixed(digits);
}

function ms(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return `${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1)} ms`;
}

function notice(text, isError) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.classList.toggle("error", Boolean(isError));
  box.hidden = !text;
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function headers(extra) {
  const out = Object.assign({ Accept: "application/json" }, extra || {});
  const key = sessionStorage.getItem(KEY_NAME);
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

async function api(method, path, body) {
  const init = { method, headers: headers(), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`/admin/api${path}`, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 || response.status === 403) {
      notice(`${error.message}`, true);
      document.getElementById("key-input").focus();
    }
    throw error;
  }
  return data;
}

function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

// -- overview --------------------------------------------------------------------------

function renderOverview(data) {
  const health = document.getElementById("ov-health");
  health.textContent = data.status;
  health.className = `level-${data.status}`;
  document.getElementById("ov-head").textContent = fmt(data.head_position);
  const commands = data.commands;
  const queries = data.queries;
  document.getElementById("ov-rate").textContent =
    commands.per_second === null ? "–" : fmt(commands.per_second, 1);
  document.getElementById("ov-cmd-p99").textContent = ms(commands.p99_seconds);
  document.getElementById("ov-query-p99").textContent = ms(queries.p99_seconds);
  document.getElementById("ov-commands").textContent = fmt(commands.total);
  document.getElementById("ov-source").textContent = data.figures;
  // The relays' and the cache's cards appear when the service has them.
  const relays = data.relays || [];
  document.getElementById("ov-relays-card").hidden = !relays.length;
  if (relays.length) {
    const lag = Math.max(...relays.map((r) => r.lag_events));
    const retrying = relays.filter((r) => r.state === "retrying").length;
    document.getElementById("ov-relays").textContent =
      `${relays.length} · lag ${fmt(lag)}${retrying ? ` · ${retrying} retrying` : ""}`;
  }
  const cache = data.cache;
  document.getElementById("ov-cache-card").hidden = !cache;
  if (cache) {
    const shown = document.getElementById("ov-cache");
    shown.textContent = cache.status;
    shown.className = `level-${cache.status}`;
  }
  const open = (data.breakers || []).filter((b) => b.state !== "closed").map((b) => b.name);
  const notes = [];
  if (open.length) notes.push(`circuit breakers not closed: ${open.join(", ")}`);
  if (cache && cache.status !== "UP") notes.push(`cache: ${cache.detail}`);
  document.getElementById("ov-detail").textContent = notes.join("; ");
}

// -- projections -----------------------------------------------------------------------

function levelBadge(report) {
  return el("span", { class: `badge level-${report.level}`, text: report.status });
}

function actionButton(label, name, run) {
  return el("button", {
    type: "button",
    "data-action": label.toLowerCase(),
    "aria-label": `${label} ${name}`,
    onclick: run,
  }, label);
}

function rebuildCell(name) {
  const progress = state.rebuilding.get(name);
  if (!progress) return null;
  const label = progress.total ? `${fmt(progress.done)} of ${fmt(progress.total)} events` : "starting";
  return el("span", { class: "row", "data-rebuild": name },
    el("progress", { max: progress.total || 1, value: progress.done, "aria-label": `Rebuild of ${name}` }),
    el("span", { class: "hint", text: label }));
}

function renderProjections() {
  const body = document.querySelector("#projections-table tbody");
  // The rows are drawn anew at each poll: keep the keyboard's place on its button.
  const focused = document.activeElement;
  const keep = focused && body.contains(focused) && focused.dataset.action
    ? { row: focused.closest("tr").dataset.projection, action: focused.dataset.action } : null;
  body.replaceChildren(...state.projections.map((p) => {
    const actions = el("div", { class: "actions" },
      actionButton("Rebuild", p.name, () => rebuild(p.name)),
      p.paused
        ? actionButton("Resume", p.name, () => simpleAction(p.name, "resume"))
        : actionButton("Pause", p.name, () => simpleAction(p.name, "pause")),
      actionButton("Reset", p.name, () => simpleAction(p.name, "reset")),
      rebuildCell(p.name));
    return el("tr", { "data-projection": p.name },
      el("th", { scope: "row", "data-label": "Name" }, p.name),
      el("td", { "data-label": "Status" }, levelBadge(p)),
      el("td", { class: "num", "data-label": "Position" }, fmt(p.position)),
      el("td", { class: "num", "data-label": "Lag (events)" }, fmt(p.lag_events)),
      el("td", { class: "num", "data-label": "Lag (s)" }, fmt(p.lag_seconds, 1)),
      el("td", { class: "num", "data-label": "Parked" }, fmt(p.parked)),
      el("td", { class: "error", "data-label": "Last error" }, p.error || ""),
      el("td", { "data-label": "Actions" }, actions));
  }));
  if (keep) {
    const row = body.querySelector(`tr[data-projection="${CSS.escape(keep.row)}"]`);
    const again = row && (row.querySelector(`[data-action="${keep.action}"]`) ||
      row.querySelector("[data-action]"));
    if (again) again.focus();
  }
  for (const id of ["dl-projection", "verify-projection"]) {
    const select = document.getElementById(id);
    const chosen = select.value;
    const names = state.projections.map((p) => p.name);
    const current = Array.from(select.options).slice(1).map((o) => o.value);
    if (names.join("\n") !== current.join("\n")) {
      select.replaceChildren(el("option", { value: "" }, "all"),
        ...names.map((n) => el("option", { value: n }, n)));
      select.value = names.includes(chosen) ? chosen : "";
    }
  }
}

const WORDS = {
  pause: "Pause {name}? Its views stop changing until it is resumed; queries keep reading them.",
  resume: "Resume {name}? It applies the events it has not applied yet.",
  reset: "Reset {name}? Its views are emptied and refilled from the start of the log; " +
    "until then queries see them incomplete. (Rebuild keeps serving the old copy instead.)",
  rebuild: "Rebuild {name}? The log is replayed into a fresh copy of its views while the " +
    "current copy keeps serving; the new copy replaces it when it has caught up.",
};

async function simpleAction(name, action) {
  if (!(await confirmAction(WORDS[action].replace("{name}", name)))) return;
  try {
    await api("POST", `/projections/${encodeURIComponent(name)}/${action}`);
    notice(`${action} ${name}: done`);
  } catch (error) {
    notice(`${action} ${name} failed: ${error.message}`, true);
  }
  await refresh();
}

async function rebuild(name) {
  if (!(await confirmAction(WORDS.rebuild.replace("{name}", name)))) return;
  state.rebuilding.set(name, { done: 0, total: 0 });
  renderProjections();
  try {
    const response = await fetch(`/admin/api/projections/${encodeURIComponent(name)}/rebuild`, {
      method: "POST",
      headers: headers({ Accept: "text/event-stream" }),
      cache: "no-store",
    });
    if (!response.ok) {
      const problem = await response.json().catch(() => null);
      throw new ApiError(response.status, problem);
    }
    const job = await followEvents(response, (kind, data) => {
      if (kind === "progress") {
        state.rebuilding.set(name, { done: data.done, total: data.total });
        const cell = document.querySelector(`[data-rebuild="${CSS.escape(name)}"]`);
        if (cell) cell.replaceWith(rebuildCell(name));
      }
    });
    if (job.status === "done") notice(`rebuild ${name}: done at position ${job.checkpoint}`);
    else notice(`rebuild ${name} failed: ${job.error}`, true);
  } catch (error) {
    notice(`rebuild ${name} failed: ${error.message}`, true);
  } finally {
    state.rebuilding.delete(name);
    await refresh();
  }
}

/* Read a text/event-stream answer; call onEvent(kind, data) per event; resolve with the
   last event's data (the job, finished). */
async function followEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let kind = "message";
      const lines = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) lines.push(line.slice(5).trim());
      }
      if (!lines.length) continue;
      const data = JSON.parse(lines.join("\n"));
      onEvent(kind, data);
      last = data;
    }
  }
  if (last === null) throw new Error("the server ended the rebuild's progress without an outcome");
  return last;
}

// -- the lag chart ---------------------------------------------------------------------

function sample(projections) {
  const now = Date.now() / 1000;
  const lags = {};
  for (const p of projections) lags[p.name] = p.lag_events;
  state.samples.push({ t: now, lags });
  while (state.samples.length && state.samples[0].t < now - CHART_SECONDS) state.samples.shift();
}

/* The smallest of 4, 10, 20, 50, 100, 200, 500... at or above n: axis ticks at 0, half, whole. */
function niceCeiling(n) {
  if (n <= 4) return 4;
  let step = 10;
  for (;;) {
    for (const m of [1, 2, 5]) if (n <= step * m) return step * m;
    step *= 10;
  }
}

function drawChart() {
  const canvas = document.getElementById("lag-chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  const height = canvas.clientHeight || 260;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const names = state.projections.map((p) => p.name);
  const left = 56, right = 10, top = 12, bottom = 46;
  const plotW = Math.max(10, width - left - right);
  const plotH = Math.max(10, height - top - bottom);
  let most = 0;
  for (const s of state.samples) for (const n of names) most = Math.max(most, s.lags[n] || 0);
  const max = niceCeiling(most);
  const now = Date.now() / 1000;
  const x = (t) => left + plotW * (1 - (now - t) / CHART_SECONDS);
  const y = (v) => top + plotH * (1 - v / max);
  ctx.font = "12px system-ui, sans-serif";
  ctx.strokeStyle = "#d0d7de";
  ctx.fillStyle = "#57606a";
  ctx.lineWidth = 1;
  for (const v of [0, max / 2, max]) {
    ctx.beginPath();
    ctx.moveTo(left, y(v));
    ctx.lineTo(left + plotW, y(v));
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillText(fmt(Math.round(v)), left - 6, y(v) + 4);
  }
  ctx.textAlign = "left";
  ctx.fillText("−5 min", left, top + plotH + 16);
  ctx.textAlign = "right";
  ctx.fillText("now", left + plotW, top + plotH + 16);
  let legendX = left;
  names.forEach((name, i) => {
    const color = COLORS[i % COLORS.length];
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    for (const s of state.samples) {
      if (!(name in s.lags)) continue;
      const px = x(s.t), py = y(s.lags[name]);
      if (started) ctx.lineTo(px, py); else { ctx.moveTo(px, py); started = true; }
    }
    ctx.stroke();
    ctx.fillStyle = color;
    ctx.fillRect(legendX, top + plotH + 28, 10, 10);
    ctx.fillStyle = "#1b1f24";
    ctx.textAlign = "left";
    ctx.fillText(name, legendX + 14, top + plotH + 37);
    legendX += ctx.measureText(name).width + 30;
  });
  const latest = state.samples.length ? state.samples[state.samples.length - 1].lags : {};
  const summary = names.map((n) => `${n} ${latest[n] || 0}`).join(", ");
  canvas.setAttribute("aria-label", `Lag in events now: ${summary || "no projections"}`);
}

// -- dead letters ----------------------------------------------------------------------

function eventBlock(event, extra) {
  const meta = event.metadata || {};
  return el("div", { class: "event", "data-position": event.position },
    el("div", { class: "meta" },
      el("span", {}, "position ", el("strong", { text: fmt(event.position) })),
      el("span", {}, "version ", el("strong", { text: fmt(event.stream_version) })),
      el("span", { class: "mono", text: event.type }),
      el("span", { class: "hint", text: event.recorded_at })),
    extra || null,
    el("details", {},
      el("summary", {}, "data and metadata"),
      el("p", { class: "hint", text: "data" }),
      el("pre", { "aria-label": "data", text: json(event.data) }),
      el("p", { class: "hint", text: "metadata" }),
      el("pre", { "aria-label": "metadata", text: json(meta) })),
    followLinks(event));
}

async function showDeadLetters(event) {
  if (event) event.preventDefault();
  const projection = document.getElementById("dl-projection").value;
  const stream = document.getElementById("dl-stream").value.trim();
  const params = new URLSearchParams();
  if (projection) params.set("projection", projection);
  if (stream) params.set("stream_id", stream);
  const box = document.getElementById("dl-list");
  let data;
  try {
    data = await api("GET", `/dead-letters?${params}`);
  } catch (error) {
    box.replaceChildren(el("p", { class: "bad", text: error.message }));
    return;
  }
  if (!data.dead_letters.length) {
    box.replaceChildren(el("p", { class: "empty", text: "No parked events." }));
    return;
  }
  const groups = new Map();
  for (const letter of data.dead_letters) {
    const key = `${letter.projection}\u0000${letter.stream_id}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(letter);
  }
  box.replaceChildren(...Array.from(groups.values()).map((letters) => {
    const { projection: name, stream_id: streamId } = letters[0];
    return el("div", { class: "group", "data-dead-stream": streamId, "data-dead-projection": name },
      el("h3", {}, `${name} · stream ${streamId}`),
      el("div", { class: "actions" },
        el("button", {
          type: "button", "aria-label": `Retry stream ${streamId} of ${name}`,
          onclick: () => releaseStream(name, streamId, "retry"),
        }, "Retry stream"),
        el("button", {
          type: "button", class: "danger", "aria-label": `Skip stream ${streamId} of ${name}`,
          onclick: () => releaseStream(name, streamId, "skip"),
        }, "Skip stream")),
      letters.map((letter) => eventBlock(letter.event,
        el("div", {},
          el("p", { class: "bad", text: letter.error }),
          el("p", { class: "hint", text: `parked at ${letter.parked_at}` }),
          el("button", {
            type: "button", class: "danger",
            "aria-label": `Skip event at position ${letter.position}`,
            onclick: () => skipOne(name, letter.position),
          }, "Skip this event")))));
  }));
}

async function releaseStream(name, streamId, action) {
  const text = action === "retry"
    ? `Retry the parked events of stream ${streamId} in ${name}? They are applied again in order; a stream that still fails stays parked.`
    : `Skip the parked events of stream ${streamId} in ${name}? They are dropped without being applied: the views will never reflect them.`;
  if (!(await confirmAction(text))) return;
  try {
    const out = await api("POST", `/projections/${encodeURIComponent(name)}/dead-letters/${action}`,
      { stream_id: streamId });
    notice(action === "retry"
      ? `retry ${name} ${streamId}: ${out.applied} applied, ${out.remaining} still parked`
      : `skip ${name} ${streamId}: ${out.skipped} dropped, ${out.remaining} still parked`);
  } catch (error) {
    notice(`${action} failed: ${error.message}`, true);
  }
  await Promise.all([refresh(), showDeadLetters()]);
}

async function skipOne(name, position) {
  if (!(await confirmAction(`Skip the event at position ${position} in ${name}? It is dropped without being applied.`))) return;
  try {
    const out = await api("POST", `/projections/${encodeURIComponent(name)}/dead-letters/skip`,
      { positions: [position] });
    notice(`skip ${name} @${position}: ${out.skipped} dropped, ${out.remaining} still parked`);
  } catch (error) {
    notice(`skip failed: ${error.message}`, true);
  }
  await Promise.all([refresh(), showDeadLetters()]);
}

// -- streams ---------------------------------------------------------------------------

function followLinks(event) {
  const meta = event.metadata || {};
  const links = [];
  if (meta.correlation_id) {
    links.push(el("button", {
      type: "button", class: "link-button",
      onclick: () => trace(`/correlations?${new URLSearchParams({ correlation_id: meta.correlation_id })}`,
        `correlation ${meta.correlation_id}`),
    }, `events of correlation ${meta.correlation_id}`));
  }
  if (meta.causation_id) {
    links.push(el("button", {
      type: "button", class: "link-button",
      onclick: () => trace(`/events/${encodeURIComponent(meta.causation_id)}`, `the cause ${meta.causation_id}`),
    }, `cause ${meta.causation_id}`));
  }
  links.push(el("button", {
    type: "button", class: "link-button",
    onclick: () => trace(`/events/${encodeURIComponent(event.event_id)}/caused`,
      `events caused by ${event.event_id}`),
  }, "events it caused"));
  return el("div", { class: "links" }, links);
}

async function openStream(streamId, fromVersion) {
  const box = document.getElementById("stream-events");
  const params = new URLSearchParams({ from_version: String(fromVersion || 1), limit: "50" });
  let data;
  try {
    data = await api("GET", `/streams/${encodeURIComponent(streamId)}?${params}`);
  } catch (error) {
    box.replaceChildren(el("p", { class: "bad", text: error.message }));
    return;
  }
  const more = data.next_from_version
    ? el("button", { type: "button", onclick: () => openStream(streamId, data.next_from_version) },
      "Next events")
    : null;
  box.replaceChildren(el("div", { class: "group", "data-stream": streamId },
    el("h3", {}, `Stream ${streamId} · version ${data.version}`),
    data.events.length ? data.events.map((e) => eventBlock(e)) : el("p", { class: "empty", text: "No events." }),
    more));
}

async function findStream(event) {
  event.preventDefault();
  const id = document.getElementById("stream-id").value.trim();
  if (id) await openStream(id, 1);
}

async function listStreams(after) {
  const box = document.getElementById("streams-found");
  const params = new URLSearchParams({ limit: "25" });
  if (after) params.set("after", after);
  let data;
  try {
    data = await api("GET", `/streams?${params}`);
  } catch (error) {
    box.replaceChildren(el("p", { class: "bad", text: error.message }));
    return;
  }
  const rows = data.streams.map((s) => el("li", {},
    el("button", { type: "button", class: "link-button", onclick: () => openStream(s.stream_id, 1) },
      s.stream_id),
    ` · version ${s.version} · last position ${s.last_position}`));
  box.replaceChildren(el("ul", {}, rows),
    data.next_after
      ? el("button", { type: "button", onclick: () => listStreams(data.next_after) }, "Next streams")
      : null);
}

async function trace(path, label) {
  const box = document.getElementById("trace");
  let data;
  try {
    data = await api("GET", path);
  } catch (error) {
    box.replaceChildren(el("p", { class: "bad", text: `${label}: ${error.message}` }));
    return;
  }
  if (data.event_id) data = { events: [data], scanned: null, complete: true };
  const note = data.scanned === null ? ""
    : data.complete ? `searched the whole log (${fmt(data.scanned)} events)`
      : `searched the newest ${fmt(data.scanned)} events`;
  box.replaceChildren(el("div", { class: "group", "data-trace": label },
    el("h3", {}, `Following ${label}`),
    el("p", { class: "hint", text: note }),
    data.events.length
      ? data.events.map((e) => eventBlock(e, el("p", {}, "stream ",
        el("button", { type: "button", class: "link-button", onclick: () => openStream(e.stream_id, 1) },
          e.stream_id))))
      : el("p", { class: "empty", text: "No such events." })));
  box.scrollIntoView({ block: "nearest" });
}

// -- verify ----------------------------------------------------------------------------

async function runVerify(event) {
  event.preventDefault();
  const projection = document.getElementById("verify-projection").value;
  const box = document.getElementById("verify-result");
  const button = event.submitter || document.querySelector("#verify-form button");
  button.disabled = true;
  box.replaceChildren(el("p", { class: "hint", text: "Verifying…" }));
  let answer;
  try {
    answer = await api("POST", "/verify", projection ? { projection } : {});
  } catch (error) {
    box.replaceChildren(el("p", { class: "bad", text: error.message }));
    return;
  } finally {
    button.disabled = false;
  }
  const report = answer.report;
  box.replaceChildren(
    el("p", { class: answer.consistent ? "ok" : "bad",
      text: answer.consistent ? "Consistent: the live views equal a replay of the log."
        : "Divergent: the live views differ from a replay of the log." }),
    ...report.projections.map((p) => el("div", { class: "group", "data-verify": p.name },
      el("h3", {}, `${p.name} at position ${fmt(p.position)}: `,
        el("span", { class: p.consistent ? "ok" : "bad", text: p.consistent ? "consistent" : "diverges" })),
      p.error ? el("p", { class: "bad", text: p.error }) : null,
      p.collections.map((c) => el("div", {},
        el("p", {}, el("strong", { text: c.name }),
          ` · ${c.documents} documents · ${c.missing} missing · ${c.extra} extra · ${c.different} different`),
        c.missing_keys.length ? el("p", { class: "hint", text: `missing: ${c.missing_keys.join(", ")}` }) : null,
        c.extra_keys.length ? el("p", { class: "hint", text: `extra: ${c.extra_keys.join(", ")}` }) : null,
        c.differences.length ? el("div", { class: "table-wrap" }, el("table", { class: "diff" },
          el("thead", {}, el("tr", {},
            el("th", { scope: "col" }, "Document"), el("th", { scope: "col" }, "Field"),
            el("th", { scope: "col" }, "Live"), el("th", { scope: "col" }, "Replay"))),
          el("tbody", {}, c.differences.flatMap((d) => d.fields.map((f) => el("tr", {},
            el("td", { class: "mono", text: d.key }), el("td", { class: "mono", text: f.path }),
            el("td", { class: "mono", text: json(f.live) }),
            el("td", { class: "mono", text: json(f.expected) }))))))) : null)))));
}

// -- polling ---------------------------------------------------------------------------

async function refresh() {
  try {
    const [overview, projections] = await Promise.all([api("GET", "/overview"), api("GET", "/projections")]);
    renderOverview(overview);
    state.projections = projections.projections;
    sample(state.projections);
    renderProjections();
    drawChart();
    const box = document.getElementById("notice");
    if (box.classList.contains("error") && box.dataset.kind === "poll") notice("");
  } catch (error) {
    if (!(error instanceof ApiError) || (error.status !== 401 && error.status !== 403)) {
      notice(`cannot reach the admin API: ${error.message}`, true);
      document.getElementById("notice").dataset.kind = "poll";
    }
  }
}

function start() {
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("key-input");
    const key = input.value.trim();
    if (key) sessionStorage.setItem(KEY_NAME, key);
    input.value = "";
    notice(key ? "key kept for this tab" : "");
    refresh();
    showDeadLetters();
  });
  document.getElementById("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_NAME);
    notice("key forgotten");
  });
  document.getElementById("dl-form").addEventListener("submit", showDeadLetters);
  document.getElementById("stream-form").addEventListener("submit", findStream);
  document.getElementById("streams-list").addEventListener("click", () => listStreams(null));
  document.getElementById("verify-form").addEventListener("submit", runVerify);
  window.addEventListener("resize", drawChart);
  refresh();
  showDeadLetters();
  state.polling = setInterval(refresh, POLL_MS);
}

start();
