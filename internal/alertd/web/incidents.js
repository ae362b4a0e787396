// incidents.js renders alertd's incidents page from its JSON API
// (api/v1/incidents, api/v1/alerts) and posts the operators' decisions to
// it. Every URL is relative to the page, so it works under
// --web.route-prefix. Data reaches the page only as text (textContent) or
// attribute values, never as HTML.
"use strict";

(function () {
  const REFRESH_MS = 30000;
  const VERDICTS = [
    { verdict: "true_positive", text: "True positive" },
    { verdict: "false_positive", text: "False positive" },
    { verdict: "not_actionable", text: "Not actionable" },
  ];

  const COLUMNS = ["Alert", "State", "Priority", "Category", "Explanation", "History", "Feedback"];

  const list = document.getElementById("incidents");
  const status = document.getElementById("status");
  const by = document.getElementById("by");
  const showClosed = document.getElementById("show-closed");
  // Loads run one after another: a refresh asked for while one runs
  // waits for it, so what an action changed is always shown.
  let chain = Promise.resolve(true);

  // el builds an element with attributes and children; strings become
  // text nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) {
        continue;
      }
      if (k === "text") {
        e.textContent = v;
      } else if (k === "onclick") {
        e.addEventListener("click", v);
      } else {
        e.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (const c of children) {
      if (c === undefined || c === null) {
        continue;
      }
      e.append(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }

  function say(msg, isError) {
    status.textContent = msg;
    status.classList.toggle("error", Boolean(isError));
  }

  function time(t) {
    if (!t) {
      return el("span", { text: "—" });
    }
    const d = new Date(t);
    return el("time", { datetime: t, text: isNaN(d) ? t : d.toLocaleString() });
  }

  async function getJSON(url) {
    const resp = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    const body = await resp.json();
    if (!resp.ok || body.status !== "success") {
      throw new Error(url + ": " + (body.error || resp.statusText));
    }
    return body.data;
  }

  async function post(url, body) {
    const resp = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!resp.ok) {
      throw new Error((await resp.text()).trim() || resp.statusText);
    }
  }

  // incidentState is what the page shows of an incident's state, worst
  // first: open, snoozed, acknowledged, resolved, closed.
  function incidentState(inc) {
    const esc = inc.escalation || {};
    if (inc.state === "closed") {
      return "closed";
    }
    if (esc.status === "resolved") {
      return "resolved";
    }
    if (inc.acknowledged || esc.status === "acknowledged") {
      return "acknowledged";
    }
    if (esc.status === "snoozed") {
      return "snoozed";
    }
    return "open";
  }

  function stateDetail(inc, state) {
    const esc = inc.escalation || {};
    switch (state) {
      case "acknowledged": {
        const who = esc.acknowledgedBy || inc.acknowledgedBy;
        const at = esc.acknowledgedAt || inc.acknowledgedAt;
        const parts = [];
        if (who) {
          parts.push("by " + who);
        }
        if (at) {
          parts.push("at " + new Date(at).toLocaleString());
        }
        if (esc.acknowledgedUntil) {
          parts.push("until " + new Date(esc.acknowledgedUntil).toLocaleString());
        }
        return parts.join(" ");
      }
      case "snoozed":
        return esc.snoozedUntil ? "until " + new Date(esc.snoozedUntil).toLocaleString() : "";
      case "resolved":
        return esc.resolvedBy ? "by " + esc.resolvedBy : "";
      case "closed":
        return inc.closedAt ? "at " + new Date(inc.closedAt).toLocaleString() : "";
    }
    return "";
  }

  function escalationText(esc) {
    if (!esc) {
      return "none";
    }
    if (!esc.policy) {
      return "no policy matches";
    }
    let s = "policy " + esc.policy + ", level " + esc.level;
    if (esc.notified && esc.notified.length) {
      s += ", notified " + esc.notified.join(", ");
    }
    if (esc.nextStepAt) {
      s += "; next step " + new Date(esc.nextStepAt).toLocaleString();
    }
    return s;
  }

  function labelText(ls) {
    return Object.keys(ls || {})
      .filter((k) => k !== "alertname")
      .sort()
      .map((k) => k + '="' + ls[k] + '"')
      .join(", ");
  }

  // explanation is why the alert pages: its summary or description, and
  // the classifier's reasoning from its history.
  function explanation(al) {
    const ann = al.annotations || {};
    const out = el("div");
    const text = ann.summary || ann.description;
    if (text) {
      out.append(el("p", { text: text }));
    }
    const cls = (al.history || []).filter((d) => d.stage === "classify" && d.reason).pop();
    if (cls) {
      out.append(el("p", { class: "why", text: cls.reason }));
    } else if (ann.false_positive_probability) {
      out.append(el("p", { text: "false positive p=" + ann.false_positive_probability }));
    }
    return out;
  }

  function history(al) {
    const h = al.history || [];
    const ol = el("ol");
    for (const d of h) {
      ol.append(el("li", null, time(d.time), " ", el("strong", { text: d.stage + "/" + d.action }), d.reason ? ": " + d.reason : ""));
    }
    return el("details", { "data-key": "history-" + al.fingerprint },
      el("summary", { text: h.length + (h.length === 1 ? " decision" : " decisions") }), ol);
  }

  // act posts an action and refreshes the page; focus returns to the
  // button that was pressed once the page is redrawn.
  async function act(button, url, body, done) {
    const id = button.id;
    button.disabled = true;
    say("Working…");
    try {
      await post(url, body);
      if (await refresh()) {
        say(done);
      }
    } catch (err) {
      say(err.message, true);
      button.disabled = false;
      return;
    }
    const again = document.getElementById(id);
    if (again) {
      again.focus();
    }
  }

  function who() {
    const v = by.value.trim();
    return v ? { by: v } : {};
  }

  function incidentActions(inc, state) {
    const div = el("div", { class: "actions" });
    if (inc.state === "closed" || state === "resolved") {
      return div;
    }
    const enc = encodeURIComponent(inc.id);
    div.append(
      el("button", {
        type: "button", class: "primary", id: "ack-" + inc.id,
        "aria-label": "Acknowledge incident " + inc.id,
        disabled: state === "acknowledged",
        text: "Acknowledge",
        onclick: (ev) => act(ev.currentTarget, "api/v1/incidents/" + enc + "/acknowledge", who(), "Incident " + inc.id + " acknowledged."),
      }),
      el("button", {
        type: "button", id: "resolve-" + inc.id,
        "aria-label": "Resolve incident " + inc.id,
        text: "Resolve",
        onclick: (ev) => act(ev.currentTarget, "api/v1/incidents/" + enc + "/resolve", who(), "Incident " + inc.id + " resolved."),
      }),
    );
    return div;
  }

  function feedbackButtons(inc, al) {
    const name = (al.labels && al.labels.alertname) || al.fingerprint;
    const given = new Set((al.history || []).filter((d) => d.stage === "feedback").map((d) => d.action));
    const group = el("div", { class: "feedback", role: "group", "aria-label": "Feedback on " + name });
    for (const v of VERDICTS) {
      group.append(el("button", {
        type: "button", id: "fb-" + inc.id + "-" + al.fingerprint + "-" + v.verdict,
        "aria-label": v.text + ": feedback on alert " + name,
        "aria-pressed": given.has(v.verdict) ? "true" : "false",
        text: v.text,
        onclick: (ev) => act(ev.currentTarget, "api/v1/alerts/" + encodeURIComponent(al.fingerprint) + "/feedback",
          Object.assign({ verdict: v.verdict }, who()), "Feedback on " + name + " recorded: " + v.text.toLowerCase() + "."),
      }));
    }
    return group;
  }

  function alertRow(inc, fp, alerts) {
    const al = alerts.get(fp);
    if (!al) {
      return el("tr", null, el("th", { scope: "row", class: "labels", text: fp }),
        el("td", { colspan: 6, text: "no longer held by alertd" }));
    }
    const ann = al.annotations || {};
    const firing = (inc.firing || []).includes(fp);
    return el("tr", { "data-fingerprint": fp },
      el("th", { scope: "row" }, (al.labels && al.labels.alertname) || fp, el("span", { class: "labels", text: labelText(al.labels) })),
      el("td", { text: al.state + (firing ? "" : " (resolved in incident)") }),
      el("td", { class: ann.priority ? "priority-" + ann.priority : null, text: ann.priority || "—" }),
      el("td", { text: ann.category || "—" }),
      el("td", null, explanation(al)),
      el("td", null, history(al)),
      el("td", null, feedbackButtons(inc, al)),
    );
  }

  function incidentTitle(inc) {
    const gl = inc.groupLabels || {};
    const keys = Object.keys(gl).sort();
    if (keys.length === 0) {
      return "Incident";
    }
    return keys.map((k) => (k === "alertname" ? gl[k] : k + "=" + gl[k])).join(", ");
  }

  function incidentView(inc, alerts) {
    const state = incidentState(inc);
    const titleID = "incident-" + inc.id + "-title";
    const tbody = el("tbody");
    for (const fp of inc.alerts || []) {
      tbody.append(alertRow(inc, fp, alerts));
    }
    const detail = stateDetail(inc, state);
    return el("article", { class: "incident", "data-incident": inc.id, "data-state": state, "aria-labelledby": titleID },
      el("h2", { id: titleID }, incidentTitle(inc), " ", el("span", { class: "id", text: "incident " + inc.id })),
      el("dl", { class: "facts" },
        el("dt", { text: "State" }),
        el("dd", null, el("span", { class: "state", "data-field": "state", text: state }), detail ? " " + detail : ""),
        el("dt", { text: "Opened" }), el("dd", null, time(inc.openedAt)),
        el("dt", { text: "Receiver" }), el("dd", { text: inc.receiver || "—" }),
        // Only routes whose matchers another route repeats carry their id.
        ...(inc.route ? [el("dt", { text: "Route" }), el("dd", { class: "route", text: inc.route })] : []),
        el("dt", { text: "Escalation" }), el("dd", { text: escalationText(inc.escalation) }),
        el("dt", { text: "Pages" }), el("dd", { text: String(inc.pages || 0) }),
      ),
      incidentActions(inc, state),
      el("table", null,
        el("caption", { text: "Alerts of incident " + inc.id }),
        el("colgroup", null, ...COLUMNS.map((h) => el("col", { class: h.toLowerCase() }))),
        el("thead", null, el("tr", null, ...COLUMNS.map((h) => el("th", { scope: "col", text: h })))),
        tbody),
    );
  }

  function refresh() {
    chain = chain.then(load, load);
    return chain;
  }

  // load draws the incidents and reports whether it could.
  async function load() {
    list.setAttribute("aria-busy", "true");
    try {
      const [incData, alertData] = await Promise.all([getJSON("api/v1/incidents"), getJSON("api/v1/alerts")]);
      const alerts = new Map((alertData.alerts || []).map((a) => [a.fingerprint, a]));
      // Keep open what the operator opened.
      const open = new Set([...list.querySelectorAll("details[open]")].map((d) => d.dataset.key));
      const incidents = (incData.incidents || []).filter((i) => showClosed.checked || i.state !== "closed");
      const views = incidents.map((inc) => incidentView(inc, alerts));
      if (views.length === 0) {
        views.push(el("p", { text: "No incidents." }));
      }
      list.replaceChildren(...views);
      for (const d of list.querySelectorAll("details")) {
        d.open = open.has(d.dataset.key);
      }
      say("Updated " + new Date().toLocaleTimeString() + ": " + incidents.length + (incidents.length === 1 ? " incident." : " incidents."));
      return true;
    } catch (err) {
      say("Couldn't load the incidents: " + err.message, true);
      return false;
    } finally {
      list.setAttribute("aria-busy", "false");
    }
  }

  document.getElementById("refresh").addEventListener("click", refresh);
  showClosed.addEventListener("change", refresh);
  try {
    by.value = localStorage.getItem("alertd.by") || "";
    by.addEventListener("change", () => localStorage.setItem("alertd.by", by.value.trim()));
  } catch (err) {
    // No storage (private mode, file policy): the name is not remembered.
  }
  setInterval(() => {
    if (!document.hidden) {
      refresh();
    }
  }, REFRESH_MS);
  refresh();
})();
