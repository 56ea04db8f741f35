package browser

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The key lifecycle on the admin page (docs/admin-page.md#rotation, #limits, #the-audit-log):
// rotating a key, a key's allowed networks and rate limit, and the audit log.

// TestRotateFlow rotates a key from its row's Rotate button, by keyboard: the overlap is asked
// (a bad one refused beside the field), the new key is shown once with Copy and the warning,
// both keys are listed with their state and both work; a rotation with overlap 0 ends the old
// key at once (expired, 401); a key without the old key's scopes cannot rotate it (the minting
// cap, at the top of the form).
func TestRotateFlow(t *testing.T) {
	k := startKeyauthz(t)
	home := k.bootstrapDomain(t)
	admin := userByName(t, k, home, "admin")
	lobby := k.createUser(t, home, "Lobby")
	first := k.createKey(t, "Lobby panel", lobby.ID, "user", bookingPanel...)
	b := newBrowser(t)
	b.open(k)
	b.signIn(k.AdminKey)
	b.waitText("keys-rows", "Lobby panel")
	if got := b.keyState(first.ID); got != "active" {
		b.fail("state of a new key: %q, want active", got)
	}

	// Rotate by keyboard: the button named "Rotate Lobby panel", the overlap field focused with
	// the default 24h selected.
	b.tabTo("Rotate Lobby panel")
	b.do("open the rotation", chromedp.KeyEvent(kb.Enter))
	b.waitFor("the rotation form, focus on the overlap", `document.getElementById("rotate-dialog").open &&
		document.activeElement.id === "rotate-overlap" && document.activeElement.value === "24h"`)
	if !strings.Contains(b.textOf("rotate-dialog-title"), "Lobby panel") {
		b.fail("rotation title: %q", b.textOf("rotate-dialog-title"))
	}
	b.shot("rotate-form")

	// 40 days is over the 30-day bound: the API's 422 beside the field, the form still open.
	b.do("type a too long overlap", chromedp.KeyEvent("40d"), chromedp.KeyEvent(kb.Enter))
	b.waitText("rotate-overlap-error", "overlap must be a duration")
	if !eval[bool](b, `document.getElementById("rotate-overlap").getAttribute("aria-invalid") === "true" &&
		document.activeElement.id === "rotate-overlap" && document.getElementById("rotate-dialog").open`) {
		b.fail("a refused overlap: the field is not marked and focused, or the form closed")
	}
	b.shot("overlap-refused")
	if n := len(k.listKeys(t, home)); n != 2 {
		t.Fatalf("a refused rotation left %d keys, want 2", n)
	}

	b.fill("rotate-overlap", "2h")
	b.do("rotate", chromedp.KeyEvent(kb.Enter))
	b.waitFor("the new key", `document.getElementById("created-dialog").open && document.getElementById("created-key").value !== ""`)
	second := eval[string](b, `document.getElementById("created-key").value`)
	if !strings.Contains(b.textOf("created-warning"), "will not be shown again") || !strings.Contains(b.textOf("created-title"), "rotated") {
		b.fail("the rotated key's dialog: %q / %q", b.textOf("created-title"), b.textOf("created-warning"))
	}
	b.waitText("created-note", "The old key keeps working until")
	b.tabTo("Copy")
	b.do("copy", chromedp.KeyEvent(kb.Enter))
	b.waitFor("the copy status", `document.getElementById("copy-status").innerText !== ""`)
	b.shot("rotated-key-shown-once")

	// The API: the old key replaced and ending within the overlap, the new one its copy.
	var oldKey, newKey apiKey
	for _, key := range k.listKeys(t, home) {
		switch {
		case key.ID == first.ID:
			oldKey = key
		case key.Name == "Lobby panel":
			newKey = key
		}
	}
	now := time.Now().Unix()
	if newKey.ID == "" || oldKey.ReplacedBy != newKey.ID || newKey.RotatedFrom != first.ID || oldKey.ExpiresAt == nil ||
		*oldKey.ExpiresAt > now+2*3600 || *oldKey.ExpiresAt < now+3600 || !sameSet(newKey.Scopes, bookingPanel) || newKey.UserID != lobby.ID {
		t.Fatalf("after the rotation: old %+v, new %+v", oldKey, newKey)
	}
	if !strings.HasPrefix(second, newKey.ID) {
		t.Fatalf("the key shown (%.8s…) is not the new key %s", second, newKey.ID)
	}

	// Done: focus goes to the new key's Rotate button; the list shows both keys with their state.
	b.tabTo("Done")
	b.do("done", chromedp.KeyEvent(kb.Enter))
	b.waitFor("focus on the new key's Rotate button", `!document.getElementById("created-dialog").open &&
		document.activeElement.dataset.rotate === `+js(newKey.ID))
	if got := b.keyState(first.ID); got != "rotating" {
		b.fail("state of the rotated key: %q, want rotating", got)
	}
	if got := b.keyState(newKey.ID); got != "active" {
		b.fail("state of the new key: %q, want active", got)
	}
	if eval[bool](b, `!!document.querySelector(`+keyRow(first.ID, "button[data-rotate]")+`)`) {
		b.fail("the replaced key can be rotated again")
	}
	if !eval[bool](b, `!!document.querySelector("button[aria-label='Delete Lobby panel (old key, rotating)']")`) {
		b.fail("the replaced key's buttons do not say it is the replaced one")
	}
	if b.pageHolds(second) || b.pageHolds(strings.SplitN(second, ".", 2)[1]) {
		t.Fatal("after Done the page still holds the new key's plaintext")
	}
	b.shot("rotating-listed")

	// Both work during the overlap.
	for _, key := range []string{first.Key, second} {
		if v := k.decide(t, key, "GET", "/api/engine/v2/systems/sys-1"); !v.Allow {
			t.Fatalf("during the overlap: %+v, want both keys allowed", v)
		}
	}

	// Rotate the new key with overlap 0: it stops at once, listed as expired, refused (401).
	b.click(`button[data-rotate=` + js(newKey.ID) + `]`)
	b.waitFor("the rotation form", `document.getElementById("rotate-dialog").open`)
	b.fill("rotate-overlap", "0")
	b.click("#rotate-form button[type=submit]")
	b.waitFor("the third key", `document.getElementById("created-dialog").open && document.getElementById("created-key").value !== ""`)
	b.waitText("created-note", "The old key no longer works.")
	b.click("#created-done")
	b.waitFor("the list with the expired key", `(document.querySelector(`+keyRow(newKey.ID, ".state")+`) || {}).innerText === "expired"`)
	if eval[bool](b, `!!document.querySelector(`+keyRow(newKey.ID, "button[data-rotate]")+`)`) {
		b.fail("an expired key can be rotated")
	}
	b.shot("expired-listed")
	if v := k.decide(t, second, "GET", "/api/engine/v2/systems/sys-1"); v.Allow || v.Status != 401 || v.Message != "API key has expired" {
		t.Fatalf("the key rotated with overlap 0: %+v, want 401 API key has expired", v)
	}
	if v := k.decide(t, first.Key, "GET", "/api/engine/v2/systems/sys-1"); !v.Allow {
		t.Fatalf("the first key, within its own overlap: %+v", v)
	}

	// The minting cap: an admin key without systems cannot rotate a key that holds systems.read.
	limited := k.createKey(t, "limited admin", admin.ID, "admin", "api_keys", "users", "domains")
	b.signOut(k.AdminKey, "Lobby panel")
	b.signIn(limited.Key)
	third := ""
	for _, key := range k.listKeys(t, home) {
		if key.Name == "Lobby panel" && key.ReplacedBy == "" {
			third = key.ID
		}
	}
	b.click(`button[data-rotate=` + js(third) + `]`)
	b.waitFor("the rotation form", `document.getElementById("rotate-dialog").open`)
	b.click("#rotate-form button[type=submit]")
	b.waitText("rotate-form-error", "cannot grant")
	if !eval[bool](b, `document.getElementById("rotate-dialog").open && document.activeElement.id === "rotate-form-error"`) {
		b.fail("the minting cap's 403: the form closed or the message is not focused")
	}
	b.shot("rotate-minting-cap")
	b.do("escape", chromedp.KeyEvent(kb.Escape))
	b.waitFor("focus back on the Rotate button", `!document.getElementById("rotate-dialog").open && document.activeElement.dataset.rotate === `+js(third))
}

// TestKeyLimitsForm sets a key's allowed networks and rate limit in the form (the API's 422s
// beside those fields first), sees them in the list and at the decision endpoint, then edits
// them: an edit sends only what changed, and empty fields clear the limits.
func TestKeyLimitsForm(t *testing.T) {
	k := startKeyauthz(t)
	home := k.bootstrapDomain(t)
	kiosk := k.createUser(t, home, "Kiosk")
	b := newBrowser(t)
	b.open(k)
	b.signIn(k.AdminKey)

	b.click("#add-key")
	b.waitFor("the key form", `document.getElementById("key-dialog").open && document.getElementById("scope-systems")`)
	b.fill("key-name", "Door kiosk")
	b.fill("key-description", "front door")
	b.choose("scope-systems", "systems.read")
	b.choose("key-user", kiosk.ID)
	b.fill("key-cidrs", "10.0.0.0/8, 10.0.0.0/33")
	b.fill("key-rate", "0")
	b.click("#key-form button[type=submit]")
	b.waitText("key-allowed_cidrs-error", "10.0.0.0/33")
	b.waitText("key-rate_limit-error", "rate must be above 0")
	b.waitText("key-rate_limit-error", "burst must be from 1")
	if got := eval[string](b, `["key-cidrs", "key-rate", "key-burst"].map((id) => document.getElementById(id).getAttribute("aria-invalid")).join(" ") +
		" " + document.activeElement.id`); got != "true true true key-cidrs" {
		b.fail("after the limits' 422: aria-invalid of networks, rate, burst and the focus: %q", got)
	}
	b.shot("limits-refused")

	b.fill("key-cidrs", "10.1.2.3/8\n2001:db8::/32")
	b.fill("key-rate", "5")
	b.fill("key-burst", "10")
	b.click("#key-form button[type=submit]")
	b.waitFor("the new key", `document.getElementById("created-dialog").open && document.getElementById("created-key").value !== ""`)
	plaintext := eval[string](b, `document.getElementById("created-key").value`)
	b.click("#created-done")
	b.waitText("keys-rows", "from 10.0.0.0/8, 2001:db8::/32")
	b.waitText("keys-rows", "5 per second, burst 10")
	b.shot("limits-listed")
	door := keyByName(t, k, home, "Door kiosk")
	if !slices.Equal(door.AllowedCIDRs, []string{"10.0.0.0/8", "2001:db8::/32"}) || door.RateLimit == nil || *door.RateLimit != (rateLimit{5, 10}) {
		t.Fatalf("the key's limits: %v %+v", door.AllowedCIDRs, door.RateLimit)
	}
	if v := k.decideFrom(t, plaintext, "GET", "/api/engine/v2/systems/sys-1", "10.9.8.7"); !v.Allow {
		t.Fatalf("from an allowed network: %+v", v)
	}
	if v := k.decideFrom(t, plaintext, "GET", "/api/engine/v2/systems/sys-1", "192.0.2.1"); v.Allow {
		t.Fatalf("from another network: %+v, want refused", v)
	}

	// Edit: the form opens with the key as it is; clear the networks, raise the burst.
	b.click(`button[aria-label="Edit Door kiosk"]`)
	b.waitFor("the edit form", `document.getElementById("key-dialog").open && document.getElementById("key-name").value === "Door kiosk" &&
		document.getElementById("key-cidrs").value === "10.0.0.0/8\n2001:db8::/32" && document.getElementById("scope-systems").value === "systems.read"`)
	if !eval[bool](b, `document.getElementById("key-user").disabled && document.getElementById("key-user").value === `+js(kiosk.ID)) {
		b.fail("editing: the user select is not the key's user, fixed")
	}
	b.shot("edit-form")
	b.clear("key-cidrs")
	b.fill("key-burst", "20")
	b.click("#key-form button[type=submit]")
	b.waitText("page-status", "Saved API key Door kiosk.")
	b.waitText("keys-rows", "5 per second, burst 20")
	door = keyByName(t, k, home, "Door kiosk")
	if len(door.AllowedCIDRs) != 0 || door.RateLimit == nil || *door.RateLimit != (rateLimit{5, 20}) ||
		!slices.Equal(door.Scopes, []string{"systems.read"}) || door.Description != "front door" {
		t.Fatalf("after the edit: %+v", door)
	}
	if v := k.decideFrom(t, plaintext, "GET", "/api/engine/v2/systems/sys-1", "192.0.2.1"); !v.Allow {
		t.Fatalf("with the allow-list cleared, from anywhere: %+v", v)
	}

	// Both rate fields emptied: no rate limit.
	b.click(`button[aria-label="Edit Door kiosk"]`)
	b.waitFor("the edit form", `document.getElementById("key-dialog").open && document.getElementById("key-rate").value === "5"`)
	b.clear("key-rate")
	b.clear("key-burst")
	b.click("#key-form button[type=submit]")
	// Other keys already show "no rate limit": wait for the Door kiosk's old limit to go.
	b.waitFor("the cleared rate limit listed", `!document.getElementById("keys-rows").innerText.includes("5 per second, burst 20")`)
	if door = keyByName(t, k, home, "Door kiosk"); door.RateLimit != nil {
		t.Fatalf("after clearing the rate limit: %+v", door.RateLimit)
	}
	b.shot("limits-cleared")
}

// TestAuditPage reads the audit log on its page: newest first, paged, filtered by action (by
// keyboard), by target and actor (from the ids in the log) and by time, with no secret in it;
// signing out forgets it.
func TestAuditPage(t *testing.T) {
	k := startKeyauthz(t)
	home := k.bootstrapDomain(t)
	for i := range 30 {
		k.createUser(t, home, fmt.Sprintf("Visitor %02d", i))
	}
	auditee := k.createUser(t, home, "Auditee")
	key := k.createKey(t, "audited key", auditee.ID, "user", "systems.read")
	if st := k.call(t, "PATCH", "/api_keys/"+key.ID, k.AdminKey, map[string]any{"description": "looked at"}, nil); st != 200 {
		t.Fatalf("update: %d", st)
	}
	var rotated apiKey
	if st := k.call(t, "POST", "/api_keys/"+key.ID+"/rotate", k.AdminKey, map[string]any{"overlap": "1h"}, &rotated); st != 201 {
		t.Fatalf("rotate: %d", st)
	}
	adminKeyID := strings.SplitN(k.AdminKey, ".", 2)[0]
	total := k.auditTotal(t, "")
	if total < 34 {
		t.Fatalf("the audit log holds %d records, want at least the 34 writes made", total)
	}

	b := newBrowser(t)
	b.open(k)
	b.signIn(k.AdminKey)
	b.click(`button[data-view="audit"]`)
	b.waitText("audit-count", fmt.Sprintf("1\u201325 of %d records", total))
	first := eval[string](b, `document.querySelector("#audit-rows tr").innerText`)
	if !strings.Contains(first, "rotate") || !strings.Contains(first, key.ID) || !strings.Contains(first, adminKeyID) {
		b.fail("the newest record is not the rotation by the admin key: %q", first)
	}
	for _, secret := range []string{key.Key, rotated.Key, k.AdminKey, strings.SplitN(rotated.Key, ".", 2)[1]} {
		if b.pageHolds(secret) {
			t.Fatal("the audit page shows a key's secret")
		}
	}
	if got := eval[[]string](b, `Array.from(document.querySelectorAll(".change-field")).map((e) => e.innerText).filter((f) => /hash|secret|x_api_key/.test(f))`); len(got) > 0 {
		t.Fatalf("the audit page shows secret fields: %v", got)
	}
	b.shot("audit")

	b.click("#audit-next")
	b.waitText("audit-count", fmt.Sprintf("26\u2013%d of %d records", min(50, total), total))
	if total <= 50 && !eval[bool](b, `document.getElementById("audit-next").disabled`) {
		b.fail("Next page enabled on the last page")
	}
	b.shot("audit-second-page")
	b.click("#audit-prev")
	b.waitText("audit-count", fmt.Sprintf("1\u201325 of %d records", total))

	// Action by keyboard: the Action select, typed, then Filter.
	b.do("focus the filters", chromedp.Focus(chromedp.ID("audit-target")))
	b.tabTo("Action")
	b.do("choose rotate", chromedp.KeyEvent("rot"))
	if got := eval[string](b, `document.getElementById("audit-action").value`); got != "rotate" {
		b.fail("typing in the Action select chose %q", got)
	}
	b.tabTo("Filter")
	b.do("filter", chromedp.KeyEvent(kb.Enter))
	b.waitText("audit-count", "1\u20131 of 1 record")
	b.shot("audit-rotations")

	// Target, from the id in the log: the key's create, update and rotation.
	b.click("#audit-clear")
	b.waitText("audit-count", fmt.Sprintf("of %d records", total))
	b.click(`#audit-rows button[aria-label="Show the records of key ` + key.ID + `"]`)
	b.waitText("audit-count", "1\u20133 of 3 records")
	if got := eval[string](b, `document.getElementById("audit-target").value`); got != key.ID {
		b.fail("target filter field: %q", got)
	}
	actions := eval[[]string](b, `Array.from(document.querySelectorAll("#audit-rows tr")).map((r) => r.children[2].innerText)`)
	if !slices.Equal(actions, []string{"rotate", "update", "create"}) {
		b.fail("the key's records: %v, want rotate, update, create", actions)
	}
	b.waitText("audit-rows", "looked at")
	b.shot("audit-target")

	// Actor: the admin key's records, as many as the API counts.
	b.click("#audit-clear")
	b.fill("audit-actor", adminKeyID)
	b.click("#audit-form button[type=submit]")
	want := k.auditTotal(t, "actor="+adminKeyID)
	b.waitText("audit-count", fmt.Sprintf("of %d record", want))
	if n := eval[int](b, `Array.from(document.querySelectorAll("#audit-rows tr")).filter((r) => !r.children[1].innerText.includes(`+js(adminKeyID)+`)).length`); n != 0 {
		b.fail("%d records of another actor listed", n)
	}

	// Time: from tomorrow, nothing.
	b.do("set From", chromedp.Evaluate[chromedp.Void](`(() => { const d = new Date(Date.now() + 86400000);
		const p = (n) => String(n).padStart(2, "0");
		document.getElementById("audit-since").value = d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + "T00:00"; })()`))
	b.click("#audit-form button[type=submit]")
	b.waitText("audit-rows", "No audit record matches these filters.")
	b.shot("audit-none")

	b.signOut(k.AdminKey, adminKeyID, key.ID, "Auditee", "looked at")
}

// keyRow is, as a JavaScript string, the CSS selector of what sel finds in the list's row of
// the key with this id.
func keyRow(id, sel string) string {
	return js(`tr[data-key="` + id + `"] ` + sel)
}

// keyState is the state the list shows for the key with this id ("" if it is not listed).
func (b *browser) keyState(id string) string {
	b.t.Helper()
	return eval[string](b, `(document.querySelector(`+keyRow(id, ".state")+`) || {innerText: ""}).innerText`)
}

// clear empties the field with this id, as selecting its text and deleting it would.
func (b *browser) clear(id string) {
	b.t.Helper()
	if !eval[bool](b, `(() => { const e = document.getElementById(`+js(id)+`); if (!e) return false;
		e.focus(); e.value = ""; e.dispatchEvent(new Event("input", {bubbles: true})); return true; })()`) {
		b.fail("no field #%s", id)
	}
}

func keyByName(t *testing.T, k *keyauthz, d domain, name string) apiKey {
	t.Helper()
	for _, key := range k.listKeys(t, d) {
		if key.Name == name && key.ReplacedBy == "" {
			return key
		}
	}
	t.Fatalf("no key %q", name)
	return apiKey{}
}

// auditTotal is the number of audit records matching query (X-Total-Count), by the API.
func (k *keyauthz) auditTotal(t *testing.T, query string) int {
	t.Helper()
	req, err := http.NewRequest("GET", k.URL+"/api/engine/v2/audit?limit=1&"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", k.AdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n, err := strconv.Atoi(resp.Header.Get("X-Total-Count"))
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("GET /audit?%s: %d, X-Total-Count %q", query, resp.StatusCode, resp.Header.Get("X-Total-Count"))
	}
	return n
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
