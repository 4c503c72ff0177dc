// The console's one way to the JSON API: the account and its API key live in this tab's session
// storage only (never in a URL, a cookie or a log), and go out in the Authorization header.

const KEY = "callbridge.console";

export class SignedOut extends Error {}

export function session() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(KEY) || "null");
    return stored && stored.account && stored.key ? stored : null;
  } catch {
    return null;
  }
}

export function signIn(account, key) {
  sessionStorage.setItem(KEY, JSON.stringify({ account, key }));
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

// `path` below the account (e.g. "calls"), relative to the page so that a stage prefix is kept.
function url(account, path, query = {}) {
  const target = new URL(`v1/${encodeURIComponent(account)}/${path}`, document.baseURI);
  for (const [name, value] of Object.entries(query)) if (value) target.searchParams.set(name, value);
  return target;
}

export async function call(path, { method = "GET", query = {}, as = null } = {}) {
  const current = as || session();
  if (!current) throw new SignedOut("Sign in first");
  const response = await fetch(url(current.account, path, query), {
    method,
    headers: { Authorization: `Bearer ${current.key}`, Accept: "application/json" },
    cache: "no-store",
    credentials: "omit",
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401) throw new SignedOut("Wrong account or API key");
  if (!response.ok) {
    const error = new Error((body && body.error) || `The API answered ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return { status: response.status, body };
}
