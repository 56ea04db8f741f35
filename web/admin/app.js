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
  const AUDIT_PAGE_SIZE = 25;
  const VIEWS = ["keys", "users", "domains", "audit", "import"];
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
      audit: {},         // the audit log's filters: target, actor, action, since, until
      auditOffset: 0,    // the audit page shown
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

  // ApiError is an answer other than 2xx: its status, message, 422 failures and whole body
  // (an import's 409 carries its report).
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error) || "HTTP " + status);
      this.status = status;
      this.failures = (body && Array.isArray(body.failures)) ? body.failures : [];
      this.body = body;
    }
  }

  // RawBody is a request body sent as it is, with its own Content-Type (an import's file),
  // where every other body is JSON.
  class RawBody {
    constructor(data, type) {
      this.data = data;
      this.type = type;
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
    if (body instanceof RawBody) {
      headers["Content-Type"] = body.type;
      init.body = body.data;
    } else if (body !== undefined) {
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

  function formatTime(unix, seconds) {
    if (unix === null || unix === undefined) return "never";
    const d = new Date(unix * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + (seconds ? ":" + pad(d.getSeconds()) : "");
  }

  // localInput is unix as a datetime-local field's value (local time, to the minute); the
  // field's value back to Unix seconds is fromLocalInput.
  function localInput(unix) {
    if (unix === null || unix === undefined) return "";
    const d = new Date(unix * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes());
  }
  function fromLocalInput(value) {
    return value ? Math.floor(new Date(value).getTime() / 1000) : null;
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
      const text = fieldWords(f.field) + " " + f.reason;
      p.textContent = p.textContent ? p.textContent + "; " + text : text;
      // The inputs the message describes; of several (a rate limit's rate and burst), those
      // whose data-failure is the reason's first word ("rate must be ...", "burst must be ...").
      const described = Array.from(document.querySelectorAll("[aria-describedby~='" + p.id + "']"));
      const word = String(f.reason).split(" ")[0];
      const named = described.filter((i) => !i.dataset.failure || i.dataset.failure === word);
      for (const input of (named.length ? named : described)) {
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

  // fieldWords names a failure's field as its label does: "user_id" is "user", "allowed_cidrs"
  // the allowed networks.
  function fieldWords(field) {
    if (field === "allowed_cidrs") return "allowed networks:";
    if (field === "rate_limit") return "rate limit:";
    return field.replace(/_id$/, "").replace(/_/g, " ");
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
      // returnFocusTo is the opener, or a function finding it: a list redrawn while the dialog
      // was open has replaced the button that opened it.
      const back = typeof d.returnFocusTo === "function" ? d.returnFocusTo() : d.returnFocusTo;
      if (back && document.contains(back)) back.focus();
    });
    d.querySelectorAll("button.cancel").forEach((b) => b.addEventListener("click", () => closeDialog(d)));
  });

  // confirmDelete asks before deleting; run does the delete and may throw an ApiError.
  function confirmDelete(title, text, opener, run) {
    confirmAction(title, text, "Delete", "danger", opener, run);
  }

  // confirmAction asks before an action: Cancel focused, the action's button (label, class)
  // runs it; an ApiError run throws is shown in the confirmation.
  function confirmAction(title, text, label, kind, opener, run) {
    const d = $("confirm-dialog");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-error").hidden = true;
    const ok = $("confirm-ok");
    const fresh = ok.cloneNode(true); // drop the previous confirmation's listener
    fresh.textContent = label;
    fresh.className = kind;
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

  function rotateButton(k, onClick) {
    return el("button", { type: "button", "aria-label": "Rotate " + k.name, "data-rotate": k.id, onclick: onClick }, el("span", { text: "Rotate" }));
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
    editingKey = null;
    rotatingKey = null;
    document.querySelectorAll("dialog[open]").forEach((d) => d.close());
    document.querySelectorAll("dialog").forEach((d) => { d.returnFocusTo = null; });
    document.querySelectorAll("form").forEach((f) => f.reset());
    for (const prefix of ["key", "user", "domain", "rotate", "import"]) clearFormErrors(prefix);
    clearImportReport();
    importBusy = false; // the request of the ended session is aborted; its answer is ignored
    $("import-dry-run").disabled = false;
    $("import-run").disabled = false;
    for (const id of ["keys-rows", "users-rows", "domains-rows", "audit-rows", "domain-select", "users-domain-select", "key-scopes", "key-user"]) {
      $(id).replaceChildren();
    }
    for (const id of ["keys-count", "users-count", "domains-count", "audit-count", "session-who", "created-title", "created-note", "copy-status",
      "confirm-title", "confirm-text", "confirm-error", "rotate-text", "key-scopes-extra"]) {
      $(id).textContent = "";
    }
    $("confirm-error").hidden = true;
    $("created-note").hidden = true;
    $("key-scopes-extra").hidden = true;
    $("rotate-dialog-title").textContent = "Rotate API key";
    $("key-dialog-title").textContent = "Add API key";
    $("user-dialog-title").textContent = "Add user";
    $("domain-dialog-title").textContent = "Add domain";
    $("created-key").value = "";
    $("keys-search").value = "";
    $("signin-key").value = "";
    $("keys-next").disabled = true;
    $("keys-next").dataset.url = "";
    $("keys-prev").disabled = true;
    $("audit-next").disabled = true;
    $("audit-prev").disabled = true;
    document.querySelectorAll(".nav-link").forEach((b) => {
      if (b.dataset.view === "keys") b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    });
    $("nav").hidden = true;
    $("session").hidden = true;
    showPageError("");
    setStatus("");
    for (const v of VIEWS) $(v + "-view").hidden = true;
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
    for (const v of VIEWS) $(v + "-view").hidden = v !== view;
    document.querySelectorAll(".nav-link").forEach((b) => {
      if (b.dataset.view === view) b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    });
    if (view === "keys") { await loadUsers(); await loadKeys(keysFirstPage()); }
    if (view === "users") await loadUsers(true);
    if (view === "domains") await loadDomains(true);
    if (view === "audit") await loadAudit(state.auditOffset);
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

  // keyState is the key's state as the API gives it (active, rotating during a rotation's
  // overlap, expired), or, from an API without the field, as the same rule computes it.
  function keyState(k) {
    if (k.state) return k.state;
    if (k.expires_at !== null && k.expires_at !== undefined && k.expires_at * 1000 <= Date.now()) return "expired";
    return k.replaced_by ? "rotating" : "active";
  }

  // keyLabel names a key in its row's buttons: a rotated key and the key that replaced it share
  // a name, so the old one says so, and in which state it is.
  function keyLabel(k) {
    return k.replaced_by ? k.name + " (old key, " + keyState(k) + ")" : k.name;
  }

  function stateCell(k) {
    const st = keyState(k);
    const cell = el("td", { class: "state-cell" }, el("span", { class: "state state-" + st, text: st }));
    if (k.replaced_by && st === "rotating") cell.append(el("span", { class: "hint", text: "replaced by a new key; works until it expires" }));
    else if (k.replaced_by) cell.append(el("span", { class: "hint", text: "replaced by a new key" }));
    else if (k.rotated_from) cell.append(el("span", { class: "hint", text: "new key of a rotation" }));
    return cell;
  }

  function limitsCell(k) {
    const cidrs = k.allowed_cidrs || [];
    const rl = k.rate_limit;
    return el("td", { class: "limits-cell" },
      el("span", { text: cidrs.length ? "from " + cidrs.join(", ") : "any network" }),
      el("span", { text: rl ? rl.rate + " per second, burst " + rl.burst : "no rate limit" }));
  }

  async function loadKeys(url) {
    if (!state.domainId) { $("keys-rows").replaceChildren(); return; }
    const { data, headers } = await api("GET", url);
    state.keysURL = url;
    const total = Number(headers.get("X-Total-Count") || data.length);
    const offset = Number(new URL(url, location.origin).searchParams.get("offset") || 0);
    const userNames = new Map(state.users.map((u) => [u.id, u.name]));
    const rows = data.map((k) => {
      const actions = el("td", { class: "actions-cell" },
        editButton(keyLabel(k), (ev) => openKeyForm(k, ev.currentTarget).catch(report)));
      // A replaced key cannot be rotated again (409), nor an expired one: nothing to overlap.
      if (!k.replaced_by && keyState(k) !== "expired") {
        actions.append(rotateButton(k, (ev) => openRotateForm(k, ev.currentTarget)));
      }
      actions.append(deleteButton(keyLabel(k), (ev) => confirmDelete("Delete API key " + keyLabel(k) + "?",
        "Anything using the key " + keyLabel(k) + " is refused from its next request on. This cannot be undone.",
        ev.currentTarget, async () => {
          await api("DELETE", "/api_keys/" + encodeURIComponent(k.id));
          setStatus("Deleted API key " + keyLabel(k) + ".");
          await loadKeys(state.keysURL);
          if ($("keys-rows").children.length === 0 && state.keysPrev.length > 0) {
            await loadKeys(state.keysPrev.pop());
          }
        })));
      return el("tr", { "data-key": k.id },
        el("td", { text: k.name }),
        el("td", { text: k.description || "" }),
        el("td", { class: "scopes-cell", text: (k.scopes || []).join(", ") }),
        el("td", { text: userNames.get(k.user_id) || k.user_id }),
        el("td", { text: k.permissions }),
        stateCell(k),
        limitsCell(k),
        el("td", { text: formatTime(k.created_at) }),
        el("td", { text: formatTime(k.last_used_at) }),
        el("td", { text: formatTime(k.expires_at) }),
        actions);
    });
    if (rows.length === 0) {
      const q = $("keys-search").value.trim();
      rows.push(el("tr", {}, el("td", { colspan: "11", class: "empty", text: q ? "No API key matches \u201c" + q + "\u201d." : "No API keys in this domain yet." })));
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

  // scopeChoice is the choice for the scope name that a key holding held shows: read + write
  // for the bare name or both halves.
  function scopeChoice(name, held) {
    if (name === "guest") return held.has("guest") ? "guest" : "";
    const r = held.has(name + ".read"), w = held.has(name + ".write");
    if (held.has(name) || (r && w)) return name;
    return r ? name + ".read" : w ? name + ".write" : "";
  }

  async function renderScopeChoices(held) {
    if (!state.scopes) {
      const { data } = await api("GET", "/scopes");
      state.scopes = data;
    }
    const grid = $("key-scopes");
    grid.replaceChildren(...state.scopes.map((name) => {
      const id = "scope-" + name;
      const sel = el("select", { id, "data-scope": name });
      for (const [value, label] of scopeChoices(name)) sel.append(el("option", { value, text: label }));
      sel.value = scopeChoice(name, held);
      return el("div", { class: "scope" }, el("label", { for: id, text: name }), sel);
    }));
  }

  // otherScopes are the scopes of a key that the choices cannot show (a scope the active route
  // table does not know): an edit keeps them as they are.
  function otherScopes(scopes) {
    const known = new Set();
    for (const name of state.scopes || []) {
      for (const [value] of scopeChoices(name)) if (value) known.add(value);
    }
    return scopes.filter((s) => !known.has(s));
  }

  // The Backoffice lists, for a key, only users whose own level allows the permissions chosen.
  // A key's user cannot change: editing shows only its own.
  function renderUserChoices() {
    const sel = $("key-user");
    $("key-user-hint").textContent = editingKey ? "A key's user cannot be changed: add a key for another user." :
      "Only users whose level allows the chosen permissions are listed.";
    if (editingKey) {
      const u = state.users.find((x) => x.id === editingKey.user_id);
      sel.replaceChildren(el("option", { value: editingKey.user_id, text: u ? u.name + " <" + u.email + "> (" + userLevel(u) + ")" : editingKey.user_id }));
      sel.disabled = true;
      return;
    }
    sel.disabled = false;
    const previous = sel.value;
    const wanted = LEVELS.indexOf($("key-permissions").value);
    const allowed = state.users.filter((u) => LEVELS.indexOf(userLevel(u)) >= wanted);
    sel.replaceChildren(el("option", { value: "", text: allowed.length ? "Choose a user" : "No user of this domain has this level" }),
      ...allowed.map((u) => el("option", { value: u.id, text: u.name + " <" + u.email + "> (" + userLevel(u) + ")" })));
    sel.value = allowed.some((u) => u.id === previous) ? previous : "";
  }
  $("key-permissions").addEventListener("change", renderUserChoices);

  // The key form adds a key (editingKey null) or edits one: then it sends only what changed,
  // so that an edit never rewrites a field the administrator did not touch.
  let editingKey = null;
  let keyFormBefore = null; // the form's values as opened, for an edit

  async function openKeyForm(k, opener) {
    showPageError("");
    await loadUsers();
    editingKey = k;
    clearFormErrors("key");
    $("key-form").reset();
    await renderScopeChoices(new Set(k ? k.scopes || [] : []));
    const extra = k ? otherScopes(k.scopes || []) : [];
    $("key-scopes-extra").textContent = extra.length ? "Also holds, kept as they are: " + extra.join(", ") : "";
    $("key-scopes-extra").hidden = extra.length === 0;
    // A key replaced by a rotation keeps its name: the name is the new key's now (409).
    $("key-name").readOnly = !!(k && k.replaced_by);
    if (k) {
      $("key-dialog-title").textContent = "Edit API key " + keyLabel(k);
      $("key-name").value = k.name;
      $("key-description").value = k.description || "";
      $("key-permissions").value = k.permissions;
      $("key-expires").value = localInput(k.expires_at);
      $("key-cidrs").value = (k.allowed_cidrs || []).join("\n");
      $("key-rate").value = k.rate_limit ? String(k.rate_limit.rate) : "";
      $("key-burst").value = k.rate_limit ? String(k.rate_limit.burst) : "";
    } else {
      const domain = state.domains.find((d) => d.id === state.domainId);
      $("key-dialog-title").textContent = "Add API key" + (domain ? " to " + domain.name : "");
      $("key-permissions").value = "user";
    }
    renderUserChoices();
    keyFormBefore = k ? keyFormValues() : null;
    openDialog($("key-dialog"), opener);
    $("key-name").focus();
  }
  $("add-key").addEventListener("click", (ev) => openKeyForm(null, ev.currentTarget).catch(report));

  // keyFormValues is what the form holds, as text, to compare an edit with the key it opened.
  function keyFormValues() {
    const extra = editingKey ? otherScopes(editingKey.scopes || []) : [];
    const chosen = Array.from($("key-scopes").querySelectorAll("select")).map((s) => s.value).filter((v) => v);
    return {
      name: $("key-name").value.trim(),
      description: $("key-description").value,
      scopes: chosen.concat(extra),
      permissions: $("key-permissions").value,
      expires: $("key-expires").value,
      cidrs: parseCIDRs($("key-cidrs").value),
      rate: $("key-rate").value.trim(),
      burst: $("key-burst").value.trim(),
    };
  }

  // parseCIDRs splits the allowed networks at line breaks, commas and spaces.
  function parseCIDRs(text) {
    return text.split(/[\s,]+/).filter((s) => s);
  }

  // rateLimit is the rate limit the form asks for (null: none), or throws the failures of a
  // number the field could not read; the API judges the rest (rate above 0, burst at least 1).
  function rateLimit(v) {
    const failures = [];
    if ($("key-rate").validity.badInput) failures.push({ field: "rate_limit", reason: "rate is not a number" });
    if ($("key-burst").validity.badInput || (v.burst !== "" && !Number.isInteger(Number(v.burst)))) {
      failures.push({ field: "rate_limit", reason: "burst must be a whole number" });
    }
    if (failures.length) throw new ApiError(422, { error: "validation failed", failures });
    if (v.rate === "" && v.burst === "") return null;
    return { rate: v.rate === "" ? 0 : Number(v.rate), burst: v.burst === "" ? 0 : Number(v.burst) };
  }

  $("key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearFormErrors("key");
    const v = keyFormValues();
    try {
      const limit = rateLimit(v);
      if (editingKey) {
        const before = keyFormBefore;
        const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
        const body = {};
        if (v.name !== before.name) body.name = v.name;
        if (v.description !== before.description) body.description = v.description;
        if (!same([...v.scopes].sort(), [...before.scopes].sort())) body.scopes = v.scopes;
        if (v.permissions !== before.permissions) body.permissions = v.permissions;
        if (v.expires !== before.expires) body.expires_at = fromLocalInput(v.expires);
        if (!same(v.cidrs, before.cidrs)) body.allowed_cidrs = v.cidrs;
        if (v.rate !== before.rate || v.burst !== before.burst) body.rate_limit = limit;
        const name = keyLabel(editingKey);
        if (Object.keys(body).length > 0) {
          await api("PATCH", "/api_keys/" + encodeURIComponent(editingKey.id), body);
          setStatus("Saved API key " + name + ".");
        } else {
          setStatus("Nothing changed in API key " + name + ".");
        }
        closeDialog($("key-dialog"));
        await loadKeys(state.keysURL);
        return;
      }
      const body = {
        name: v.name,
        description: v.description,
        scopes: v.scopes,
        user_id: $("key-user").value,
        permissions: v.permissions,
        expires_at: fromLocalInput(v.expires),
      };
      // Limits only when asked for: a key without them is the key of before they existed.
      if (v.cidrs.length) body.allowed_cidrs = v.cidrs;
      if (limit) body.rate_limit = limit;
      const { data } = await api("POST", "/api_keys", body);
      closeDialog($("key-dialog"));
      showCreatedKey(data, { returnTo: $("add-key") });
      await loadKeys(keysFirstPage());
    } catch (err) {
      showFormError("key", err);
    }
  });
  $("key-dialog").addEventListener("close", () => { editingKey = null; keyFormBefore = null; });

  // ---- Rotation -----------------------------------------------------------------------------

  // Rotating a key makes a new one (shown once, as a created key) with everything of the old
  // one; the old key keeps working for the overlap, never past its own expiry (docs/keys.md).
  let rotatingKey = null;
  function openRotateForm(k, opener) {
    rotatingKey = k;
    clearFormErrors("rotate");
    showPageError("");
    $("rotate-dialog-title").textContent = "Rotate API key " + k.name + "?";
    $("rotate-text").textContent = "A new key replaces " + k.name + ", with the same name, description, scopes, user, " +
      "permissions, limits and expiry; it is shown once. The old key keeps working for the overlap" +
      (k.expires_at ? " (not past its own expiry, " + formatTime(k.expires_at) + ")" : "") + ", then stops.";
    $("rotate-overlap").value = "24h";
    openDialog($("rotate-dialog"), opener);
    $("rotate-overlap").focus();
    $("rotate-overlap").select();
  }

  // overlapDuration reads the overlap field as the API's Go duration; days ("7d"), which Go's
  // durations do not have, are turned into hours. Anything else is left for the API to judge.
  function overlapDuration(text) {
    const t = text.trim();
    const days = t.match(/^(\d+(?:\.\d+)?)\s*d(?:ays?)?$/i);
    return days ? String(Number(days[1]) * 24) + "h" : t;
  }

  $("rotate-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearFormErrors("rotate");
    const k = rotatingKey;
    if (!k) return;
    const overlap = overlapDuration($("rotate-overlap").value);
    const submit = $("rotate-form").querySelector("button[type=submit]");
    submit.disabled = true;
    let data;
    try {
      ({ data } = await api("POST", "/api_keys/" + encodeURIComponent(k.id) + "/rotate", overlap === "" ? {} : { overlap }));
    } catch (err) {
      showFormError("rotate", err);
      return;
    } finally {
      submit.disabled = false;
    }
    closeDialog($("rotate-dialog"));
    // Focus goes back to the new key's Rotate button once the list shows it (the list is
    // redrawn, the button that opened the rotation is gone).
    const findNew = () => document.querySelector("button[data-rotate='" + data.id + "']") || $("add-key");
    showCreatedKey(data, { rotated: true, returnTo: findNew });
    setStatus("Rotated API key " + k.name + ".");
    try {
      // When the old key stops: its expires_at as the rotation left it.
      const [{ data: old }] = await Promise.all([api("GET", "/api_keys/" + encodeURIComponent(k.id)), loadKeys(state.keysURL)]);
      if ($("created-dialog").open && $("created-key").value === data.x_api_key) {
        const ends = old.expires_at;
        $("created-note").textContent = ends !== null && ends * 1000 <= Date.now() ?
          "The old key no longer works." :
          "The old key keeps working until " + formatTime(ends) + ", then stops: move its clients to the new key before then.";
        $("created-note").hidden = false;
      }
    } catch (err) {
      report(err);
    }
  });
  $("rotate-dialog").addEventListener("close", () => { rotatingKey = null; });

  // ---- The key, shown once --------------------------------------------------------------------

  // The plaintext is shown once, in a read-only field; closing the dialog forgets it.
  function showCreatedKey(k, how) {
    $("created-title").textContent = "API key \u201c" + k.name + "\u201d " + (how.rotated ? "rotated: the new key" : "created");
    $("created-key").value = k.x_api_key;
    $("copy-status").textContent = "";
    $("created-note").textContent = "";
    $("created-note").hidden = true;
    openDialog($("created-dialog"), how.returnTo);
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
  $("created-dialog").addEventListener("close", () => {
    $("created-key").value = "";
    $("created-note").textContent = "";
    $("created-note").hidden = true;
  });

  // ---- Audit log ----------------------------------------------------------------------------

  // The audit log (GET /audit, docs/audit.md): every admin write, newest first, filtered by
  // target, actor, action and time, a page at a time (offset and X-Total-Count).
  function auditURL(offset) {
    const q = new URLSearchParams();
    for (const name of ["target", "actor", "action", "since", "until"]) {
      if (state.audit[name]) q.set(name, state.audit[name]);
    }
    q.set("limit", String(AUDIT_PAGE_SIZE));
    q.set("offset", String(offset));
    return API + "/audit?" + q.toString();
  }

  // auditValue shows one old or new value of a change: times as times, text as it is, lists
  // of text joined, the rest as JSON; null as "none", an empty text or list as "(empty)".
  function auditValue(field, v) {
    if (v === null || v === undefined) return "none";
    if (typeof v === "number" && /_at$/.test(field)) return formatTime(v, true);
    if (field === "rate_limit" && typeof v === "object") return v.rate + " per second, burst " + v.burst;
    const text = typeof v === "string" ? v : Array.isArray(v) && v.every((x) => typeof x === "string") ? v.join(", ") : JSON.stringify(v);
    if (text === "") return "(empty)";
    return text.length > 200 ? text.slice(0, 200) + "\u2026" : text;
  }

  function auditChanges(r) {
    const list = el("ul", { class: "changes" });
    for (const c of r.changes || []) {
      const before = auditValue(c.field, c.old), after = auditValue(c.field, c.new);
      const item = el("li", {}, el("span", { class: "change-field", text: c.field + ": " }));
      if (r.action === "create") item.append(el("span", { text: after }));
      else if (r.action === "delete") item.append(el("del", { text: before }));
      else item.append(el("del", { text: before }), el("span", { text: " \u2192 " }), el("ins", { text: after }));
      list.append(item);
    }
    const cascade = r.cascade || [];
    if (cascade.length) {
      const counts = {};
      for (const t of cascade) counts[t.kind] = (counts[t.kind] || 0) + 1;
      list.append(el("li", { class: "hint", text: "with it: " + Object.entries(counts).map(([kind, n]) => n + " " + kind + (n === 1 ? "" : "s")).join(", ") }));
    }
    if (!list.children.length) list.append(el("li", { class: "hint", text: "no field changed" }));
    return list;
  }

  // A filter button: an id in the log that, pressed, shows only the records about it.
  function filterButton(name, value, label, text) {
    return el("button", { type: "button", class: "link", "aria-label": label, onclick: () => {
      $("audit-" + name).value = value;
      readAuditFilters();
      loadAudit(0).catch(report);
    } }, el("span", { text }));
  }

  async function loadAudit(offset) {
    const { data, headers } = await api("GET", auditURL(offset));
    state.auditOffset = offset;
    const total = Number(headers.get("X-Total-Count") || data.length);
    const names = new Map(state.users.map((u) => [u.id, u.name]));
    if (state.me) names.set(state.me.user.id, state.me.user.name);
    const rows = data.map((r) => {
      const actor = el("td", { class: "id-cell" });
      if (r.actor_key_id) actor.append(filterButton("actor", r.actor_key_id, "Show the records made with key " + r.actor_key_id, "key " + r.actor_key_id));
      if (r.actor_user_id) {
        const who = names.get(r.actor_user_id);
        actor.append(filterButton("actor", r.actor_user_id, "Show the records made by user " + (who || r.actor_user_id),
          "user " + (who ? who + " (" + r.actor_user_id + ")" : r.actor_user_id)));
      }
      if (!actor.children.length) actor.append(el("span", { class: "hint", text: "no API caller (bootstrap, CLI)" }));
      return el("tr", {},
        el("td", { text: formatTime(r.time, true) }),
        actor,
        el("td", { text: r.action }),
        el("td", { class: "id-cell" }, filterButton("target", r.target_id, "Show the records of " + r.target_kind + " " + r.target_id, r.target_kind + " " + r.target_id)),
        el("td", { class: "changes-cell" }, auditChanges(r)),
        el("td", { class: "id-cell", text: r.request_id || "" }));
    });
    if (rows.length === 0) {
      const filtered = Object.values(state.audit).some((v) => v);
      rows.push(el("tr", {}, el("td", { colspan: "6", class: "empty", text: filtered ? "No audit record matches these filters." : "No audit records yet." })));
    }
    $("audit-rows").replaceChildren(...rows);
    const shown = data.length;
    $("audit-count").textContent = total === 0 ? "0 records" :
      (shown === 0 ? "none of " + total : (offset + 1) + "\u2013" + (offset + shown) + " of " + total) + (total === 1 ? " record" : " records");
    $("audit-next").disabled = offset + shown >= total || shown === 0;
    $("audit-prev").disabled = offset === 0;
  }

  // readAuditFilters takes the filter fields into the state: times as Unix seconds.
  function readAuditFilters() {
    const since = fromLocalInput($("audit-since").value), until = fromLocalInput($("audit-until").value);
    state.audit = {
      target: $("audit-target").value.trim(),
      actor: $("audit-actor").value.trim(),
      action: $("audit-action").value,
      since: since === null ? "" : String(since),
      until: until === null ? "" : String(until),
    };
  }

  $("audit-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    showPageError("");
    readAuditFilters();
    loadAudit(0).catch(report);
  });
  $("audit-clear").addEventListener("click", () => {
    $("audit-form").reset();
    showPageError("");
    readAuditFilters();
    loadAudit(0).catch(report);
  });
  $("audit-next").addEventListener("click", () => loadAudit(state.auditOffset + AUDIT_PAGE_SIZE).catch(report));
  $("audit-prev").addEventListener("click", () => loadAudit(Math.max(0, state.auditOffset - AUDIT_PAGE_SIZE)).catch(report));

  // ---- Import from PlaceOS ------------------------------------------------------------------

  // The PlaceOS import (POST /import/placeos, docs/import.md): the chosen file is posted as it
  // is, as CSV or JSON lines, and the report shown: counts and every row's outcome (200, or a
  // 409's conflicts), the bad rows by line (422), or what the key may not import (403).
  const IMPORT_MAX_BYTES = 1 << 20; // the API's limit on a request body
  let importBusy = false;
  let importShown = null; // {file, result} of the report shown, to recall a dry run's counts

  // importMediaType is the file's Content-Type, as the CLI chooses it: by its name's ending,
  // else JSON lines if its first character (after a BOM and blanks) is "{", else CSV.
  async function importMediaType(file) {
    const name = file.name.toLowerCase();
    if (name.endsWith(".csv")) return "text/csv";
    if (name.endsWith(".jsonl") || name.endsWith(".ndjson") || name.endsWith(".json")) return "application/x-ndjson";
    const head = (await file.slice(0, 4096).text()).replace(/^\uFEFF/, "").trimStart();
    return head.startsWith("{") ? "application/x-ndjson" : "text/csv";
  }

  function clearImportReport() {
    importShown = null;
    for (const id of ["import-counts-rows", "import-records-rows", "import-failures-rows"]) $(id).replaceChildren();
    for (const id of ["import-report-title", "import-bad-title", "import-status"]) $(id).textContent = "";
    $("import-report").hidden = true;
    $("import-bad").hidden = true;
  }

  // countsText is "1 domain, 2 users, 0 keys".
  function countsText(c) {
    const n = (x, one, many) => x + " " + (x === 1 ? one : many);
    return n(c.domains, "domain", "domains") + ", " + n(c.users, "user", "users") + ", " + n(c.keys, "key", "keys");
  }

  // showImportReport shows an import's report: the counts by outcome and every row of the file.
  function showImportReport(file, r, refused) {
    importShown = { file, result: r };
    const conflicts = r.conflicts ? r.conflicts.domains + r.conflicts.users + r.conflicts.keys : 0;
    const title = r.dry_run && conflicts > 0 ? "Dry run of " + file.name + ": " + conflicts +
        (conflicts === 1 ? " conflict" : " conflicts") + ", so the import would be refused (nothing was written)" :
      r.dry_run ? "Dry run of " + file.name + ": nothing was written" :
      refused ? "Import of " + file.name + " refused: nothing was imported" :
      r.imported ? "Imported " + file.name : "Import of " + file.name + ": nothing new to write";
    $("import-report-title").textContent = title;
    const c = (x) => x || { domains: 0, users: 0, keys: 0 };
    const rows = [
      [r.dry_run ? "would be created" : refused ? "to create" : "created", c(r.created)],
      ["unchanged", c(r.unchanged)],
      ["conflicts", c(r.conflicts)],
    ].map(([label, n]) => el("tr", {},
      el("th", { scope: "row", text: label }),
      el("td", { text: String(n.domains) }), el("td", { text: String(n.users) }), el("td", { text: String(n.keys) })));
    $("import-counts-rows").replaceChildren(...rows);
    const kinds = { domain: "domain", user: "user", key: "API key" };
    const outcome = { create: r.dry_run || refused ? "would be created" : "created", unchanged: "unchanged", conflict: "conflict" };
    const records = (r.records || []).map((x) => el("tr", { class: "outcome-" + x.action },
      el("td", { text: String(x.line) }),
      el("td", { text: kinds[x.kind] || x.kind }),
      el("td", { class: "id-cell", text: x.id }),
      el("td", { text: outcome[x.action] || x.action }),
      el("td", { text: x.reason || "" })));
    if (records.length === 0) records.push(el("tr", {}, el("td", { colspan: "5", class: "empty", text: "The file holds no rows." })));
    $("import-records-rows").replaceChildren(...records);
    $("import-report").hidden = false;
    const summary = "created " + countsText(c(r.created)) + "; unchanged " + countsText(c(r.unchanged)) +
      "; conflicts " + countsText(c(r.conflicts)) + ".";
    // A refused import is said by the alert at the top of the form.
    if (!refused) setImportStatus(title + ". " + (r.dry_run ? "The import would have " : "") + summary);
  }

  // setImportStatus says the outcome in the import's live region, for screen readers: the
  // report shows it on the page.
  function setImportStatus(message) {
    $("import-status").textContent = message;
  }

  // showImportFailures lists a 422's bad rows by line beside the file field.
  function showImportFailures(file, err) {
    const rows = err.failures.map((f) => {
      const line = String(f.field).replace(/^line /, "");
      return el("tr", {}, el("td", { text: line }), el("td", { text: f.reason }));
    });
    $("import-failures-rows").replaceChildren(...rows);
    const n = err.failures.length;
    const text = file.name + " has " + n + (n === 1 ? " bad row" : " bad rows") + ", listed below: nothing was imported.";
    $("import-bad-title").textContent = "Bad rows in " + file.name;
    $("import-bad").hidden = false;
    $("import-file-error").textContent = text;
    $("import-file").setAttribute("aria-invalid", "true"); // the message beside it is an alert
  }

  // runImport posts the chosen file (a dry run or the import) and shows what the API said. It
  // throws only what ends the session (a 401, a stale answer).
  async function runImport(file, dryRun) {
    const type = await importMediaType(file);
    let data, err = null;
    try {
      ({ data } = await api("POST", "/import/placeos" + (dryRun ? "?dry_run=true" : ""), new RawBody(file, type)));
    } catch (e) {
      if (e.stale || e.status === 401) throw e;
      err = e;
    }
    clearFormErrors("import");
    clearImportReport();
    if (!err) {
      showImportReport(file, data, false);
      if (data.imported) await loadDomains(); // the pickers list the domains imported
      return;
    }
    if (err.status === 422 && err.failures.length) {
      showImportFailures(file, err);
      return;
    }
    if (err.status === 409 && err.body && Array.isArray(err.body.records)) {
      showImportReport(file, err.body, !dryRun);
    }
    // 403 (what the key may not import), 409 (conflicts, or too large), 413, 415, 5xx.
    const top = $("import-form-error");
    top.textContent = (dryRun ? "Dry run: " : "Import: ") + err.message;
    top.hidden = false;
  }

  // importFile is the file chosen, or null with the reason beside the field.
  function importFile() {
    clearFormErrors("import");
    const file = $("import-file").files[0];
    let problem = "";
    if (!file) problem = "Choose a PlaceOS export first.";
    else if (file.size > IMPORT_MAX_BYTES) problem = file.name + " is larger than the 1 MiB the API takes in one import: split it (docs/import.md#limits).";
    else if (file.size === 0) problem = file.name + " is empty.";
    if (!problem) return file;
    $("import-file-error").textContent = problem;
    $("import-file").setAttribute("aria-invalid", "true");
    $("import-file").focus();
    return null;
  }

  // importing runs an import request with both buttons disabled, so that one press is one request.
  async function importing(run) {
    if (importBusy) return;
    const mine = session;
    importBusy = true;
    $("import-dry-run").disabled = true;
    $("import-run").disabled = true;
    setImportStatus("Working\u2026");
    try {
      await run();
    } finally {
      if (mine === session) { // else signOut has put them back already
        importBusy = false;
        $("import-dry-run").disabled = false;
        $("import-run").disabled = false;
      }
    }
  }

  // Dry run: the form's submit (Enter in the form runs the harmless one).
  $("import-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const file = importFile();
    if (!file) return;
    importing(() => runImport(file, true)).catch(report);
  });

  // Import: asks first, saying what a dry run of this same file found, if one is shown.
  $("import-run").addEventListener("click", (ev) => {
    const file = importFile();
    if (!file) return;
    const seen = importShown && importShown.file === file && importShown.result.dry_run ? importShown.result : null;
    const text = "The rows of " + file.name + " become domains, users and API keys with their PlaceOS ids, and its keys " +
      "work at once. Everything is imported or nothing; rows already imported are left as they are." +
      (seen ? " The dry run found to create: " + countsText(seen.created) + "; conflicts: " + countsText(seen.conflicts) + "." :
        " No dry run of this file was made: Cancel and press Dry run to see what it would do.");
    confirmAction("Import " + file.name + "?", text, "Import", "primary", ev.currentTarget, async () => {
      await importing(() => runImport(file, false));
    });
  });

  // A new file: the report of the previous one no longer describes it.
  $("import-file").addEventListener("change", () => {
    clearFormErrors("import");
    clearImportReport();
  });

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
