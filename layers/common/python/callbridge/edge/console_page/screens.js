// The console's screens. Each renders into `main` and returns; the router (app.js) calls them.
import { SignedOut, call, session } from "./api.js";
import { field, h, mark, seconds, select, table, toUtc, when, zone } from "./dom.js";

const DIRECTIONS = [["", "Any"], ["in", "Incoming"], ["out", "Outgoing"]];
const OUTCOMES = [["", "Any"], ["answered", "Answered"], ["missed", "Missed"], ["no_answer", "No answer"],
  ["busy", "Busy"], ["not_available", "Not available"], ["not_allowed", "Not allowed"], ["not_found", "Not found"],
  ["unknown", "Unknown"]];
const MISSED_REASONS = [["", "Any"], ["no_answer", "Nobody answered"], ["busy", "All lines busy"],
  ["rejected", "Rejected"], ["unavailable", "Nobody available"], ["queue_abandoned", "Gave up in the queue"],
  ["unknown", "Not answered"]];
const REASON_TEXT = Object.fromEntries(MISSED_REASONS.filter(([value]) => value));
const PAGE_SIZE = 25;

function heading(main, text) {
  const title = h("h1", { tabindex: "-1" }, text);
  main.replaceChildren(title);
  return title;
}

function problem(main, error) {
  if (error instanceof SignedOut) {
    // The key stopped working (rotated, or the tab's session is another account's): back to sign in.
    window.dispatchEvent(new CustomEvent("signedout", { detail: error.message }));
    return;
  }
  main.append(h("p", { class: "alert", role: "alert" }, error.message || String(error)));
}

// -- sign in -----------------------------------------------------------------------------------
export function signInScreen(main, onSignedIn, message = "") {
  heading(main, "Sign in");
  const account = h("input", { id: "account", name: "account", autocomplete: "username", required: true, spellcheck: "false" });
  const key = h("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "current-password", required: true });
  const alert = h("p", { class: "alert", role: "alert" }, message);
  const form = h(
    "form",
    { class: "signin", "aria-label": "Sign in" },
    field("Account", account),
    field("API key", key),
    h("button", { class: "primary", type: "submit" }, "Sign in"),
    alert,
    h("p", { class: "note" }, "The key stays in this tab only and is forgotten when the tab closes."),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    alert.textContent = "";
    const as = { account: account.value.trim(), key: key.value.trim() };
    try {
      await call("calls", { query: { limit: "1" }, as });
      onSignedIn(as);
    } catch (error) {
      alert.textContent = error.message;
      key.value = "";
      key.focus();
    }
  });
  main.append(form);
}

// -- calls -------------------------------------------------------------------------------------
const listState = { filters: {}, cursors: [null], page: 0 };

function filterForm(onApply) {
  const f = listState.filters;
  const controls = {
    from: h("input", { name: "from", type: "datetime-local", value: f.fromLocal || "" }),
    to: h("input", { name: "to", type: "datetime-local", value: f.toLocal || "" }),
    direction: select("direction", DIRECTIONS, f.direction || ""),
    outcome: select("outcome", OUTCOMES, f.outcome || ""),
    missed_reason: select("missed_reason", MISSED_REASONS, f.missed_reason || ""),
    phone: h("input", { name: "phone", type: "tel", value: f.phone || "", autocomplete: "off" }),
    user: h("input", { name: "user", value: f.user || "", autocomplete: "off" }),
  };
  controls.from.id = "filter-from";
  controls.to.id = "filter-to";
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter calls" },
    field("From", controls.from),
    field("To", controls.to),
    field("Direction", controls.direction),
    field("Outcome", controls.outcome),
    field("Missed reason", controls.missed_reason),
    field("Number", controls.phone),
    field("User", controls.user),
    h("div", {}, h("button", { class: "primary", type: "submit" }, "Apply filters")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    listState.filters = {
      fromLocal: controls.from.value,
      toLocal: controls.to.value,
      direction: controls.direction.value,
      outcome: controls.outcome.value,
      missed_reason: controls.missed_reason.value,
      phone: controls.phone.value.trim(),
      user: controls.user.value.trim(),
    };
    listState.cursors = [null];
    listState.page = 0;
    onApply();
  });
  return form;
}

function query() {
  const f = listState.filters;
  return {
    from: toUtc(f.fromLocal),
    to: toUtc(f.toLocal),
    direction: f.direction,
    outcome: f.outcome,
    missed_reason: f.missed_reason,
    phone: f.phone,
    user: f.user,
    limit: String(PAGE_SIZE),
    cursor: listState.cursors[listState.page] || "",
  };
}

function outcomeCell(c) {
  const parts = [c.outcome || "—"];
  if (c.missed_reason) parts.push(h("span", { class: "note" }, ` (${REASON_TEXT[c.missed_reason] || c.missed_reason})`));
  return h("td", {}, parts);
}

export async function callsScreen(main) {
  heading(main, "Calls");
  main.append(h("p", { class: "note" }, `Newest first. Times in ${zone}.`));
  const results = h("div", { id: "results" });
  const load = async () => {
    results.replaceChildren(h("p", { class: "note" }, "Loading…"));
    try {
      const { body } = await call("calls", { query: query() });
      const rows = body.calls.map((c) =>
        h(
          "tr",
          {},
          h("td", {}, when(c.started_at)),
          h("td", {}, c.direction === "out" ? "Outgoing" : c.direction === "in" ? "Incoming" : "—"),
          outcomeCell(c),
          h("td", {}, c.phone || "—"),
          h("td", {}, c.user || "—"),
          h("td", {}, seconds(c.duration)),
          h("td", {}, h("a", { href: `#/call/${encodeURIComponent(c.call_id)}` }, c.call_id)),
        ),
      );
      listState.cursors[listState.page + 1] = body.next_cursor;
      const newer = h("button", { class: "secondary", type: "button", disabled: listState.page === 0 }, "Newer");
      const older = h("button", { class: "secondary", type: "button", disabled: !body.next_cursor }, "Older");
      newer.addEventListener("click", () => { listState.page -= 1; load(); });
      older.addEventListener("click", () => { listState.page += 1; load(); });
      results.replaceChildren(
        rows.length
          ? table(`Page ${listState.page + 1}: ${rows.length} calls`, ["Start", "Direction", "Outcome", "Number", "User", "Talk", "Call"], rows)
          : h("p", {}, "No calls match."),
        h("nav", { class: "pager", "aria-label": "Pages" }, newer, older),
      );
    } catch (error) {
      results.replaceChildren();
      problem(results, error);
    }
  };
  main.append(filterForm(load), results);
  await load();
}

// -- one call ----------------------------------------------------------------------------------
function marks(c) {
  const found = [];
  const flags = c.flags || [];
  if (flags.includes("derived_from_events")) found.push(mark("derived from events", "warn"));
  if (c.events_duration !== undefined && c.events_duration !== null) found.push(mark("corrected by the PBX", "warn"));
  for (const flag of flags) if (flag !== "derived_from_events") found.push(mark(flag));
  return found.length ? found : "—";
}

function facts(c) {
  const rows = [
    ["Start", when(c.started_at)],
    ["Direction", c.direction || "—"],
    ["Outcome", c.outcome || "—"],
    ["Missed reason", c.missed_reason ? REASON_TEXT[c.missed_reason] || c.missed_reason : "—"],
    ["Number", c.phone || "—"],
    ["User", c.user || "—"],
    ["Talk time", seconds(c.duration)],
    ["Source", c.source || "—"],
    ["Marks", marks(c)],
  ];
  if (c.events_duration !== undefined && c.events_duration !== null) {
    rows.push(["CRMs got", `${seconds(c.events_duration)} (derived from the events; the PBX's record came after delivery)`]);
  }
  return h("dl", { class: "facts" }, rows.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function deliveryWhen(d) {
  return d.delivered_at || d.parked_at || d.settled_at || d.created_at;
}

function deliveryState(d) {
  const tone = d.state === "delivered" ? "ok" : d.state === "rejected" || d.state === "failed" ? "bad" : "";
  return mark(d.state, tone);
}

function answer(d) {
  if (d.state === "delivered") return d.crm_answer && d.crm_answer.duplicate ? "taken (a duplicate of what it had)" : "taken";
  return d.reason || d.last_error || "—";
}

async function redeliverPanel(container, callId, crm, refresh) {
  const path = `calls/${encodeURIComponent(callId)}/redeliver/${encodeURIComponent(crm)}`;
  container.replaceChildren(h("p", { class: "note" }, "Asking what a redelivery would do…"));
  let plan;
  try {
    plan = (await call(path)).body;
  } catch (error) {
    container.replaceChildren();
    problem(container, error);
    return;
  }
  const message = h("p", { id: `plan-${crm}` }, plan.message);
  const outcome = h("p", { role: "status" });
  const close = h("button", { class: "secondary", type: "button" }, "Close");
  close.addEventListener("click", () => container.replaceChildren());
  const actions = h("div", { class: "actions" });
  if (plan.action === "send") {
    const send = h("button", { class: "primary", type: "button", "aria-describedby": message.id }, `Send to ${crm} now`);
    send.addEventListener("click", async () => {
      // Disabled at the first click: a second click sends nothing (the API would queue nothing more either).
      if (send.disabled) return;
      send.disabled = true;
      try {
        const { body } = await call(path, { method: "POST" });
        outcome.textContent = body.message;
        await refresh(crm);
      } catch (error) {
        outcome.textContent = error.message;
      }
    });
    actions.append(send);
  }
  actions.append(close);
  container.replaceChildren(
    h("section", { class: "panel", "aria-label": `Redeliver to ${crm}` }, h("h3", {}, `Redeliver to ${crm}`), message, actions, outcome),
  );
  (actions.querySelector("button.primary") || close).focus();
}

function deliveriesTable(detail, refresh) {
  const panel = h("div", { id: "redeliver" });
  const rows = detail.deliveries.map((d) => {
    const button = h("button", { class: "secondary", type: "button", "aria-label": `Redeliver to ${d.crm}…` }, "Redeliver…");
    button.addEventListener("click", () => redeliverPanel(panel, detail.call.call_id, d.crm, refresh));
    return h(
      "tr",
      { dataset: { crm: d.crm } },
      h("td", {}, d.crm, d.crm_kind ? h("span", { class: "note" }, ` (${d.crm_kind})`) : ""),
      h("td", { class: "state" }, deliveryState(d)),
      h("td", {}, when(deliveryWhen(d))),
      h("td", {}, String(d.attempts ?? 0)),
      h("td", {}, answer(d)),
      h("td", {}, button),
    );
  });
  return [
    rows.length
      ? table("What each CRM answered, and when", ["CRM", "State", "When", "Tries", "Answer", ""], rows)
      : h("p", {}, "This account sends calls to no CRM."),
    panel,
  ];
}

function recordingPart(recording) {
  if (recording.state !== "stored") {
    const text = { pending: "Being fetched from the PBX.", none: "No recording.", unavailable: "Unavailable" }[recording.state] || recording.state;
    return h("p", {}, text, recording.error ? `: ${recording.error}` : "");
  }
  const player = h("audio", { id: "player", controls: true, preload: "metadata", src: recording.playback_url });
  return h(
    "div",
    {},
    h("label", { for: "player" }, `Recording (${Math.round((recording.size || 0) / 1024)} KB, ${recording.content_type || "audio"})`),
    player,
  );
}

export async function callScreen(main, callId) {
  heading(main, `Call ${callId}`);
  main.append(h("p", {}, h("a", { href: "#/calls" }, "← All calls")));
  const body = h("div");
  main.append(body);
  let detail;
  try {
    detail = (await call(`calls/${encodeURIComponent(callId)}`)).body;
  } catch (error) {
    problem(body, error);
    return;
  }
  const deliveries = h("section", { "aria-labelledby": "h-deliveries" });
  // After a redelivery: the call again until the worker has settled that CRM's delivery (a few seconds).
  const refresh = async (crm) => {
    for (let tries = 0; tries < 30; tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      try {
        const fresh = (await call(`calls/${encodeURIComponent(callId)}`)).body;
        const delivery = fresh.deliveries.find((d) => d.crm === crm);
        const row = deliveries.querySelector(`tr[data-crm="${CSS.escape(crm)}"]`);
        if (row && delivery) {
          row.querySelector(".state").replaceChildren(deliveryState(delivery));
          row.children[2].replaceChildren(when(deliveryWhen(delivery)));
          row.children[3].textContent = String(delivery.attempts ?? 0);
          row.children[4].textContent = answer(delivery);
        }
        if (delivery && delivery.state !== "pending") return;
      } catch {
        return;
      }
    }
  };
  deliveries.append(h("h2", { id: "h-deliveries" }, "Deliveries"), ...deliveriesTable(detail, refresh));
  const timeline = detail.timeline.map((e) =>
    h("li", {}, when(e.received_at), ` ${e.cmd || ""} ${e.type || ""}`, e.user ? ` · ${e.user}` : ""),
  );
  body.append(
    facts(detail.call),
    h("section", { "aria-labelledby": "h-recording" }, h("h2", { id: "h-recording" }, "Recording"), recordingPart(detail.recording)),
    deliveries,
    h(
      "section",
      { "aria-labelledby": "h-timeline" },
      h("h2", { id: "h-timeline" }, "Timeline"),
      timeline.length ? h("ol", { class: "timeline" }, timeline) : h("p", {}, "No records."),
    ),
  );
}

// -- health ------------------------------------------------------------------------------------
export async function healthScreen(main) {
  heading(main, "Health");
  let health;
  try {
    health = (await call("health")).body;
  } catch (error) {
    problem(main, error);
    return;
  }
  const crmRows = health.crms.map((c) =>
    h(
      "tr",
      {},
      h("td", {}, c.name, h("span", { class: "note" }, ` (${c.kind}, ${c.mode})`)),
      h("td", {}, when(c.last_success_at)),
      h("td", {}, when(c.last_error_at), c.last_error ? h("div", { class: "note" }, c.last_error) : ""),
      h("td", {}, String(c.parked.rejected)),
      h("td", {}, String(c.parked.failed)),
    ),
  );
  const r = health.reconciliation;
  const dead = health.dead_lettered.deliveries;
  main.append(
    h("p", { class: "note" }, `Checked `, when(health.checked_at), `. Times in ${zone}.`),
    h("h2", {}, "PBX"),
    h("dl", { class: "facts" }, h("dt", {}, "Kind"), h("dd", {}, health.pbx.kind), h("dt", {}, "Last webhook"), h("dd", {}, when(health.pbx.last_webhook_at))),
    h("h2", {}, "CRMs"),
    crmRows.length
      ? table("Each CRM's last success and last error, and its parked deliveries", ["CRM", "Last success", "Last error", "Rejected", "Failed"], crmRows)
      : h("p", {}, "This account sends calls to no CRM."),
    h("h2", {}, "Dead-lettered deliveries"),
    h("p", {}, dead === null ? "Unknown (the queue could not be read)." : `${dead} in the dead-letter queue (every account of this deployment).`),
    h("h2", {}, "Reconciliation"),
    r
      ? h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Job"), h("dd", {}, r.job),
          h("dt", {}, "Schedule"), h("dd", {}, r.schedule),
          h("dt", {}, "Last run"), h("dd", {}, r.last_run_at ? [when(r.last_run_at), ` (${r.last_status})`] : "not run yet"),
          h("dt", {}, "Next run"), h("dd", {}, r.next_at ? when(r.next_at) : "after the first run, by the schedule"),
        )
      : h("p", {}, "This account's PBX has no scheduled reconciliation."),
  );
}

// -- users -------------------------------------------------------------------------------------
export async function usersScreen(main) {
  heading(main, "Users");
  let body;
  try {
    body = (await call("users")).body;
  } catch (error) {
    problem(main, error);
    return;
  }
  const rows = body.users.map((u) =>
    h(
      "tr",
      {},
      h("td", {}, u.pbx_user),
      h("td", {}, u.mapped ? mark("mapped", "ok") : mark("unmapped", "bad")),
      h("td", {}, u.name || "—"),
      h("td", {}, u.extension || "—"),
      h("td", {}, Object.keys(u.crm_fields).length ? Object.entries(u.crm_fields).map(([k, v]) => h("div", {}, `${k}: ${v}`)) : "—"),
      h("td", {}, u.seen_in_pbx === false ? "no longer listed" : u.seen_in_pbx ? "listed" : "not synced yet"),
    ),
  );
  main.append(
    h("p", { class: "note" }, `${body.unmapped} PBX users without a mapping (listed first).`),
    rows.length ? table("PBX user ↔ CRM users", ["PBX user", "Mapping", "Name", "Extension", "In the CRMs", "In the PBX"], rows) : h("p", {}, "No users."),
  );
}

// -- settings ----------------------------------------------------------------------------------
function flatten(value, path, out) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value)) flatten(inner, path ? `${path}.${key}` : key, out);
  } else if (Array.isArray(value) && value.some((v) => v && typeof v === "object")) {
    value.forEach((inner, index) => flatten(inner, `${path}.${index}`, out));
  } else {
    out.push([path, Array.isArray(value) ? value.join(", ") : value === null ? "—" : String(value)]);
  }
  return out;
}

export async function settingsScreen(main) {
  heading(main, "Settings");
  let body;
  try {
    body = (await call("settings")).body;
  } catch (error) {
    problem(main, error);
    return;
  }
  const row = ([key, value]) => h("tr", {}, h("th", { scope: "row" }, key), h("td", {}, value));
  const secretRows = Object.entries(body.secrets).map(row);
  main.append(
    h("p", { class: "note" }, `Account ${session().account} as applied. Every secret is masked; secrets live in the deployment's parameter store.`),
    table("The account's settings", ["Setting", "Value"], flatten(body.settings, "", []).map(row)),
    h("h2", {}, "Secrets set"),
    secretRows.length ? table("The account's secrets, by name (values never shown)", ["Secret", "Value"], secretRows) : h("p", {}, "None."),
  );
}
