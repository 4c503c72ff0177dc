// Building the page: elements made with textContent only (no HTML from data, so nothing from a
// call or a CRM's answer can run as script), and times shown in the browser's time zone.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

// A UTC ISO time of the API as a <time> in the browser's zone; "—" when there is none.
export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return h("time", { datetime: iso, title: iso }, dateTime.format(date));
}

// A <input type="datetime-local"> value (the browser's zone) as UTC ISO for the API; "" if empty.
export function toUtc(local) {
  if (!local) return "";
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function seconds(value) {
  const total = Number(value) || 0;
  const m = Math.floor(total / 60);
  return m ? `${m} min ${total % 60} s` : `${total} s`;
}

export function table(caption, headings, rows) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headings.map((text) => h("th", { scope: "col" }, text)))),
      h("tbody", {}, rows),
    ),
  );
}

export function field(label, control) {
  const id = control.id || `f-${label.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  control.id = id;
  return h("div", {}, h("label", { for: id }, label), control);
}

export function select(name, options, value = "") {
  return h(
    "select",
    { name },
    options.map(([optionValue, text]) => h("option", { value: optionValue, selected: optionValue === value }, text)),
  );
}

export function mark(text, tone = "") {
  return h("span", { class: `mark ${tone}`.trim() }, text);
}
