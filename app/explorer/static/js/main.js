// The explorer's entry point: hash routes, the API key prompt, and error display.
import { apiKey, setApiKey, whenUnauthorized } from "./api.js";
import { clear, h } from "./dom.js";
import { renderHome, renderJob } from "./home.js";
import { renderModel } from "./model.js";
import { renderCompare } from "./compare.js";

const view = document.getElementById("view");
const status = document.getElementById("status");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key-input");
const keyForget = document.getElementById("key-forget");

function showKeyState() {
  keyForget.hidden = !apiKey();
}

whenUnauthorized((message) => {
  keyForm.hidden = false;
  status.textContent = `${message}. Enter an API key.`;
  keyInput.focus();
});

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey(keyInput.value.trim());
  keyInput.value = "";
  keyForm.hidden = true;
  status.textContent = "";
  showKeyState();
  route();
});

keyForget.addEventListener("click", () => {
  setApiKey(null);
  showKeyState();
  route();
});

async function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  status.textContent = "";
  try {
    if (parts[0] === "model" && parts[1]) {
      await renderModel(view, parts[1], parts[2] === "topic" ? Number(parts[3]) : null);
    } else if (parts[0] === "job" && parts[1]) {
      await renderJob(view, parts[1]);
    } else if (parts[0] === "compare") {
      await renderCompare(view, parts[1] || null, parts[2] || null);
    } else {
      await renderHome(view);
    }
  } catch (error) {
    clear(view).append(h("p", { class: "error" }, error.message));
  }
}

let lastRoute = null;
window.addEventListener("hashchange", () => {
  // The model view rewrites its own hash when a topic is selected: no reload for that.
  const base = location.hash.split("/topic/")[0];
  if (base !== lastRoute) {
    lastRoute = base;
    route();
  }
});
lastRoute = location.hash.split("/topic/")[0];
showKeyState();
route();
