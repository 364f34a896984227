// Three pages behind the URL hash: #/register, #/login, #/dashboard.
import { api, ApiError, token } from "./api.js";

const app = document.querySelector("#app");
const nav = document.querySelector("#nav");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function field(label, name, type = "text", extra = {}) {
  return el("label", {}, label, el("input", { name, type, required: "", ...extra }));
}

function errorBox() {
  return el("p", { class: "error", role: "alert", "data-testid": "error" });
}

function show(error, box) {
  box.textContent = error instanceof ApiError ? error.message : `Something went wrong: ${error}`;
}

function go(page) {
  window.location.hash = `#/${page}`;
}

function authPage(kind) {
  const box = errorBox();
  const isRegister = kind === "register";
  const form = el(
    "form",
    {
      "data-testid": `${kind}-form`,
      onsubmit: async (event) => {
        event.preventDefault();
        const data = new FormData(form);
        box.textContent = "";
        try {
          if (isRegister) await api.register(data.get("email"), data.get("password"));
          const result = await api.login(data.get("email"), data.get("password"));
          token.set(result.access_token);
          go("dashboard");
        } catch (error) {
          show(error, box);
        }
      },
    },
    field("Email", "email", "email", { autocomplete: "email" }),
    field("Password", "password", "password", {
      minlength: isRegister ? "8" : "1",
      autocomplete: isRegister ? "new-password" : "current-password",
    }),
    el("button", { type: "submit" }, isRegister ? "Create account" : "Log in"),
  );
  const other = isRegister
    ? el("a", { href: "#/login" }, "Already registered? Log in")
    : el("a", { href: "#/register" }, "New here? Create an account");
  return [el("h2", {}, isRegister ? "Create an account" : "Log in"), form, box, other];
}

async function dashboard() {
  if (!token.get()) return go("login");
  let me;
  try {
    me = await api.me();
  } catch {
    token.clear();
    return go("login");
  }
  const box = errorBox();
  const list = el("ul", { "data-testid": "businesses" });
  const picker = el("select", { name: "business_id", "data-testid": "coach-business" });
  const answer = el("p", { class: "answer", "data-testid": "answer", hidden: "" });

  async function refresh() {
    const businesses = await api.businesses();
    list.replaceChildren(...businesses.map((b) => el("li", {}, `${b.name} (${b.industry || "no industry"})`)));
    picker.replaceChildren(...businesses.map((b) => el("option", { value: String(b.id) }, b.name)));
  }

  const create = el(
    "form",
    {
      "data-testid": "business-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const data = new FormData(create);
        box.textContent = "";
        try {
          await api.createBusiness({ name: data.get("name"), industry: data.get("industry") });
          create.reset();
          await refresh();
        } catch (error) {
          show(error, box);
        }
      },
    },
    field("Business name", "name"),
    el("label", {}, "Industry", el("input", { name: "industry" })),
    el("button", { type: "submit" }, "Add business"),
  );

  const coach = el(
    "form",
    {
      "data-testid": "coach-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const data = new FormData(coach);
        box.textContent = "";
        answer.hidden = true;
        try {
          const session = await api.ask(Number(data.get("business_id")), data.get("question"));
          answer.textContent = session.answer;
          answer.hidden = false;
        } catch (error) {
          show(error, box);
        }
      },
    },
    el("label", {}, "Business", picker),
    el("label", {}, "Question", el("textarea", { name: "question", required: "", minlength: "3" })),
    el("button", { type: "submit" }, "Ask the coach"),
  );

  await refresh();
  return [
    el("h2", {}, "Dashboard"),
    el("p", { "data-testid": "current-user" }, `Signed in as ${me.email}`),
    el("h3", {}, "Your businesses"),
    list,
    create,
    el("h3", {}, "Ask the coach"),
    coach,
    answer,
    box,
  ];
}

async function render() {
  const page = window.location.hash.replace(/^#\//, "") || (token.get() ? "dashboard" : "login");
  nav.replaceChildren(
    token.get()
      ? el("button", { type: "button", onclick: () => { token.clear(); go("login"); } }, "Log out")
      : "",
  );
  const content = page === "dashboard" ? await dashboard() : authPage(page === "register" ? "register" : "login");
  if (content) app.replaceChildren(...content);
}

window.addEventListener("hashchange", render);
render();
