// The console's router: #/calls, #/call/<id>, #/health, #/users, #/settings; the sign-in screen
// whenever there is no session or the API refuses the key.
import { SignedOut, session, signIn, signOut } from "./api.js";
import { callScreen, callsScreen, healthScreen, settingsScreen, signInScreen, usersScreen } from "./screens.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");

function showSignIn(message = "") {
  nav.hidden = true;
  who.textContent = "";
  signInScreen(
    main,
    (as) => {
      signIn(as.account, as.key);
      if (location.hash !== "#/calls") location.hash = "#/calls";
      else route();
    },
    message,
  );
  document.getElementById("account").focus();
}

async function route() {
  const current = session();
  if (!current) {
    showSignIn();
    return;
  }
  nav.hidden = false;
  who.textContent = `Account ${current.account}`;
  const hash = location.hash || "#/calls";
  for (const link of nav.querySelectorAll("a")) {
    const active = hash === link.getAttribute("href") || (hash.startsWith("#/call/") && link.getAttribute("href") === "#/calls");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    if (hash.startsWith("#/call/")) await callScreen(main, decodeURIComponent(hash.slice("#/call/".length)));
    else if (hash === "#/health") await healthScreen(main);
    else if (hash === "#/users") await usersScreen(main);
    else if (hash === "#/settings") await settingsScreen(main);
    else await callsScreen(main);
  } catch (error) {
    if (error instanceof SignedOut) {
      signOut();
      showSignIn(error.message);
      return;
    }
    throw error;
  }
  // Keyboard and screen reader users land on the new screen's heading.
  const title = main.querySelector("h1");
  if (title) title.focus();
  document.title = `${title ? title.textContent : "Console"} · CallBridge`;
}

document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  location.hash = "";
  showSignIn();
});
window.addEventListener("hashchange", route);
window.addEventListener("signedout", (event) => {
  signOut();
  showSignIn(event.detail);
});
route();
