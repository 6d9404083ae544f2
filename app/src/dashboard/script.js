"use strict";
// Everything that comes from the network goes into the page as text (textContent, dataset),
// never as markup: server ids are whatever an instance was configured with.
(() => {
  const POLL_MS = 2000;
  const KEEP_ANSWERS = 10;
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
    const [stats, info] = await Promise.allSettled([
      fetchJson(`/api/stats?window=${encodeURIComponent(asked)}`),
      fetchJson("/server-info"),
    ]).finally(() => {
      busy = false;
    });
    const problems = [];
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
