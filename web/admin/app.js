// keyauthz admin page: plain JavaScript, no framework, no build step.
//
// Everything it shows comes from the keyauthz admin API (/api/engine/v2, docs/http-api.md),
// called with the administrator's key in the X-API-Key header. The key lives in this tab's
// sessionStorage only: never in a cookie, the URL, localStorage or the console.
"use strict";

(function () {
  const API = "/api/engine/v2";
  const KEY_STORAGE = "keyauthz.adminKey";
  const DOMAIN_STORAGE = "keyauthz.domain";
  const PAGE_SIZE = 20;
  // Permission levels, lowest first (docs/keys.md).
  const LEVELS = ["user", "support", "admin", "admin_support"];

  const $ = (id) => document.getElementById(id);

  // State of the signed-in session; signOut puts it back to this.
  function freshState() {
    return {
      me: null,          // GET /api_keys/inspect of the signed-in key
      domains: [],       // GET /domains
      domainId: "",      // the domain picked
      users: [],         // GET /users?authority_id= of the picked domain
      scopes: null,      // GET /scopes, loaded once
      keysURL: "",       // the keys page shown (its API URL)
      keysPrev: [],      // the API URLs of the pages before it
      view: "keys",
    };
  }
  let state = freshState();

  // Every sign-in and sign-out starts a new session: the requests of an earlier one are
  // aborted, and whatever they answer is ignored (it could otherwise show the old session's
  // data, or sign the new session out with the old key's 401).
  let session = 0;
  let sessionAbort = new AbortController();
  function newSession() {
    session++;
    sessionAbort.abort();
    sessionAbort = new AbortController();
  }

  // ---- API ----------------------------------------------------------------------------------

  // ApiError is an answer other than 2xx: its status, message and 422 failures.
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error) || "HTTP " + status);
      this.status = status;
      this.failures = (body && Array.isArray(body.failures)) ? body.failures : [];
    }
  }

  // StaleError is the answer to a request of a session that has ended: nobody shows it.
  class StaleError extends Error {
    constructor() {
      super("the session of this request has ended");
      this.stale = true;
      this.status = -1;
      this.failures = [];
    }
  }

  function storedKey() {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  }

  // api calls the admin API with key (the stored key by default) and returns {data, headers}.
  // path is relative to the API's base ("/users") or a whole API path (a Link header's). A 401 ends the session: the page goes back to sign in, with the API's message.
  // An answer that arrives after its session ended is a StaleError, whatever it was.
  async function api(method, path, body, key) {
    const mine = session;
    const headers = { "X-API-Key": key === undefined ? storedKey() : key, "Accept": "application/json" };
    const init = { method, headers, credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer", signal: sessionAbort.signal };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp, text;
    try {
      resp = await fetch(path.startsWith(API + "/") || path.startsWith(API + "?") ? path : API + path, init);
      text = await resp.text();
    } catch (e) {
      if (mine !== session) throw new StaleError();
      throw new ApiError(0, { error: "keyauthz cannot be reached: " + e.message });
    }
    if (mine !== session) throw new StaleError();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = { error: text }; }
    }
    if (!resp.ok) {
      const err = new ApiError(resp.status, data);
      if (resp.status === 401 && key === undefined) {
        signOut("Signed out: " + err.message + ".");
      }
      throw err;
    }
    return { data, headers: resp.headers };
  }

  // ---- Small helpers ------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  function formatTime(unix) {
    if (unix === null || unix === undefined) return "never";
    const d = new Date(unix * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function userLevel(u) {
    if (u.sys_admin && u.support) return "admin_support";
    if (u.sys_admin) return "admin";
    if (u.support) return "support";
    return "user";
  }

  function showPageError(message) {
    const p = $("page-error");
    p.textContent = message;
    p.hidden = !message;
  }

  function setStatus(message) {
    $("page-status").textContent = message;
  }

  // report shows an error of a list action (a 401 has already signed out).
  function report(err) {
    if (err.status !== 401 && !err.stale) showPageError(err.message);
  }

  // ---- Forms: 422 failures beside their fields ------------------------------------------------

  function clearFormErrors(prefix) {
    const form = $(prefix + "-form");
    form.querySelectorAll(".field-error").forEach((p) => { p.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((i) => i.removeAttribute("aria-invalid"));
    const top = $(prefix + "-form-error");
    top.textContent = "";
    top.hidden = true;
  }

  // showFormError puts each 422 failure beside its field (the element prefix-FIELD-error) and
  // any other error (403 naming the scope or level, 400, 409, ...) at the top of the form.
  function showFormError(prefix, err) {
    if (err.status === 401 || err.stale) return; // signed out already
    const top = $(prefix + "-form-error");
    const rest = [];
    let firstInvalid = null;
    for (const f of err.failures) {
      const p = $(prefix + "-" + f.field + "-error");
      if (!p) { rest.push(f.field + " " + f.reason); continue; }
      p.textContent = f.field.replace(/_id$/, "").replace(/_/g, " ") + " " + f.reason;
      const input = document.querySelector("[aria-describedby~='" + p.id + "']");
      if (input) {
        input.setAttribute("aria-invalid", "true");
        firstInvalid = firstInvalid || input;
      }
    }
    if (err.failures.length === 0 || rest.length > 0) {
      top.textContent = err.failures.length === 0 ? err.message : err.message + ": " + rest.join("; ");
      top.hidden = false;
    }
    if (firstInvalid && firstInvalid.focus) {
      firstInvalid.focus();
    } else if (!top.hidden) {
      top.focus(); // tabindex="-1": brings the message into view and to screen readers
    }
  }

  // Dialogs give focus back to the control that opened them.
  function openDialog(dialog, opener) {
    dialog.returnFocusTo = opener || document.activeElement;
    dialog.showModal();
  }
  function closeDialog(dialog) {
    dialog.close();
  }
  document.querySelectorAll("dialog").forEach((d) => {
    d.addEventListener("close", () => {
      if (d.returnFocusTo && document.contains(d.returnFocusTo)) d.returnFocusTo.focus();
    });
    d.querySelectorAll("button.cancel").forEach((b) => b.addEventListener("click", () => closeDialog(d)));
  });

  // confirmDelete asks before deleting; run does the delete and may throw an ApiError.
  function confirmDelete(title, text, opener, run) {
    const d = $("confirm-dialog");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-error").hidden = true;
    const ok = $("confirm-ok");
    const fresh = ok.cloneNode(true); // drop the previous confirmation's listener
    ok.replaceWith(fresh);
    fresh.addEventListener("click", async () => {
      fresh.disabled = true;
      try {
        await run();
        closeDialog(d);
      } catch (err) {
        if (err.stale) return;
        if (err.status === 401) { closeDialog(d); return; }
        $("confirm-error").textContent = err.message;
        $("confirm-error").hidden = false;
      } finally {
        fresh.disabled = false;
      }
    });
    openDialog(d, opener);
    $("confirm-cancel").focus();
  }
  $("confirm-cancel").addEventListener("click", () => closeDialog($("confirm-dialog")));

  // A trash button: the icon and a visible "Delete", and the accessible name "Delete <name>".
  function deleteButton(name, onClick) {
    const icon = el("img", { src: "/admin/trash.svg", alt: "", class: "icon" });
    return el("button", { type: "button", class: "icon-button danger", "aria-label": "Delete " + name, title: "Delete " + name, onclick: onClick },
      icon, el("span", { text: "Delete" }));
  }

  function editButton(name, onClick) {
    return el("button", { type: "button", "aria-label": "Edit " + name, onclick: onClick }, el("span", { text: "Edit" }));
  }

  // ---- Sign in and out ----------------------------------------------------------------------

  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("signin-key");
    const key = input.value.trim();
    const error = $("signin-error");
    error.textContent = "";
    input.removeAttribute("aria-invalid");
    if (!key) {
      error.textContent = "Paste an admin API key.";
      input.setAttribute("aria-invalid", "true");
      return;
    }
    newSession(); // a sign-in the user started earlier and did not wait for is forgotten
    try {
      const { data } = await api("GET", "/api_keys/inspect", undefined, key);
      if (data.permissions !== "admin" && data.permissions !== "admin_support") {
        throw new ApiError(403, { error: "This key's level is " + data.permissions +
          ": the admin page needs a key of admin level (admin or admin_support)" });
      }
      sessionStorage.setItem(KEY_STORAGE, key);
      input.value = "";
      await startSession(data);
    } catch (err) {
      if (err.stale) return;
      input.value = ""; // nothing of a refused key is kept, not even in the field
      let message = err.message;
      if (err.status === 401 && message === "authority not found") {
        message = "authority not found: this page's host (" + location.hostname +
          ") is not the host of any domain. Open the page at your key's domain's host.";
      } else if (err.status === 401 && message === "authority domain does not match token's") {
        message = "This key belongs to another domain: open the page at that domain's host.";
      }
      error.textContent = message;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  });

  // signOut forgets the key and everything the session showed or typed: the page afterwards
  // holds nothing of it, as if freshly loaded.
  function signOut(message) {
    newSession();
    sessionStorage.removeItem(KEY_STORAGE);
    sessionStorage.removeItem(DOMAIN_STORAGE);
    state = freshState();
    editingDomain = null;
    editingUser = null;
    document.querySelectorAll("dialog[open]").forEach((d) => d.close());
    document.querySelectorAll("dialog").forEach((d) => { d.returnFocusTo = null; });
    document.querySelectorAll("form").forEach((f) => f.reset());
    for (const prefix of ["key", "user", "domain"]) clearFormErrors(prefix);
    for (const id of ["keys-rows", "users-rows", "domains-rows", "domain-select", "users-domain-select", "key-scopes", "key-user"]) {
      $(id).replaceChildren();
    }
    for (const id of ["keys-count", "users-count", "domains-count", "session-who", "created-title", "copy-status", "confirm-title", "confirm-text", "confirm-error"]) {
      $(id).textContent = "";
    }
    $("confirm-error").hidden = true;
    $("key-dialog-title").textContent = "Add API key";
    $("user-dialog-title").textContent = "Add user";
    $("domain-dialog-title").textContent = "Add domain";
    $("created-key").value = "";
    $("keys-search").value = "";
    $("signin-key").value = "";
    $("keys-next").disabled = true;
    $("keys-next").dataset.url = "";
    $("keys-prev").disabled = true;
    document.querySelectorAll(".nav-link").forEach((b) => {
      if (b.dataset.view === "keys") b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    });
    $("nav").hidden = true;
    $("session").hidden = true;
    showPageError("");
    setStatus("");
    for (const v of ["keys", "users", "domains"]) $(v + "-view").hidden = true;
    $("signin-view").hidden = false;
    $("signin-error").textContent = message || "";
    $("signin-key").focus();
  }
  $("signout").addEventListener("click", () => signOut("Signed out."));

  async function startSession(me) {
    state.me = me;
    $("session-who").textContent = "Signed in as " + me.user.name + " (key " + me.name + ", " + me.permissions + ")";
    $("signin-view").hidden = true;
    $("nav").hidden = false;
    $("session").hidden = false;
    $("signin-error").textContent = "";
    try {
      await loadDomains();
      await showView(state.view);
    } catch (err) {
      report(err);
    }
  }

  // ---- Views --------------------------------------------------------------------------------

  document.querySelectorAll(".nav-link").forEach((b) => b.addEventListener("click", () => showView(b.dataset.view).catch(report)));

  async function showView(view) {
    state.view = view;
    showPageError("");
    setStatus("");
    for (const v of ["keys", "users", "domains"]) $(v + "-view").hidden = v !== view;
    document.querySelectorAll(".nav-link").forEach((b) => {
      if (b.dataset.view === view) b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    });
    if (view === "keys") { await loadUsers(); await loadKeys(keysFirstPage()); }
    if (view === "users") await loadUsers(true);
    if (view === "domains") await loadDomains(true);
  }

  // ---- Domains ------------------------------------------------------------------------------

  async function loadDomains(render) {
    const { data } = await api("GET", "/domains");
    state.domains = data;
    const saved = sessionStorage.getItem(DOMAIN_STORAGE);
    const ids = data.map((d) => d.id);
    state.domainId = ids.includes(state.domainId) ? state.domainId :
      ids.includes(saved) ? saved :
      ids.includes(state.me.authority_id) ? state.me.authority_id : (ids[0] || "");
    for (const id of ["domain-select", "users-domain-select"]) {
      const sel = $(id);
      sel.replaceChildren(...data.map((d) => el("option", { value: d.id, text: d.name + " (" + d.domain + ")" })));
      sel.value = state.domainId;
    }
    if (render) renderDomains();
  }

  function renderDomains() {
    const rows = state.domains.map((d) => el("tr", {},
      el("td", { text: d.name }),
      el("td", { text: d.domain }),
      el("td", { text: d.description || "" }),
      el("td", { text: formatTime(d.created_at) }),
      el("td", { class: "actions-cell" },
        editButton(d.name, (ev) => openDomainForm(d, ev.currentTarget)),
        deleteButton(d.name, (ev) => confirmDelete("Delete domain " + d.name + "?",
          "The domain " + d.name + " (" + d.domain + "), its users and all their API keys will be deleted. Keys stop working at once.",
          ev.currentTarget, async () => {
            await api("DELETE", "/domains/" + encodeURIComponent(d.id));
            setStatus("Deleted domain " + d.name + ".");
            await loadDomains(true);
          })))));
    $("domains-rows").replaceChildren(...rows);
    $("domains-count").textContent = state.domains.length + (state.domains.length === 1 ? " domain" : " domains");
  }

  async function pickDomain(id) {
    state.domainId = id;
    sessionStorage.setItem(DOMAIN_STORAGE, id);
    $("domain-select").value = id;
    $("users-domain-select").value = id;
    showPageError("");
    try {
      if (state.view === "keys") { await loadUsers(); await loadKeys(keysFirstPage()); }
      if (state.view === "users") await loadUsers(true);
    } catch (err) {
      report(err);
    }
  }
  $("domain-select").addEventListener("change", (ev) => pickDomain(ev.target.value));
  $("users-domain-select").addEventListener("change", (ev) => pickDomain(ev.target.value));

  let editingDomain = null;
  function openDomainForm(d, opener) {
    editingDomain = d;
    clearFormErrors("domain");
    $("domain-dialog-title").textContent = d ? "Edit domain " + d.name : "Add domain";
    $("domain-name").value = d ? d.name : "";
    $("domain-host").value = d ? d.domain : "";
    $("domain-description").value = d ? d.description || "" : "";
    openDialog($("domain-dialog"), opener);
  }
  $("add-domain").addEventListener("click", (ev) => openDomainForm(null, ev.currentTarget));
  $("domain-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearFormErrors("domain");
    const body = { name: $("domain-name").value.trim(), domain: $("domain-host").value.trim(), description: $("domain-description").value };
    try {
      if (editingDomain) {
        await api("PATCH", "/domains/" + encodeURIComponent(editingDomain.id), body);
        setStatus("Saved domain " + body.name + ".");
      } else {
        await api("POST", "/domains", body);
        setStatus("Added domain " + body.name + ".");
      }
      closeDialog($("domain-dialog"));
      await loadDomains(true);
    } catch (err) {
      showFormError("domain", err);
    }
  });

  // ---- Users --------------------------------------------------------------------------------

  async function loadUsers(render) {
    if (!state.domainId) { state.users = []; return; }
    const { data } = await api("GET", "/users?authority_id=" + encodeURIComponent(state.domainId));
    state.users = data;
    if (render) renderUsers();
  }

  function renderUsers() {
    const rows = state.users.map((u) => el("tr", {},
      el("td", { text: u.name }),
      el("td", { text: u.email }),
      el("td", { text: userLevel(u) }),
      el("td", { text: (u.groups || []).join(", ") }),
      el("td", { text: formatTime(u.created_at) }),
      el("td", { class: "actions-cell" },
        editButton(u.name, (ev) => openUserForm(u, ev.currentTarget)),
        deleteButton(u.name, (ev) => confirmDelete("Delete user " + u.name + "?",
          "The user " + u.name + " <" + u.email + "> and all of the user's API keys will be deleted. Those keys stop working at once.",
          ev.currentTarget, async () => {
            await api("DELETE", "/users/" + encodeURIComponent(u.id));
            setStatus("Deleted user " + u.name + ".");
            await loadUsers(true);
          })))));
    $("users-rows").replaceChildren(...rows);
    $("users-count").textContent = state.users.length + (state.users.length === 1 ? " user" : " users");
  }

  let editingUser = null;
  function openUserForm(u, opener) {
    editingUser = u;
    clearFormErrors("user");
    $("user-dialog-title").textContent = u ? "Edit user " + u.name : "Add user";
    $("user-name").value = u ? u.name : "";
    $("user-email").value = u ? u.email : "";
    $("user-sys-admin").checked = !!(u && u.sys_admin);
    $("user-support").checked = !!(u && u.support);
    $("user-groups").value = u ? (u.groups || []).join(", ") : "";
    openDialog($("user-dialog"), opener);
  }
  $("add-user").addEventListener("click", (ev) => openUserForm(null, ev.currentTarget));
  $("user-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearFormErrors("user");
    const body = {
      name: $("user-name").value.trim(),
      email: $("user-email").value.trim(),
      sys_admin: $("user-sys-admin").checked,
      support: $("user-support").checked,
      groups: $("user-groups").value.split(",").map((g) => g.trim()).filter((g) => g),
    };
    try {
      if (editingUser) {
        await api("PATCH", "/users/" + encodeURIComponent(editingUser.id), body);
        setStatus("Saved user " + body.name + ".");
      } else {
        body.authority_id = state.domainId;
        await api("POST", "/users", body);
        setStatus("Added user " + body.name + ".");
      }
      closeDialog($("user-dialog"));
      await loadUsers(true);
    } catch (err) {
      showFormError("user", err);
    }
  });

  // ---- API keys -----------------------------------------------------------------------------

  function keysFirstPage() {
    const q = $("keys-search").value.trim();
    let url = API + "/api_keys?authority_id=" + encodeURIComponent(state.domainId) + "&limit=" + PAGE_SIZE;
    if (q) url += "&q=" + encodeURIComponent(q);
    state.keysPrev = [];
    return url;
  }

  // nextLink is the URL of the Link header's rel="next", if any.
  function nextLink(headers) {
    const link = headers.get("Link") || "";
    const m = link.match(/<([^>]+)>\s*;\s*rel="next"/);
    return m && m[1].startsWith("/") ? m[1] : "";
  }

  async function loadKeys(url) {
    if (!state.domainId) { $("keys-rows").replaceChildren(); return; }
    const { data, headers } = await api("GET", url);
    state.keysURL = url;
    const total = Number(headers.get("X-Total-Count") || data.length);
    const offset = Number(new URL(url, location.origin).searchParams.get("offset") || 0);
    const userNames = new Map(state.users.map((u) => [u.id, u.name]));
    const rows = data.map((k) => el("tr", {},
      el("td", { text: k.name }),
      el("td", { text: k.description || "" }),
      el("td", { class: "scopes-cell", text: (k.scopes || []).join(", ") }),
      el("td", { text: userNames.get(k.user_id) || k.user_id }),
      el("td", { text: k.permissions }),
      el("td", { text: formatTime(k.created_at) }),
      el("td", { text: formatTime(k.last_used_at) }),
      el("td", { text: formatTime(k.expires_at) }),
      el("td", { class: "actions-cell" },
        deleteButton(k.name, (ev) => confirmDelete("Delete API key " + k.name + "?",
          "Anything using the key " + k.name + " is refused from its next request on. This cannot be undone.",
          ev.currentTarget, async () => {
            await api("DELETE", "/api_keys/" + encodeURIComponent(k.id));
            setStatus("Deleted API key " + k.name + ".");
            await loadKeys(state.keysURL);
            if ($("keys-rows").children.length === 0 && state.keysPrev.length > 0) {
              await loadKeys(state.keysPrev.pop());
            }
          })))));
    if (rows.length === 0) {
      const q = $("keys-search").value.trim();
      rows.push(el("tr", {}, el("td", { colspan: "9", class: "empty", text: q ? "No API key matches \u201c" + q + "\u201d." : "No API keys in this domain yet." })));
    }
    $("keys-rows").replaceChildren(...rows);
    const shown = data.length;
    $("keys-count").textContent = total === 0 ? "0 keys" :
      (shown === 0 ? "none of " + total : (offset + 1) + "\u2013" + (offset + shown) + " of " + total) + (total === 1 ? " key" : " keys");
    const next = nextLink(headers);
    $("keys-next").disabled = !next;
    $("keys-next").dataset.url = next;
    $("keys-prev").disabled = state.keysPrev.length === 0;
  }

  $("keys-next").addEventListener("click", (ev) => {
    const next = ev.currentTarget.dataset.url;
    if (!next) return;
    state.keysPrev.push(state.keysURL);
    loadKeys(next).catch(report);
  });
  $("keys-prev").addEventListener("click", () => {
    if (state.keysPrev.length === 0) return;
    loadKeys(state.keysPrev.pop()).catch(report);
  });
  $("keys-search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    showPageError("");
    loadKeys(keysFirstPage()).catch(report);
  });

  // The scope choices: none, read, write, or read + write (the bare scope name). guest has no read or
  // write form: it is all or nothing.
  function scopeChoices(name) {
    if (name === "guest") return [["", "none"], ["guest", "guest"]];
    return [["", "none"], [name + ".read", "read"], [name + ".write", "write"], [name, "read + write"]];
  }

  async function renderScopeChoices() {
    if (!state.scopes) {
      const { data } = await api("GET", "/scopes");
      state.scopes = data;
    }
    const grid = $("key-scopes");
    grid.replaceChildren(...state.scopes.map((name) => {
      const id = "scope-" + name;
      const sel = el("select", { id, "data-scope": name });
      for (const [value, label] of scopeChoices(name)) sel.append(el("option", { value, text: label }));
      return el("div", { class: "scope" }, el("label", { for: id, text: name }), sel);
    }));
  }

  // The Backoffice lists, for a key, only users whose own level allows the permissions chosen.
  function renderUserChoices() {
    const sel = $("key-user");
    const previous = sel.value;
    const wanted = LEVELS.indexOf($("key-permissions").value);
    const allowed = state.users.filter((u) => LEVELS.indexOf(userLevel(u)) >= wanted);
    sel.replaceChildren(el("option", { value: "", text: allowed.length ? "Choose a user" : "No user of this domain has this level" }),
      ...allowed.map((u) => el("option", { value: u.id, text: u.name + " <" + u.email + "> (" + userLevel(u) + ")" })));
    sel.value = allowed.some((u) => u.id === previous) ? previous : "";
  }
  $("key-permissions").addEventListener("change", renderUserChoices);

  $("add-key").addEventListener("click", async (ev) => {
    const opener = ev.currentTarget;
    showPageError("");
    try {
      await loadUsers();
      await renderScopeChoices();
    } catch (err) {
      report(err);
      return;
    }
    clearFormErrors("key");
    $("key-form").reset();
    $("key-permissions").value = "user";
    renderUserChoices();
    const domain = state.domains.find((d) => d.id === state.domainId);
    $("key-dialog-title").textContent = "Add API key" + (domain ? " to " + domain.name : "");
    openDialog($("key-dialog"), opener);
    $("key-name").focus();
  });

  $("key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearFormErrors("key");
    const scopes = Array.from($("key-scopes").querySelectorAll("select")).map((s) => s.value).filter((v) => v);
    const expires = $("key-expires").value;
    const body = {
      name: $("key-name").value.trim(),
      description: $("key-description").value,
      scopes,
      user_id: $("key-user").value,
      permissions: $("key-permissions").value,
      expires_at: expires ? Math.floor(new Date(expires).getTime() / 1000) : null,
    };
    try {
      const { data } = await api("POST", "/api_keys", body);
      closeDialog($("key-dialog"));
      showCreatedKey(data);
      await loadKeys(keysFirstPage());
    } catch (err) {
      showFormError("key", err);
    }
  });

  // The plaintext is shown once, in a read-only field; closing the dialog forgets it.
  function showCreatedKey(k) {
    $("created-title").textContent = "API key \u201c" + k.name + "\u201d created";
    $("created-key").value = k.x_api_key;
    $("copy-status").textContent = "";
    openDialog($("created-dialog"), $("add-key"));
    $("created-key").select();
  }
  $("copy-key").addEventListener("click", async () => {
    const input = $("created-key");
    try {
      await navigator.clipboard.writeText(input.value);
      $("copy-status").textContent = "Copied to the clipboard.";
    } catch (e) {
      input.focus();
      input.select();
      const ok = document.execCommand && document.execCommand("copy");
      $("copy-status").textContent = ok ? "Copied to the clipboard." : "Copy failed: the key is selected, copy it with Ctrl+C.";
    }
  });
  $("created-done").addEventListener("click", () => closeDialog($("created-dialog")));
  $("created-dialog").addEventListener("close", () => { $("created-key").value = ""; });

  // ---- Start --------------------------------------------------------------------------------

  async function resume() {
    const key = storedKey();
    if (!key) { signOut(""); return; }
    try {
      const { data } = await api("GET", "/api_keys/inspect");
      if (data.permissions !== "admin" && data.permissions !== "admin_support") {
        signOut("This key's level is now " + data.permissions + ": sign in with an admin key.");
        return;
      }
      await startSession(data);
    } catch (err) {
      if (err.status !== 401 && !err.stale) signOut(err.message);
    }
  }
  resume();
})();
