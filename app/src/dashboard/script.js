"use strict";
// Everything that comes from the network goes into the page as text (textContent, dataset),
// never as markup: server ids are whatever an instance was configured with.
(() => {
  const POLL_MS = 2000;
  const KEEP_ANSWERS = 10;
  // Answered by the local stack's load balancer itself; a DigitalOcean balancer has none (404).
  const LB_STATUS = "{{lb_status_path}}";
  const WINDOW_S = 15 * 60;
  const KEEP_EVENTS = 12;
  const COLORS = ["#2f6fde", "#e8710a", "#12a4b4", "#9334e6", "#c5221f", "#188038", "#b06000", "#7b5ea7"];
  const colorOf = new Map();
  const windows = document.querySelectorAll("#windows button");
  const $ = (id) => document.getElementById(id);
  const seen = { stats: false, info: false };
  const answers = [];
  let current = new URLSearchParams(location.search).get("window") || "15m";
  if (![...windows].some((b) => b.dataset.window === current)) current = "15m";

  const number = (n, digits = 0) =>
    Number(n).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });

  function element(tag, className, text, label) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    if (label) node.dataset.label = label;
    return node;
  }

  function serverRow(s) {
    const row = element("div", "server");
    row.setAttribute("data-server-id", String(s.server_id));
    row.append(element("span", "id", String(s.server_id)));
    const share = element("span", "share");
    const track = element("span", "track");
    const bar = element("span", "bar");
    bar.style.width = `${Math.max(0, Math.min(100, Number(s.percent) || 0))}%`;
    track.append(bar);
    share.append(track, element("span", "pct", `${number(s.percent, 2)} %`));
    row.append(
      share,
      element("span", "num", number(s.requests), "requests"),
      element("span", "num", number(s.avg_latency_ms, 2), "avg ms"),
      element("span", "num", number(s.p95_latency_ms, 2), "p95 ms"),
      element(
        "span",
        s.errors > 0 ? "num bad" : "num",
        `${number(s.errors)} (${number(s.error_rate * 100, 2)} %)`,
        "errors",
      ),
    );
    return row;
  }

  function renderStats(stats) {
    const servers = Array.isArray(stats.servers) ? stats.servers : [];
    const errors = servers.reduce((sum, s) => sum + (Number(s.errors) || 0), 0);
    $("total-requests").textContent = number(stats.total_requests);
    $("total-users").textContent = number(stats.total_users);
    $("total-servers").textContent = number(servers.length);
    const rate = stats.total_requests > 0 ? (errors / stats.total_requests) * 100 : 0;
    $("total-errors").textContent = `${number(errors)} (${number(rate, 2)} %)`;
    const list = $("servers");
    if (servers.length === 0) {
      list.replaceChildren(element("p", "muted", "no requests in this window yet"));
    } else {
      list.replaceChildren(...servers.map(serverRow));
    }
  }

  function renderAnswers() {
    $("answers").replaceChildren(...answers.map((a) => element("li", "", a)));
  }

  function color(id) {
    if (!colorOf.has(id)) colorOf.set(id, COLORS[colorOf.size % COLORS.length]);
    return colorOf.get(id);
  }

  // The charts' own namespace, so the page names no address at all.
  const SVG = $("chart-rps").namespaceURI;
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function backendRow(b) {
    const row = element("div", "backend");
    row.dataset.backendId = String(b.id);
    row.dataset.state = String(b.state);
    row.dataset.inRotation = String(Boolean(b.in_rotation));
    const id = element("span", "id");
    const swatch = element("span", "swatch");
    swatch.style.background = color(String(b.id));
    id.append(swatch, document.createTextNode(String(b.id)));
    const state = element("span", "");
    state.append(element("span", `badge ${b.state === "up" ? "up" : "down"}`, b.in_rotation ? "in rotation" : "out of rotation"));
    row.append(
      id,
      state,
      element("span", "num", `${number(b.consecutive_successes)} ok / ${number(b.consecutive_failures)} failed`, "checks"),
      element("span", "num", number(b.requests), "requests"),
      element("span", b.server_errors > 0 ? "num bad" : "num", number(b.server_errors), "5xx"),
      element("span", "err", b.last_error ? String(b.last_error) : ""),
    );
    return row;
  }

  // One chart: a line per backend over [start, end] (Unix seconds), gaps where `value` is
  // null, and a dashed line where a backend left or rejoined rotation.
  function chart(node, backends, value, start, end, events, born) {
    const W = 900, H = 170, left = 48, right = 10, top = 18, bottom = 20;
    const x = (t) => left + ((t - start) / (end - start)) * (W - left - right);
    const lines = backends.map((b) => ({
      id: String(b.id),
      points: (Array.isArray(b.series) ? b.series : []).map((p) => [Number(p.t), value(p, end)]),
    }));
    let max = 0;
    for (const l of lines) for (const [, v] of l.points) if (v !== null && v > max) max = v;
    max = max > 0 ? max * 1.15 : 1;
    const y = (v) => top + (1 - v / max) * (H - top - bottom);
    const parts = [
      svg("line", { class: "axis", x1: left, y1: y(0), x2: W - right, y2: y(0) }),
      svg("text", { class: "tick", x: left - 4, y: y(max) + 10, "text-anchor": "end" }, number(max, max < 10 ? 1 : 0)),
      svg("text", { class: "tick", x: left - 4, y: y(0), "text-anchor": "end" }, "0"),
    ];
    for (const m of [15, 10, 5, 0]) {
      const t = end - m * 60;
      if (t < start) continue;
      parts.push(svg("text", { class: "tick", x: x(t), y: H - 4, "text-anchor": t === start ? "start" : m === 0 ? "end" : "middle" }, m === 0 ? "now" : `-${m} min`));
    }
    for (const l of lines) {
      let d = "";
      let pen = false;
      for (const [t, v] of l.points) {
        // Before the balancer existed there is no data, not zero traffic.
        if (v === null || t < start || t + 5 < born) {
          pen = false;
          continue;
        }
        d += `${pen ? "L" : "M"}${x(t).toFixed(1)} ${y(v).toFixed(1)} `;
        pen = true;
      }
      if (d) parts.push(svg("path", { class: "series", d, stroke: color(l.id) }));
    }
    let row = 0;
    // A backend leaving rotation, and coming back after that (not its first time up).
    const wasDown = new Set();
    for (const e of events) {
      const t = Number(e.at_ms) / 1000;
      const rejoin = e.change === "up" && wasDown.has(e.backend);
      if (e.change === "down") wasDown.add(e.backend);
      if (rejoin) wasDown.delete(e.backend);
      if (t < start || t > end || (e.change !== "down" && !rejoin)) continue;
      const kind = e.change === "down" ? "down" : "up";
      parts.push(svg("line", { class: `marker ${kind}`, x1: x(t), y1: top - 4, x2: x(t), y2: y(0) }));
      const label = `${e.backend} ${e.change}`;
      const anchor = x(t) > W - 120 ? "end" : "start";
      parts.push(svg("text", { class: `marker-label ${kind}`, x: x(t) + (anchor === "end" ? -3 : 3), y: top + 8 + 12 * (row++ % 3), "text-anchor": anchor, "data-marker": label }, label));
    }
    node.replaceChildren(...parts);
  }

  function renderLb(report) {
    const backends = Array.isArray(report.backends) ? report.backends : [];
    const events = Array.isArray(report.events) ? report.events : [];
    const step = Number(report.step_seconds) || 5;
    const end = Number(report.generated_at_ms) / 1000;
    // The last 15 minutes, or the balancer's whole life when that is shorter (at least 1).
    const born = Math.min(...events.map((e) => Number(e.at_ms) / 1000), end);
    const start = Math.max(end - WINDOW_S, Math.min(born - step, end - 60));
    $("backends").replaceChildren(...backends.map(backendRow));
    // The newest step is still filling: its rate is over the seconds it has had.
    const per = (p, now) => Math.max(1, Math.min(step, now - Number(p.t)));
    chart($("chart-rps"), backends, (p, now) => Number(p.requests) / per(p, now), start, end, events, born);
    chart($("chart-p95"), backends, (p) => (p.p95_ms === null || p.p95_ms === undefined ? null : Number(p.p95_ms)), start, end, events, born);
    chart($("chart-errors"), backends, (p, now) => Number(p.server_errors) / per(p, now), start, end, events, born);
    $("legend").replaceChildren(
      ...backends.map((b) => {
        const li = element("li", "");
        const swatch = element("span", "swatch");
        swatch.style.background = color(String(b.id));
        li.append(swatch, document.createTextNode(String(b.id)));
        return li;
      }),
    );
    const recent = events.slice(-KEEP_EVENTS).reverse();
    $("events").replaceChildren(
      ...recent.map((e) => {
        const when = new Date(Number(e.at_ms)).toLocaleTimeString();
        const reason = e.reason ? `: ${e.reason}` : "";
        const li = element("li", e.change === "down" || e.change === "removed" ? "down" : "up", `${when} ${e.backend} ${e.change}${reason}`);
        li.dataset.marker = `${e.backend} ${e.change}`;
        return li;
      }),
    );
  }

  async function pollLb() {
    const section = $("lb");
    try {
      const response = await fetch(LB_STATUS, { cache: "no-store", headers: { accept: "application/json" } });
      if (response.status === 404) {
        section.dataset.lb = "absent";
        $("backends").replaceChildren(
          element("p", "muted", "Not available here: this view comes from the local stack's load balancer. DigitalOcean's load balancer shows its own graphs in the control panel."),
        );
        return null;
      }
      if (!response.ok) throw new Error(`${LB_STATUS}: HTTP ${response.status}`);
      renderLb(await response.json());
      section.dataset.lb = "live";
      return null;
    } catch (e) {
      return String(e.message || e);
    }
  }

  async function fetchJson(url) {
    const response = await fetch(url, { cache: "no-store", headers: { accept: "application/json" } });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  let busy = false;
  async function poll() {
    // A slow answer must not pile up requests behind it.
    if (busy) return;
    busy = true;
    const asked = current;
    const [stats, info, lb] = await Promise.allSettled([
      fetchJson(`/api/stats?window=${encodeURIComponent(asked)}`),
      fetchJson("/server-info"),
      pollLb(),
    ]).finally(() => {
      busy = false;
    });
    const problems = [];
    if (lb.status === "fulfilled" && lb.value) problems.push(lb.value);
    if (stats.status === "fulfilled" && asked !== current) {
      // The window changed meanwhile: this answer is for the old one.
    } else if (stats.status === "fulfilled") {
      renderStats(stats.value);
      seen.stats = true;
    } else {
      problems.push(String(stats.reason.message || stats.reason));
    }
    if (info.status === "fulfilled") {
      answers.unshift(String(info.value.server_id));
      answers.length = Math.min(answers.length, KEEP_ANSWERS);
      renderAnswers();
      seen.info = true;
    } else {
      problems.push(String(info.reason.message || info.reason));
    }
    $("problem").textContent = problems.join("; ");
    if (problems.length === 0) {
      $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    }
    // The hook a browser test waits for: both endpoints rendered, the last poll clean.
    if (seen.stats && seen.info) {
      document.body.dataset.state = problems.length === 0 ? "live" : "stale";
    }
  }

  function choose(window) {
    current = window;
    for (const button of windows) {
      button.setAttribute("aria-pressed", String(button.dataset.window === window));
    }
    poll();
  }

  for (const button of windows) {
    button.addEventListener("click", () => choose(button.dataset.window));
  }
  choose(current);
  setInterval(poll, POLL_MS);
})();
