// The operator console's script (router.admin.console). Plain ES2020, no
// build step, nothing loaded from elsewhere.
//
// The token: `sor ctl console` puts it in the URL's fragment, which a
// browser never sends to a server. It is moved to sessionStorage (this tab
// only, gone when the tab closes) and wiped from the address bar and the
// history entry; every call sends it as `Authorization: Bearer`, as
// `sor ctl` does. A refused call stops the polling (each refusal is counted
// and logged by the router) until a token is given again.
//
// Everything the API says is put in the page as text (textContent), never
// as markup: symbols, ClOrdIDs and reasons come from outside.
"use strict";

(() => {
  const TOKEN_KEY = "sor-console-token";
  const POLL_MS = 1000;
  const WHO = "console";

  let token = null;
  let state = null;
  let selected = null; // order_id of the decision shown in "Why"
  let timer = null;
  let polling = false; // a request is out: a second poll() waits for it
  let pollAgain = false;

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------- helpers

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k.startsWith("data-")) e.setAttribute(k, String(v)); // "true" / "false" kept as words
      else if (v === false) continue;
      else if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const sameAttrs = (a, b) => a.attributes.length === b.attributes.length
    && Array.from(a.attributes).every((x) => b.getAttribute(x.name) === x.value);

  /** Put ``children`` in ``node``, keeping every node that did not change
   *  since the last poll: a button under the pointer must survive the
   *  once-a-second redraw, or a click that straddles it is lost. A row whose
   *  own attributes are the same (so its listener means the same) keeps
   *  itself and its unchanged cells; anything else is replaced whole, so an
   *  element kept never carries a stale listener. */
  function fill(node, ...children) {
    const fresh = children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
      .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
    const old = Array.from(node.childNodes);
    fresh.forEach((n, i) => {
      const o = old[i];
      if (o === undefined) node.append(n);
      else if (o.isEqualNode(n)) return;
      else if (o.nodeName === "TR" && n.nodeName === "TR" && sameAttrs(o, n) && o.cells.length === n.cells.length) {
        Array.from(n.cells).forEach((c, j) => { if (!o.cells[j].isEqualNode(c)) o.replaceChild(c, o.cells[j]); });
      } else node.replaceChild(n, o);
    });
    for (let i = old.length - 1; i >= fresh.length; i--) old[i].remove();
  }

  const dash = "—";
  const num = (x, digits = 2) => (x === null || x === undefined ? dash : Number(x).toFixed(digits));
  const pct = (x, digits = 1) => (x === null || x === undefined ? dash : (100 * x).toFixed(digits) + "%");
  const int = (x) => (x === null || x === undefined ? dash : Number(x).toLocaleString("en-US"));

  /** Wall-clock time of an engine timestamp (the loop's clock, ns). */
  function wall(tsNs) {
    if (!state) return dash;
    const ms = state.unix_ms - (state.now_ns - tsNs) / 1e6;
    return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
  }

  function age(tsNs) {
    if (!state) return dash;
    const s = Math.max(0, (state.now_ns - tsNs) / 1e9);
    if (s < 60) return s.toFixed(1) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} m ${Math.floor(s % 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} m`;
  }

  function signed(x, digits = 2) {
    if (x === null || x === undefined) return el("span", { class: "muted", text: dash });
    const cls = x < -0.005 ? "neg" : x > 0.005 ? "pos" : "";
    return el("span", { class: cls, text: (x > 0 ? "+" : "") + Number(x).toFixed(digits) });
  }

  function dot(up, label) {
    return el("span", { class: "dot " + (up ? "up" : "down"), title: label || (up ? "up" : "down") });
  }

  function bar(frac) {
    const b = el("span", { class: "bar" }, el("span", { class: "bar-fill" }));
    b.firstChild.style.width = `${Math.max(0, Math.min(1, frac || 0)) * 100}%`;
    return b;
  }

  function stateBadge(s) {
    const cls = { NEW: "b-new", PARTIALLY_FILLED: "b-part", FILLED: "b-fill", PENDING_NEW: "b-pend",
      PENDING_CANCEL: "b-pend", CANCELED: "b-done", REJECTED: "b-rej", EXPIRED: "b-done" }[s] || "";
    return el("span", { class: "badge " + cls, text: (s || dash).replace("_", " ").toLowerCase() });
  }

  let toastTimer = null;
  function toast(text, ok) {
    const t = $("toast");
    t.textContent = text;
    t.dataset.ok = ok ? "true" : "false";
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 7000);
  }

  // ------------------------------------------------------------ the API

  class Refused extends Error {}

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + token, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, {
      method, headers, cache: "no-store", credentials: "omit", redirect: "error",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let out = {};
    try { out = await r.json(); } catch (e) { out = { ok: false, error: `HTTP ${r.status}` }; }
    if (r.status === 401) {
      refused();
      throw new Refused("the router refused the token");
    }
    return { status: r.status, out };
  }

  function setConn(ok, text) {
    const c = $("conn");
    c.dataset.ok = ok ? "true" : "false";
    c.textContent = text;
  }

  async function poll() {
    if (polling) { pollAgain = true; return; }
    clearTimeout(timer);
    if (!token) return;
    polling = true;
    try {
      const { status, out } = await api("GET", "/console/state");
      if (status === 200) {
        state = out;
        render();
        setConn(true, "live · " + new Date(out.unix_ms).toLocaleTimeString("en-GB", { hour12: false }));
      } else {
        setConn(false, out.error || `HTTP ${status}`);
      }
    } catch (e) {
      if (e instanceof Refused) { polling = false; pollAgain = false; return; }
      setConn(false, "router unreachable");
    }
    polling = false;
    if (pollAgain) {
      pollAgain = false;
      poll();
    } else {
      timer = setTimeout(poll, POLL_MS);
    }
  }

  function refused() {
    clearTimeout(timer);
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    setConn(false, "token refused");
    askToken("The router refused that token. Paste the admin token again.");
  }

  function askToken(text) {
    if (text) $("login-text").textContent = text;
    const d = $("login");
    if (!d.open) d.showModal();
    $("login-token").value = "";
    $("login-token").focus();
  }

  function takeToken() {
    const frag = new URLSearchParams(location.hash.slice(1));
    const t = frag.get("token");
    if (t) {
      sessionStorage.setItem(TOKEN_KEY, t);
      // Out of the address bar and of this history entry.
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  // ---------------------------------------------------- confirm and act

  /** An in-page confirmation; resolves to the fields' values, or null. */
  function confirmAction({ title, text, ok = "Confirm", danger = true, fields = [] }) {
    const d = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    const inputs = {};
    // Fresh inputs every time (never ``fill``: an old, equal-looking input
    // would be kept while its value is the last dialog's).
    $("confirm-fields").replaceChildren(...fields.map((f) => {
      let input;
      if (f.type === "select") {
        input = el("select", { name: f.name }, f.options.map(([v, label]) => el("option", { value: v, text: label })));
      } else if (f.type === "checkbox") {
        input = el("input", { type: "checkbox", name: f.name });
        input.checked = !!f.value;
        inputs[f.name] = input;
        return el("label", { class: "check" }, input, f.label);
      } else {
        input = el("input", { type: "text", name: f.name, placeholder: f.placeholder || "", maxlength: f.max || 200,
          autocomplete: "off", list: f.list || null });
        input.value = f.value || "";
      }
      inputs[f.name] = input;
      return el("label", {}, el("span", { text: f.label }), input);
    }));
    const okBtn = $("confirm-ok");
    okBtn.textContent = ok;
    okBtn.className = "btn " + (danger ? "danger" : "ok");
    return new Promise((resolve) => {
      const done = (v) => {
        okBtn.removeEventListener("click", onOk);
        $("confirm-cancel").removeEventListener("click", onCancel);
        d.removeEventListener("close", onClose);
        if (d.open) d.close();
        resolve(v);
      };
      const onOk = () => {
        const values = {};
        for (const [k, i] of Object.entries(inputs)) values[k] = i.type === "checkbox" ? i.checked : i.value.trim();
        done(values);
      };
      const onCancel = () => done(null);
      const onClose = () => done(null);
      okBtn.addEventListener("click", onOk);
      $("confirm-cancel").addEventListener("click", onCancel);
      d.addEventListener("close", onClose);
      d.showModal();
      (fields.length && fields[0].type !== "select" ? inputs[fields[0].name] : $("confirm-cancel")).focus();
    });
  }

  async function act(method, path, body) {
    try {
      const { status, out } = await api(method, path, { ...body, who: WHO });
      toast(out.text || out.error || `HTTP ${status}`, status === 200);
    } catch (e) {
      if (!(e instanceof Refused)) toast("the router did not answer: " + e.message, false);
    }
    poll();
  }

  async function killAll() {
    const v = await confirmAction({
      title: "Kill all routing?",
      text: "Every working parent is canceled (its children pulled from the venues) and new parents are "
        + "refused until the kill switch is released.",
      ok: "Kill all", fields: [{ name: "reason", label: "Reason (sent to the OMS)", placeholder: "why" }],
    });
    if (v) act("POST", "/kill", { reason: v.reason, wait_ms: 2000 });
  }

  async function killScope() {
    const v = await confirmAction({
      title: "Kill switch for one scope",
      text: "Cancels what works in the scope and refuses new orders there until released.",
      ok: "Kill scope",
      fields: [
        { name: "kind", label: "Scope", type: "select",
          options: [["symbol", "symbol"], ["session", "OMS session"], ["venue", "venue"]] },
        { name: "name", label: "Name", placeholder: "symbol, session key or venue", list: "scope-names" },
        { name: "reason", label: "Reason", placeholder: "why" },
      ],
    });
    if (!v) return;
    if (!v.name) { toast("a scope needs a name", false); return; }
    act("POST", "/kill", { [v.kind]: v.name, reason: v.reason, wait_ms: 2000 });
  }

  async function resume(kind, scope, name) {
    const v = await confirmAction({
      title: `Resume ${name}?`,
      text: `Lifts the kill switch (${name}): new orders in that scope route again.`,
      ok: "Resume", danger: false,
    });
    if (v) act("POST", "/resume", kind === "all" ? {} : { [kind]: scope });
  }

  async function venueToggle(venue, enable) {
    const v = await confirmAction(enable ? {
      title: `Enable ${venue}?`, text: `${venue} is routed to again.`, ok: "Enable", danger: false,
    } : {
      title: `Disable ${venue}?`, text: `No new child goes to ${venue} until it is enabled again.`, ok: "Disable",
      fields: [{ name: "cancel_working", type: "checkbox", label: "also cancel its working children (they move on)" },
        { name: "reason", label: "Reason", placeholder: "why" }],
    });
    if (!v) return;
    act("POST", `/venues/${encodeURIComponent(venue)}/${enable ? "enable" : "disable"}`,
      enable ? {} : { cancel_working: v.cancel_working, reason: v.reason });
  }

  // ------------------------------------------------------------- render

  function render() {
    const s = state;
    renderTop(s);
    renderSessions(s);
    renderHalts(s);
    renderModel(s);
    renderOrders(s);
    renderVenues(s);
    renderDecisions(s);
    renderWhy(s);
    renderParents(s);
    renderLimits(s);
    renderActions(s);
    renderScopeNames(s);
    for (const id of ["kill-all", "kill-scope", "resume-all"]) $(id).disabled = false;
  }

  function renderTop(s) {
    const r = s.router || {};
    $("router").textContent = `${r.name || "?"} · ${r.driver || "?"} driver · planner ${r.planner || "?"}`;
    const kills = s.halts.kill_switches;
    const all = kills.find((k) => k.name === "all");
    const t = $("trading");
    let st, text;
    if (s.halts.trading_halted) { st = "halted"; text = "HALTED"; }
    else if (all) { st = "killed"; text = "KILLED"; }
    else if (s.halts.overloaded) { st = "partial"; text = "OVERLOADED"; }
    else if (kills.length) { st = "partial"; text = `ROUTING · ${kills.length} kill${kills.length > 1 ? "s" : ""}`; }
    else { st = "routing"; text = "ROUTING"; }
    t.dataset.state = st;
    t.textContent = text;
    const b = $("banner");
    if (all || s.halts.trading_halted) {
      const why = all ? `Kill switch (all) by ${all.who}${all.reason ? ": " + all.reason : ""} since ${wall(all.since_ns)}`
        : `Trading halted: ${s.halts.trading_halted}`;
      fill(b, el("strong", { text: why }), " · new parents are refused");
      b.hidden = false;
    } else {
      b.hidden = true;
    }
  }

  function renderSessions(s) {
    const oms = Object.entries(s.sessions.oms);
    const venues = Object.entries(s.sessions.venues);
    fill($("sessions"),
      el("div", { class: "sess-group" }, el("h3", { text: "OMS" }),
        oms.length ? oms.map(([k, up]) => el("div", { class: "sess", "data-oms": k, "data-up": up },
          dot(up), el("span", { class: "mono", text: k }), el("span", { class: up ? "up-t" : "down-t", text: up ? "up" : "down" })))
          : el("div", { class: "muted", text: "no session yet" })),
      el("div", { class: "sess-group" }, el("h3", { text: "Venues" }),
        venues.map(([v, up]) => el("div", { class: "sess", "data-venue": v, "data-up": up },
          dot(up), el("span", { class: "mono", text: v }), el("span", { class: up ? "up-t" : "down-t", text: up ? "up" : "down" })))));
  }

  function renderHalts(s) {
    const items = [];
    for (const k of s.halts.kill_switches) {
      items.push(el("div", { class: "halt kill", "data-kill": k.name },
        el("div", {}, el("strong", { text: `Kill · ${k.name}` }),
          el("div", { class: "muted small", text: `by ${k.who} at ${wall(k.since_ns)}${k.reason ? " · " + k.reason : ""}` })),
        el("button", { class: "btn ok small", type: "button", "data-resume": k.name,
          onclick: () => resume(k.scope_kind, k.scope, k.name), text: "Resume" })));
    }
    if (s.halts.trading_halted) {
      items.push(el("div", { class: "halt kill" }, el("strong", { text: "Trading halted" }),
        el("div", { class: "muted small", text: s.halts.trading_halted })));
    }
    if (s.halts.overloaded) {
      // The back-pressure gate: it clears by itself once the router catches up.
      items.push(el("div", { class: "halt off", "data-overloaded": "1" },
        el("strong", { text: "Router overloaded: new parents refused" }),
        el("div", { class: "muted small", text: s.halts.overloaded })));
    }
    for (const d of s.venues.disabled) {
      items.push(el("div", { class: "halt off" },
        el("div", {}, el("strong", { text: `Venue ${d.venue} disabled` }),
          el("div", { class: "muted small", text: `by ${d.who} at ${wall(d.since_ns)}${d.reason ? " · " + d.reason : ""}` }))));
    }
    const stopped = (s.risk && s.risk.stopped_symbols) || [];
    if (stopped.length) {
      items.push(el("div", { class: "halt off" }, el("strong", { text: "Stopped by the execution throttle" }),
        el("div", { class: "muted small", text: stopped.join(", ") })));
    }
    fill($("halts"), items.length ? items : el("div", { class: "calm" }, dot(true), "nothing in force: routing normally"));
  }

  function renderModel(s) {
    const m = s.model || {};
    const kv = (k, v, attrs) => [el("dt", { text: k }), el("dd", attrs || {}, v)];
    fill($("model"),
      kv("version", m.version || dash, { id: "model-version", class: "mono" }),
      kv("status", el("span", { class: "badge " + (m.status === "ok" ? "b-fill" : "b-pend"),
        text: m.status === "ok" ? "serving" : m.status || dash })),
      kv("planner", m.planner || dash),
      kv("routable", (s.venues.routable || []).join(", ") || "no venue"));
  }

  function renderOrders(s) {
    const o = s.orders;
    fill($("orders"),
      el("div", { class: "big" }, el("span", { class: "bignum", id: "open-parents", text: int(o.open_parents) }),
        el("span", { class: "muted", text: " open parents" })),
      el("div", { class: "big" }, el("span", { class: "bignum", text: int(o.open_children) }),
        el("span", { class: "muted", text: " open children" })),
      el("div", { class: "muted small" }, Object.entries(o.open_children_by_venue).map(([v, n]) => `${v} ${n}`).join(" · ")));
  }

  function renderVenues(s) {
    const vs = s.venue_stats;
    const byVenue = {};
    if (vs) for (const r of vs.venues) byVenue[r.venue] = r;
    const buckets = vs ? vs.buckets : [];
    $("bucket-head").textContent = buckets.length ? `By size (${buckets.join(" / ")})` : "By size";
    $("venues-hint").textContent = vs ? `fill rate, time to fill and markouts: the router's own children, decayed `
      + `(half-life ${Math.round(vs.half_life_s)} s); a markout below 0 is adverse` : "no venue statistics in this router";
    const disabled = new Set(s.venues.disabled.map((d) => d.venue));
    const killed = new Set(s.halts.kill_switches.filter((k) => k.scope_kind === "venue").map((k) => k.scope));
    const rows = Object.entries(s.sessions.venues).map(([v, up]) => {
      const r = byVenue[v];
      const off = disabled.has(v);
      let routing;
      if (off) routing = el("span", { class: "badge b-rej", text: "disabled" });
      else if (killed.has(v)) routing = el("span", { class: "badge b-rej", text: "killed" });
      else if (!up) routing = el("span", { class: "badge b-pend", text: "session down" });
      else routing = el("span", { class: "badge b-fill", text: "enabled" });
      return el("tr", { "data-venue": v, "data-enabled": !off },
        el("td", { class: "mono strong", text: v }),
        el("td", { text: (s.venue_kinds || {})[v] || dash }),
        el("td", {}, dot(up), up ? " up" : " down"),
        el("td", {}, routing),
        el("td", { class: "n", text: int(s.orders.open_children_by_venue[v] || 0) }),
        el("td", { class: "fillcell" }, r ? [bar(r.fill_rate), el("span", { class: "n", text: pct(r.fill_rate) })] : dash),
        el("td", { class: "n small" }, r ? r.by_size.map((b) => pct(b.fill_rate, 0)).join(" / ") : dash),
        el("td", { class: "n", text: r ? num(r.time_to_fill_ms, 1) + " ms" : dash }),
        el("td", { class: "n", text: r ? pct(r.partial_freq) : dash }),
        el("td", { class: "n" }, r ? markout(r, "1s") : dash),
        el("td", { class: "n" }, r ? markout(r, "5s") : dash),
        el("td", { class: "n", text: r ? num(r.children, 1) : dash }),
        el("td", { class: "act" }, el("button", {
          class: "btn small " + (off ? "ok" : "ghost-danger"), type: "button", "data-toggle": v,
          onclick: () => venueToggle(v, off), text: off ? "Enable" : "Disable" })));
    });
    fill($("venues").tBodies[0], rows);
  }

  function markout(r, h) {
    return [signed(r.markout_bps[h]), el("span", { class: "muted small", text: ` bps · n ${num(r.markouts[h], 0)}` })];
  }

  function parentText(p) {
    if (!p) return dash;
    return `${p.symbol} ${p.side.toLowerCase()} ${int(p.qty)}${p.price ? " @ " + p.price : " mkt"}`;
  }

  function renderDecisions(s) {
    const ds = s.decisions || [];
    if (!ds.some((d) => d.order_id === selected)) selected = ds.length ? ds[0].order_id : null;
    fill($("decisions").tBodies[0], ds.length ? ds.map((d) => el("tr", {
      "data-order": d.order_id, class: d.order_id === selected ? "sel" : null,
      onclick: () => { selected = d.order_id; renderDecisions(state); renderWhy(state); },
    },
    el("td", { class: "mono small", text: wall(d.ts_ns) }),
    el("td", { class: "mono", text: d.order_id }),
    el("td", { text: parentText(d.parent) }),
    el("td", {}, el("span", { class: "badge b-new", text: d.strategy || "none" })),
    el("td", { class: "mono small" }, d.ranking.length ? d.ranking.join(" › ") : dash),
    el("td", { class: "mono small" }, d.fallback ? el("span", { class: "badge b-rej", text: "fallback: " + d.fallback })
      : d.model_version || dash))) : el("tr", {}, el("td", { colspan: 6, class: "muted", text: "no decision yet" })));
  }

  const MARKET_SHOWN = [
    ["spread_bps", "spread", "bps"], ["microprice_offset_bps", "microprice", "bps"], ["imbalance_l1", "imbalance L1", ""],
    ["imbalance_l5", "imbalance L5", ""], ["realized_vol_5s_bps", "vol 5 s", "bps"], ["atr_5s_bps", "ATR 5 s", "bps"],
    ["trade_flow_5s", "trade flow 5 s", ""], ["nbbo_stale_ms", "NBBO age", "ms"], ["size_over_top3", "size / top 3", ""],
    ["size_over_adv", "size / ADV", ""], ["limit_distance_bps", "limit distance", "bps"], ["is_ioc", "IOC", ""],
  ];

  function renderWhy(s) {
    const d = (s.decisions || []).find((x) => x.order_id === selected);
    if (!d) { $("why-title").textContent = ""; fill($("why"), el("p", { class: "muted", text: "No decision yet." })); return; }
    const p = d.parent;
    $("why-title").textContent = `${d.order_id}${p ? " · " + p.cl_ord_id + " · " + parentText(p) : ""}`;
    const scored = d.venues.some((v) => v.scores);
    // Two header rows: what the model said of each venue, and the venue's
    // own inputs it was given (the rest of its columns in the row's tooltip).
    const th = (text, attrs) => el("th", { class: "n", text, ...(attrs || {}) });
    const head = [
      el("tr", { class: "group" }, el("th", { colspan: 3 }),
        scored && el("th", { colspan: 3, class: "c", text: "model" }), el("th", { colspan: 5, class: "c", text: "venue inputs" })),
      el("tr", {}, th("Rank"), el("th", { text: "Venue" }), th("Exp. cost", { title: "expected cost per share, bps: the ranking" }),
        scored && th("Cost", { title: "predicted cost, bps" }), scored && th("Fill p", { title: "predicted fill probability" }),
        scored && th("Markout", { title: "predicted markout, bps" }),
        th("Fill rate"), th("MO 5 s", { title: "venue markout 5 s, bps" }), th("Fee"), th("Touch"),
        th("Share", { title: "share of the touch size" })),
    ];
    const body = d.venues.map((v) => {
      const f = v.features || {};
      const sc = v.scores || {};
      const tip = Object.entries(f).map(([k, x]) => `${k} ${x}`).join("\n");
      return el("tr", { class: v.rank === 1 ? "best" : v.rank ? null : "out", "data-why-venue": v.venue, title: tip || null },
        el("td", { class: "n strong", text: v.rank ? "#" + v.rank : "out" }),
        el("td", { class: "mono" }, v.venue, el("span", { class: "muted small", text: " " + v.kind })),
        el("td", { class: "n strong", text: num(v.cost_bps, 2) }),
        scored && el("td", { class: "n", text: num(sc.cost_bps, 2) }),
        scored && el("td", { class: "n", text: pct(sc.fill_prob) }),
        scored && el("td", { class: "n" }, signed(sc.markout_bps)),
        el("td", { class: "n", text: pct(f.venue_fill_rate) }),
        el("td", { class: "n" }, f.venue_markout_5s_bps === undefined ? dash : signed(f.venue_markout_5s_bps)),
        el("td", { class: "n", text: num(f.venue_fee_bps, 2) }),
        el("td", { class: "n", text: int(f.venue_touch_size) }),
        el("td", { class: "n", text: pct(f.venue_touch_share, 0) }));
    });
    const notes = [];
    if (!d.ranking.length) notes.push("Not ranked: " + (d.fallback ? `the model was not used (${d.fallback}); ` : "")
      + `the ${d.plan.name} plan decided.`);
    else notes.push(`Ranked by expected cost per share, cheapest first; "out": not routable when it arrived.`);
    const waves = d.plan.waves.map((w, i) => {
      // A wave's weights are relative: shown as its shares.
      const total = w.reduce((t, sl) => t + (sl.weight || 0), 0) || 1;
      return el("div", { class: "wave" }, el("span", { class: "muted", text: `wave ${i + 1}` }),
        w.map((sl) => el("span", { class: "slice mono" },
          `${sl.venue} ${sl.tif.toLowerCase()} ${sl.limit === null ? "mkt" : sl.limit}`
          + (w.length > 1 ? ` ${Math.round((100 * (sl.weight || 0)) / total)}%` : "")
          + (sl.timeout_ms ? ` ${sl.timeout_ms} ms` : ""))));
    });
    const market = d.market ? el("div", { class: "features" }, MARKET_SHOWN.filter(([k]) => k in d.market).map(([k, label, unit]) =>
      el("div", { class: "feat" }, el("span", { class: "muted", text: label }),
        el("span", { class: "mono", text: num(d.market[k], unit === "" ? 3 : 2) + (unit ? " " + unit : "") })))) : null;
    const stages = Object.entries(d.stages_us || {}).map(([k, us]) => `${k} ${num(us, 1)} µs`).join(" · ");
    fill($("why"),
      el("div", { class: "why-head" },
        el("span", {}, "strategy ", el("strong", { text: d.strategy || "none" })),
        el("span", {}, "model ", el("strong", { class: "mono", text: d.model_version || dash })),
        el("span", {}, "fallback ", el("strong", { text: d.fallback || "none" })),
        el("span", {}, "propensity ", el("strong", { text: num(d.propensity, 2) })),
        p && el("span", {}, "parent ", stateBadge(p.state), ` ${int(p.cum_qty)}/${int(p.qty)} filled`)),
      d.venues.length > 0 && el("div", { class: "scroll" },
        el("table", { class: "grid why compact" }, el("thead", {}, head), el("tbody", {}, body))),
      el("p", { class: "muted small", text: notes.join(" ") }),
      el("div", { class: "plan" }, el("span", { class: "muted", text: `plan ${d.plan.name} (then ${d.plan.final})` }), waves),
      market && el("h3", { text: "Market and order at arrival" }), market,
      stages && el("p", { class: "muted small", text: "decision time: " + stages }));
  }

  function renderParents(s) {
    const ps = s.parents || [];
    // What was built for the parent (its decision), else what the OMS asked for.
    const decided = {};
    for (const d of s.decisions || []) decided[d.order_id] = d.strategy;
    $("parents-count").textContent = ps.length < s.orders.open_parents
      ? `newest ${ps.length} of ${int(s.orders.open_parents)}` : `${ps.length}`;
    const rows = [];
    for (const p of ps) {
      rows.push(el("tr", { class: "parent", "data-parent": p.order_id },
        el("td", { class: "mono strong", text: p.order_id }), el("td", { class: "mono", text: p.cl_ord_id }),
        el("td", { class: "mono small", text: p.session }), el("td", { class: "strong", text: p.symbol }),
        el("td", { class: p.side === "BUY" ? "pos" : "neg", text: p.side.toLowerCase() }),
        el("td", { class: "n", text: int(p.qty) }), el("td", { class: "n", text: int(p.cum_qty) }),
        el("td", { class: "n", text: int(p.leaves_qty) }), el("td", { class: "n mono", text: p.price || "mkt" }),
        el("td", { class: "n mono", text: p.avg_px || dash }), el("td", { text: p.tif.toLowerCase() }),
        el("td", {}, stateBadge(p.state)), el("td", { text: decided[p.order_id] || p.strategy || dash }),
        el("td", { class: "n", text: age(p.arrival_ns) })));
      for (const c of p.children) {
        rows.push(el("tr", { class: "child" + (c.open ? "" : " done"), "data-child": c.child_id },
          el("td", { class: "mono" }, el("span", { class: "muted", text: "↳ " }), c.child_id),
          el("td", { class: "mono", text: c.venue }), el("td", {}), el("td", {}), el("td", {}),
          el("td", { class: "n", text: int(c.qty) }), el("td", { class: "n", text: int(c.cum_qty) }),
          el("td", { class: "n", text: c.open ? int(c.qty - c.cum_qty) : "0" }),
          el("td", { class: "n mono", text: c.price || "mkt" }), el("td", { class: "n mono", text: c.avg_px || dash }),
          el("td", { text: c.tif.toLowerCase() }), el("td", {}, stateBadge(c.state)), el("td", {}),
          el("td", { class: "n", text: age(c.sent_ns) })));
      }
      if (p.children_total > p.children.length) {
        rows.push(el("tr", { class: "child done" }, el("td", { colspan: 14, class: "muted small",
          text: `  … ${p.children_total - p.children.length} older children` })));
      }
    }
    fill($("parents").tBodies[0], rows.length ? rows : el("tr", {}, el("td", { colspan: 14, class: "muted", text: "no open parent" })));
  }

  function renderLimits(s) {
    const L = s.limits;
    if (!L) { fill($("limits"), el("p", { class: "muted", text: "no pre-trade controls in this router" })); return; }
    const lim = L.limits || {};
    const show = [["enabled", "controls on", (v) => (v ? "yes" : "NO")], ["collar_bps", "price collar", (v) => `${v} bps`],
      ["max_order_qty", "max order qty", int], ["max_order_notional", "max order notional", int],
      ["credit_limit", "credit per session", int], ["max_msgs_per_s", "messages / s per session", int],
      ["max_executions", "fills per symbol / window", int], ["execution_window_ms", "execution window", (v) => `${v} ms`],
      ["dup_window_ms", "duplicate window", (v) => `${v} ms`], ["dup_mode", "duplicates", (v) => v]];
    const grid = el("dl", { class: "kv cols" }, show.filter(([k]) => k in lim).map(([k, label, f]) =>
      [el("dt", { text: label }), el("dd", { class: "mono", "data-limit": k, text: f(lim[k]) })]));
    const credit = Object.entries(L.credit_used || {}).map(([sess, used]) => {
      const own = (lim.sessions || []).find((x) => x.session === sess);
      const cap = (own && own.credit_limit) || lim.credit_limit;
      return el("div", { class: "credit" }, el("span", { class: "mono small", text: sess }), bar(cap ? used / cap : 0),
        el("span", { class: "muted small", text: `${int(Math.round(used))} of ${int(cap)}` }));
    });
    const extra = [];
    if ((lim.restricted_symbols || []).length) extra.push(el("p", { class: "small" }, "restricted: ", lim.restricted_symbols.join(", ")));
    for (const sy of lim.symbols || []) extra.push(el("p", { class: "small mono", text: JSON.stringify(sy) }));
    for (const se of lim.sessions || []) extra.push(el("p", { class: "small mono", text: JSON.stringify(se) }));
    fill($("limits"), grid, credit.length && el("h3", { text: "Credit used" }), credit, extra);
  }

  function renderActions(s) {
    const acts = (s.recent_actions || []).slice().reverse();
    fill($("actions").tBodies[0], acts.length ? acts.map((a) => el("tr", { class: a.ok ? null : "out" },
      el("td", { class: "mono small", text: wall(a.ts_ns) }), el("td", { text: a.who }),
      el("td", {}, el("span", { class: "badge " + (a.action === "kill" || a.action === "venue_disable" ? "b-rej" : "b-fill"), text: a.action })),
      el("td", { class: "mono small", text: a.scope }), el("td", { class: "small wrap", text: a.text })))
      : el("tr", {}, el("td", { colspan: 5, class: "muted", text: "none this session" })));
  }

  function renderScopeNames(s) {
    let dl = $("scope-names");
    if (!dl) { dl = el("datalist", { id: "scope-names" }); document.body.append(dl); }
    const names = new Set([...Object.keys(s.sessions.venues), ...Object.keys(s.sessions.oms)]);
    for (const p of s.parents || []) names.add(p.symbol);
    for (const d of s.decisions || []) if (d.parent) names.add(d.parent.symbol);
    fill(dl, [...names].sort().map((n) => el("option", { value: n })));
  }

  // --------------------------------------------------------------- start

  function start() {
    $("kill-all").addEventListener("click", killAll);
    $("kill-scope").addEventListener("click", killScope);
    $("resume-all").addEventListener("click", () => resume("all", "", "all"));
    const login = () => {
      const t = $("login-token").value.trim();
      if (!t) return;
      token = t;
      sessionStorage.setItem(TOKEN_KEY, t);
      $("login").close();
      setConn(false, "connecting…");
      poll();
    };
    $("login-ok").addEventListener("click", login);
    $("login-token").addEventListener("keydown", (e) => { if (e.key === "Enter") login(); });
    // Without a token the page has nothing to show: the prompt stays.
    $("login").addEventListener("cancel", (e) => e.preventDefault());
    token = takeToken();
    if (token) poll();
    else askToken();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
