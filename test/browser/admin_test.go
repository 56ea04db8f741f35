package browser

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The booking panel's scopes, from the seed's table of applications.
var bookingPanel = []string{"users.read", "systems.read", "control", "zones.read", "metadata.read"}

// bookingPanelChoices are those scopes as the form's choices: scope select -> option value.
var bookingPanelChoices = [][2]string{
	{"scope-users", "users.read"},
	{"scope-systems", "systems.read"},
	{"scope-control", "control"},
	{"scope-zones", "zones.read"},
	{"scope-metadata", "metadata.read"},
}

// TestSeedFlow walks the seed's Backoffice flow in the page: sign in, pick the domain, add a
// booking-panel key, read it once, use it, reload (it is gone), delete it with the trash icon,
// and see it refused at once.
func TestSeedFlow(t *testing.T) {
	k := startKeyauthz(t)
	home := k.bootstrapDomain(t)
	b := newBrowser(t)

	// The page and its assets load without a key, with the security headers.
	resp, err := http.Get(k.URL + "/admin/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") ||
		resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("GET /admin/: %d %v", resp.StatusCode, resp.Header)
	}

	// 1. Sign in with the bootstrap key.
	b.open(k)
	b.waitFor("the sign-in form", `document.activeElement && document.activeElement.id === "signin-key"`)
	b.shot("sign-in")
	b.signIn(k.AdminKey)
	if got := eval[string](b, `sessionStorage.getItem("keyauthz.adminKey")`); got != k.AdminKey {
		t.Fatalf("sessionStorage holds %q, want the key", got)
	}
	if eval[int](b, `localStorage.length`) != 0 || eval[string](b, `document.cookie`) != "" ||
		strings.Contains(eval[string](b, `location.href`), k.AdminKey) {
		t.Fatal("the key went to localStorage, a cookie or the URL")
	}

	// 2. Domains: add a second one on the Domains page, so that there is a domain to pick.
	b.click(`button[data-view="domains"]`)
	b.waitText("domains-rows", "localhost")
	b.click("#add-domain")
	b.fill("domain-name", "Acme HQ")
	b.fill("domain-host", "acme.example.com")
	b.fill("domain-description", "head office")
	b.click("#domain-form button[type=submit]")
	b.waitText("domains-rows", "acme.example.com")
	b.shot("domains")

	// 3. Users: the panel's user, added on the Users page of the bootstrap domain.
	b.click(`button[data-view="users"]`)
	b.choose("users-domain-select", home.ID)
	b.waitText("users-rows", "admin@localhost")
	b.click("#add-user")
	b.fill("user-name", "Lobby panel")
	b.fill("user-email", "lobby@localhost")
	b.fill("user-groups", "zone-lobby")
	b.click("#user-form button[type=submit]")
	b.waitText("users-rows", "lobby@localhost")
	b.shot("users")

	// 4. Pick the domain: Acme HQ has no key yet; localhost has the bootstrap key.
	b.click(`button[data-view="keys"]`)
	var acme domain
	for _, d := range listDomains(t, k) {
		if d.Domain == "acme.example.com" {
			acme = d
		}
	}
	b.choose("domain-select", acme.ID)
	b.waitText("keys-rows", "No API keys in this domain yet.")
	b.choose("domain-select", home.ID)
	b.waitText("keys-rows", "bootstrap")
	b.shot("keys")

	// 5. Add API key: the booking panel of the seed.
	b.click("#add-key")
	b.waitFor("the key form", `document.getElementById("key-dialog").open && document.getElementById("scope-control")`)
	b.fill("key-name", "Booking panel lobby")
	b.fill("key-description", "Room booking panel at the lobby")
	for _, c := range bookingPanelChoices {
		b.choose(c[0], c[1])
	}
	b.choose("key-permissions", "admin")
	if eval[bool](b, `Array.from(document.getElementById("key-user").options).some((o) => o.text.startsWith("Lobby panel"))`) {
		t.Fatal("a user-level user is offered for an admin key")
	}
	b.choose("key-permissions", "user")
	lobby := userByName(t, k, home, "Lobby panel")
	b.choose("key-user", lobby.ID)
	b.shot("add-key-form")
	b.click("#key-form button[type=submit]")

	// 6. The key, shown once, with Copy and the warning.
	b.waitFor("the new key", `document.getElementById("created-dialog").open && document.getElementById("created-key").value !== ""`)
	plaintext := eval[string](b, `document.getElementById("created-key").value`)
	if !strings.Contains(b.textOf("created-warning"), "will not be shown again") {
		t.Fatalf("warning: %q", b.textOf("created-warning"))
	}
	b.click("#copy-key")
	b.waitFor("the copy status", `document.getElementById("copy-status").innerText !== ""`)
	b.shot("key-shown-once")
	b.click("#created-done")
	b.waitText("keys-rows", "Booking panel lobby")
	b.shot("key-listed")

	// The key the page made is the seed's booking panel.
	var created apiKey
	for _, key := range k.listKeys(t, home) {
		if key.Name == "Booking panel lobby" {
			created = key
		}
	}
	slices.Sort(created.Scopes)
	want := slices.Clone(bookingPanel)
	slices.Sort(want)
	if !slices.Equal(created.Scopes, want) || created.Permissions != "user" || created.UserID != lobby.ID {
		t.Fatalf("created key %+v, want scopes %v, user %s, permissions user", created, want, lobby.ID)
	}

	// 7. Use it: a booking panel reads a system, and may not list keys.
	if v := k.decide(t, plaintext, "GET", "/api/engine/v2/systems/sys-1"); !v.Allow {
		t.Fatalf("GET /systems/sys-1 with the new key: %+v", v)
	}
	if v := k.decide(t, plaintext, "GET", "/api/engine/v2/api_keys"); v.Allow || v.Status != 403 {
		t.Fatalf("GET /api_keys with the new key: %+v, want a 403", v)
	}

	// 8. Reload: the session stays, the key is listed, its plaintext is nowhere.
	b.do("reload", chromedp.Reload())
	b.waitFor("the key list after reload", `!document.getElementById("keys-view").hidden`)
	b.waitText("keys-rows", "Booking panel lobby")
	if b.pageHolds(plaintext) || b.pageHolds(strings.SplitN(plaintext, ".", 2)[1]) {
		t.Fatal("after a reload, the page still holds the new key's plaintext")
	}
	b.shot("after-reload")

	// 9. Delete it with the trash icon, after confirming.
	b.click(`button[aria-label="Delete Booking panel lobby"]`)
	b.waitFor("the confirmation", `document.getElementById("confirm-dialog").open`)
	b.shot("confirm-delete")
	b.click("#confirm-ok")
	b.waitFor("the key to go", `!document.getElementById("keys-rows").innerText.includes("Booking panel lobby")`)
	b.waitText("page-status", "Deleted API key Booking panel lobby.")
	b.shot("deleted")

	// 10. Refused at once.
	if v := k.decide(t, plaintext, "GET", "/api/engine/v2/systems/sys-1"); v.Allow || v.Status != 401 {
		t.Fatalf("the deleted key: %+v, want a 401", v)
	}
}

// TestValidationBesideField: a 422 from the API appears beside the field it names, and a 403
// of the minting cap at the top of the form.
func TestValidationBesideField(t *testing.T) {
	k := startKeyauthz(t)
	home := k.bootstrapDomain(t)
	admin := userByName(t, k, home, "admin")
	b := newBrowser(t)
	b.open(k)
	b.signIn(k.AdminKey)

	// A name already taken in the domain: 422 {"field": "name", ...}.
	b.click("#add-key")
	b.waitFor("the key form", `document.getElementById("key-dialog").open && document.getElementById("scope-systems")`)
	b.fill("key-name", "BOOTSTRAP")
	b.choose("scope-systems", "systems.read")
	b.choose("key-user", admin.ID)
	b.click("#key-form button[type=submit]")
	b.waitText("key-name-error", "has already been taken")
	if got := eval[string](b, `document.getElementById("key-name").getAttribute("aria-invalid")`); got != "true" {
		t.Fatalf("key-name aria-invalid = %q", got)
	}
	if !eval[bool](b, `document.getElementById("key-dialog").open`) {
		t.Fatal("the form closed on a 422")
	}
	b.shot("name-taken")

	// No user chosen: 422 beside the User field.
	b.fill("key-name", "reader")
	b.choose("key-user", "")
	b.click("#key-form button[type=submit]")
	b.waitText("key-user_id-error", "user")
	if b.textOf("key-name-error") != "" {
		t.Fatalf("the old name error stayed: %q", b.textOf("key-name-error"))
	}
	b.shot("user-required")

	// The minting cap: an admin key holding only api_keys, users and domains cannot grant systems.
	limited := k.createKey(t, "limited admin", admin.ID, "admin", "api_keys", "users", "domains")
	b.click("#key-form button.cancel")
	// Signing out forgets the session: the form's typed name, the table's keys, the key.
	b.signOut(k.AdminKey, "reader", "bootstrap", "limited admin")
	b.signIn(limited.Key)
	b.click("#add-key")
	b.waitFor("the key form", `document.getElementById("key-dialog").open && document.getElementById("scope-systems")`)
	b.fill("key-name", "too strong")
	b.choose("scope-systems", "systems")
	b.choose("key-user", admin.ID)
	b.click("#key-form button[type=submit]")
	b.waitText("key-form-error", "cannot grant scope systems")
	b.shot("minting-cap")
}

// TestUserLevelKeyRefused: the page checks the key's level at sign in (api_keys/inspect) and
// keeps nothing of a key below admin; an unknown key is refused with the API's message.
func TestUserLevelKeyRefused(t *testing.T) {
	k := startKeyauthz(t)
	home := k.bootstrapDomain(t)
	panel := k.createUser(t, home, "Kiosk")
	key := k.createKey(t, "kiosk", panel.ID, "user", "public")
	b := newBrowser(t)
	b.open(k)

	// The key field is masked, but not a password field: a browser offers to save a password
	// field in its password manager, and the key must stay in this tab.
	if got := eval[string](b, `(() => { const e = document.getElementById("signin-key");
		return e.type + " " + e.autocomplete + " " + getComputedStyle(e).webkitTextSecurity; })()`); got != "text off disc" {
		t.Fatalf("signin-key: type, autocomplete and masking %q, want \"text off disc\"", got)
	}
	if eval[int](b, `document.querySelectorAll("input[type=password]").length`) != 0 {
		t.Fatal("the page has a password field")
	}

	b.do("paste a user-level key", chromedp.SetValue(chromedp.ID("signin-key"), key.Key))
	b.click("#signin-form button[type=submit]")
	b.waitText("signin-error", "needs a key of admin level")
	if eval[string](b, `sessionStorage.getItem("keyauthz.adminKey") || ""`) != "" {
		t.Fatal("a user-level key was kept in sessionStorage")
	}
	if b.pageHolds(key.Key) {
		t.Fatal("the refused key stayed in the page (the sign-in field's value)")
	}
	if !eval[bool](b, `document.getElementById("keys-view").hidden && document.getElementById("nav").hidden`) {
		t.Fatal("the admin views are shown to a user-level key")
	}
	b.shot("user-level-refused")

	b.do("paste an unknown key", chromedp.SetValue(chromedp.ID("signin-key"), strings.Repeat("0", 32)+"."+strings.Repeat("A", 43)))
	b.click("#signin-form button[type=submit]")
	b.waitText("signin-error", "unknown X-API-Key")
	if got := eval[string](b, `document.getElementById("signin-key").value`); got != "" {
		t.Fatalf("the refused unknown key stayed in the field: %q", got)
	}
	b.shot("unknown-key-refused")

	// A session whose key is deleted goes back to sign in on its next request.
	admin := userByName(t, k, home, "admin")
	second := k.createKey(t, "second admin", admin.ID, "admin", "public")
	b.signIn(second.Key)
	if st := k.call(t, "DELETE", "/api_keys/"+second.ID, k.AdminKey, nil, nil); st != 202 {
		t.Fatalf("delete: %d", st)
	}
	b.click(`button[data-view="users"]`)
	b.waitFor("sign in after a 401", `!document.getElementById("signin-view").hidden`)
	b.waitText("signin-error", "unknown X-API-Key")
	if eval[string](b, `sessionStorage.getItem("keyauthz.adminKey") || ""`) != "" {
		t.Fatal("a refused key stayed in sessionStorage")
	}
	b.shot("signed-out-on-401")
}

// TestSignOutForgetsSession: after Sign out the page holds nothing of the session (rows, the
// domain pickers, the search box, typed fields, the picked domain, the key), and an answer to a
// request of the ended session neither shows up in nor signs out the next session.
func TestSignOutForgetsSession(t *testing.T) {
	k := startKeyauthz(t)
	home := k.bootstrapDomain(t)
	admin := userByName(t, k, home, "admin")
	var acme domain
	if st := k.call(t, "POST", "/domains", k.AdminKey, map[string]any{"name": "Acme Tower", "domain": "acme-tower.example.com"}, &acme); st != 201 {
		t.Fatalf("create domain: %d", st)
	}
	quentin := k.createUser(t, home, "Quentin Zed")
	k.createKey(t, "zebra kiosk", quentin.ID, "user", "public")
	b := newBrowser(t)
	b.open(k)
	b.signIn(k.AdminKey)

	// Fill every part of the page with the session's data.
	b.click(`button[data-view="domains"]`)
	b.waitText("domains-rows", "acme-tower.example.com")
	b.click(`button[data-view="users"]`)
	b.waitText("users-rows", "quentin-zed@localhost")
	b.click(`button[aria-label="Edit Quentin Zed"]`)
	b.waitFor("the user form", `document.getElementById("user-dialog").open`)
	b.fill("user-groups", "half typed group")
	b.click("#user-form button.cancel")
	b.click(`button[data-view="keys"]`)
	b.choose("domain-select", acme.ID)
	b.waitText("keys-rows", "No API keys in this domain yet.")
	b.choose("domain-select", home.ID)
	b.waitText("keys-rows", "zebra kiosk")
	b.fill("keys-search", "zebra")
	b.click("#keys-search-form button[type=submit]")
	b.waitText("keys-count", "1\u20131 of 1 key")
	b.click("#add-key")
	b.waitFor("the key form", `document.getElementById("key-dialog").open && document.getElementById("scope-systems")`)
	b.fill("key-name", "half typed key")
	b.choose("key-user", quentin.ID)
	b.click("#key-form button.cancel")
	if eval[string](b, `sessionStorage.getItem("keyauthz.domain") || ""`) == "" {
		t.Fatal("picking a domain stored nothing: the check below would prove nothing")
	}
	b.shot("session-data")

	b.signOut(k.AdminKey, "Acme Tower", "acme-tower.example.com", "Quentin Zed", "quentin-zed@localhost",
		"zebra kiosk", "zebra", "half typed group", "half typed key", "bootstrap", admin.ID, quentin.ID, acme.ID)
	b.shot("signed-out")

	// A request of a session that ends before its answer arrives: the answer (a 401, the key is
	// deleted) must not sign out the session that followed. The test holds back the answers to
	// that key's requests.
	first := k.createKey(t, "first admin", admin.ID, "admin", "api_keys", "users", "domains")
	b.signIn(first.Key)
	if st := k.call(t, "DELETE", "/api_keys/"+first.ID, k.AdminKey, nil, nil); st != 202 {
		t.Fatalf("delete: %d", st)
	}
	b.do("hold back the first key's answers", chromedp.Evaluate[chromedp.Void](`(() => {
		const original = window.fetch;
		window.fetch = (url, init) => {
			const answer = original(url, init);
			if (!init || !init.headers || init.headers["X-API-Key"] !== `+js(first.Key)+`) return answer;
			window.heldBack = (window.heldBack || 0) + 1;
			// Settled either way: an answer held back 1.5 s, or the request aborted by the
			// sign-out before its answer came (on a slow machine the abort can come first).
			return answer.then(
				(r) => new Promise((resolve) => setTimeout(() => { window.released = (window.released || 0) + 1; resolve(r); }, 1500)),
				(e) => { window.released = (window.released || 0) + 1; throw e; });
		};
	})()`))
	b.click(`button[data-view="users"]`)
	b.waitFor("the first key's request", `window.heldBack >= 1`)
	b.signOut(first.Key, "first admin")
	b.signIn(k.AdminKey)
	b.waitFor("the held-back answer", `window.released >= window.heldBack`)
	b.do("let the stale answer settle", chromedp.Sleep(300*time.Millisecond))
	if !eval[bool](b, `document.getElementById("signin-view").hidden && !document.getElementById("keys-view").hidden`) {
		b.fail("the first session's answer signed out the second session")
	}
	if got := eval[string](b, `sessionStorage.getItem("keyauthz.adminKey") || ""`); got != k.AdminKey {
		t.Fatalf("sessionStorage holds %q, want the second session's key", got)
	}
	if got := b.textOf("page-error"); got != "" {
		t.Fatalf("the first session's answer showed %q", got)
	}
	b.shot("second-session-intact")
}

// TestKeyboardOnly adds and deletes a key with the keyboard alone: Tab, typing, arrows and
// Enter, from sign in to the confirmation.
func TestKeyboardOnly(t *testing.T) {
	k := startKeyauthz(t)
	home := k.bootstrapDomain(t)
	kiosk := k.createUser(t, home, "Kiosk")
	b := newBrowser(t)
	b.open(k)

	// Sign in: the key field has the focus; type the key, then Enter.
	b.waitFor("focus on the key field", `document.activeElement.id === "signin-key"`)
	b.do("type the key", chromedp.KeyEvent(k.AdminKey), chromedp.KeyEvent(kb.Enter))
	b.waitFor("the key list", `!document.getElementById("keys-view").hidden && document.getElementById("keys-rows").innerText.includes("bootstrap")`)

	b.tabTo("Add API key")
	b.do("open the form", chromedp.KeyEvent(kb.Enter))
	b.waitFor("the form, focus on Name", `document.getElementById("key-dialog").open && document.activeElement.id === "key-name"`)
	b.do("type the name", chromedp.KeyEvent("Kiosk key"))
	b.tabTo("Description")
	b.do("type the description", chromedp.KeyEvent("typed without a mouse"))
	// Scopes: arrows on each select: none, read, write, read and write.
	for _, s := range []struct {
		label string
		downs int
	}{{"users", 1}, {"systems", 1}, {"control", 3}, {"zones", 1}, {"metadata", 1}} {
		b.tabTo(s.label)
		for range s.downs {
			b.do("arrow down", chromedp.KeyEvent(kb.ArrowDown))
		}
	}
	b.tabTo("User")
	b.do("type the user", chromedp.KeyEvent("Kiosk"))
	if got := eval[string](b, `document.getElementById("key-user").value`); got != kiosk.ID {
		b.fail("user select: %q, want %s", got, kiosk.ID)
	}
	b.shot("keyboard-form")
	b.tabTo("Save")
	b.do("save", chromedp.KeyEvent(kb.Enter))
	b.waitFor("the new key", `document.getElementById("created-dialog").open && document.getElementById("created-key").value !== ""`)
	b.tabTo("Copy")
	b.do("copy", chromedp.KeyEvent(kb.Enter))
	b.waitFor("the copy status", `document.getElementById("copy-status").innerText !== ""`)
	b.tabTo("Done")
	b.do("done", chromedp.KeyEvent(kb.Enter))
	b.waitFor("focus back on Add API key", `!document.getElementById("created-dialog").open && document.activeElement.id === "add-key"`)
	b.waitText("keys-rows", "Kiosk key")
	b.shot("keyboard-added")

	var created apiKey
	for _, key := range k.listKeys(t, home) {
		if key.Name == "Kiosk key" {
			created = key
		}
	}
	slices.Sort(created.Scopes)
	want := slices.Clone(bookingPanel)
	slices.Sort(want)
	if !slices.Equal(created.Scopes, want) || created.UserID != kiosk.ID {
		t.Fatalf("key made by keyboard: %+v, want scopes %v and user %s", created, want, kiosk.ID)
	}

	// Delete it by keyboard: the trash button, then the confirmation's Delete.
	b.tabTo("Delete Kiosk key")
	b.do("trash", chromedp.KeyEvent(kb.Enter))
	b.waitFor("the confirmation, focus on Cancel", `document.getElementById("confirm-dialog").open && document.activeElement.id === "confirm-cancel"`)
	b.tabTo("Delete")
	b.do("confirm", chromedp.KeyEvent(kb.Enter))
	b.waitFor("the key to go", `!document.getElementById("keys-rows").innerText.includes("Kiosk key")`)
	b.shot("keyboard-deleted")
}

// TestUsersAndDomainsEdit edits and deletes a user and a domain on their pages.
func TestUsersAndDomainsEdit(t *testing.T) {
	k := startKeyauthz(t)
	home := k.bootstrapDomain(t)
	k.createUser(t, home, "Temp")
	b := newBrowser(t)
	b.open(k)
	b.signIn(k.AdminKey)

	b.click(`button[data-view="users"]`)
	b.waitText("users-rows", "temp@localhost")
	b.click(`button[aria-label="Edit Temp"]`)
	b.waitFor("the user form", `document.getElementById("user-dialog").open && document.getElementById("user-name").value === "Temp"`)
	b.fill("user-name", "Temporary")
	b.fill("user-email", "not an email")
	b.click("#user-form button[type=submit]")
	b.waitText("user-email-error", "email")
	b.shot("user-email-invalid")
	b.fill("user-email", "temporary@localhost")
	b.click("#user-form button[type=submit]")
	b.waitText("users-rows", "temporary@localhost")
	b.click(`button[aria-label="Delete Temporary"]`)
	b.waitFor("the confirmation", `document.getElementById("confirm-dialog").open`)
	b.click("#confirm-ok")
	b.waitFor("the user to go", `!document.getElementById("users-rows").innerText.includes("Temporary")`)

	b.click(`button[data-view="domains"]`)
	b.click("#add-domain")
	b.fill("domain-name", "Branch")
	b.fill("domain-host", "localhost")
	b.click("#domain-form button[type=submit]")
	b.waitText("domain-domain-error", "taken")
	b.shot("domain-host-taken")
	b.fill("domain-host", "branch.example.com")
	b.click("#domain-form button[type=submit]")
	b.waitText("domains-rows", "branch.example.com")
	b.click(`button[aria-label="Edit Branch"]`)
	b.fill("domain-description", "second office")
	b.click("#domain-form button[type=submit]")
	b.waitText("domains-rows", "second office")
	b.click(`button[aria-label="Delete Branch"]`)
	b.click("#confirm-ok")
	b.waitFor("the domain to go", `!document.getElementById("domains-rows").innerText.includes("branch.example.com")`)
	b.shot("domains-after-delete")
}

// TestKeyPaging pages through a domain's keys with the API's Link and X-Total-Count, and
// searches them with q.
func TestKeyPaging(t *testing.T) {
	k := startKeyauthz(t)
	home := k.bootstrapDomain(t)
	admin := userByName(t, k, home, "admin")
	for i := range 24 {
		k.createKey(t, "panel "+string(rune('a'+i)), admin.ID, "user", "systems.read")
	}
	b := newBrowser(t)
	b.open(k)
	b.signIn(k.AdminKey)
	b.waitText("keys-count", "1\u201320 of 25 keys")
	b.click("#keys-next")
	b.waitText("keys-count", "21\u201325 of 25 keys")
	if !eval[bool](b, `document.getElementById("keys-next").disabled`) {
		t.Fatal("Next page enabled on the last page")
	}
	b.shot("second-page")
	b.click("#keys-prev")
	b.waitText("keys-count", "1\u201320 of 25 keys")
	b.fill("keys-search", "panel x")
	b.click("#keys-search-form button[type=submit]")
	b.waitText("keys-count", "1\u20131 of 1 key")
	b.shot("search")
}

// focusedName is the focused control's name: its aria-label, its label or its text.
const focusedName = `(() => { const e = document.activeElement; if (!e) return "";
	const l = e.getAttribute("aria-label") || (e.labels && e.labels.length ? e.labels[0].innerText : "") || e.innerText || "";
	return l.trim(); })()`

// tabTo presses Tab until the focused control's name (aria-label, label or text) is name.
func (b *browser) tabTo(name string) {
	b.t.Helper()
	for range 80 {
		if eval[string](b, focusedName) == name {
			return
		}
		b.do("tab", chromedp.KeyEvent(kb.Tab))
	}
	b.fail("no control named %q within 80 tabs", name)
}

func listDomains(t *testing.T, k *keyauthz) []domain {
	t.Helper()
	var ds []domain
	if st := k.call(t, "GET", "/domains", k.AdminKey, nil, &ds); st != 200 {
		t.Fatalf("list domains: %d", st)
	}
	return ds
}

func userByName(t *testing.T, k *keyauthz, d domain, name string) user {
	t.Helper()
	var us []user
	if st := k.call(t, "GET", "/users?authority_id="+d.ID, k.AdminKey, nil, &us); st != 200 {
		t.Fatalf("list users: %d", st)
	}
	for _, u := range us {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("no user %q in %v", name, us)
	return user{}
}
