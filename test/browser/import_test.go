package browser

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The PlaceOS import on the admin page (docs/admin-page.md#importing-from-placeos,
// docs/import.md).

// placeosKey is a key made the PlaceOS way: a 32-hex id, a random secret, and the stored hash
// hex(HMAC-SHA512(key = secret, message = id)); the key string handed out is "<id>.<secret>".
type placeosKey struct{ id, secret, hash string }

func newPlaceOSKey(t *testing.T) placeosKey {
	t.Helper()
	raw := make([]byte, 16+32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	k := placeosKey{id: hex.EncodeToString(raw[:16]), secret: base64.RawURLEncoding.EncodeToString(raw[16:])}
	mac := hmac.New(sha512.New, []byte(k.secret))
	mac.Write([]byte(k.id))
	k.hash = hex.EncodeToString(mac.Sum(nil))
	return k
}

func (k placeosKey) String() string { return k.id + "." + k.secret }

// TestImportFlow imports a PlaceOS export from the Import page, by keyboard: a dry run shows
// what would be created and writes nothing; the import (confirmed) creates the domain, user and
// key, and the key, never issued by keyauthz, is allowed at once at the decision endpoint; a
// re-import is all unchanged and writes nothing; a row changed in keyauthz since is a 409
// conflict with its reason; a malformed file lists its bad rows by line and writes nothing;
// sign-out forgets it all; a key without domains.write is told so (403).
func TestImportFlow(t *testing.T) {
	k := startKeyauthz(t)
	home := k.bootstrapDomain(t)
	admin := userByName(t, k, home, "admin")
	pk := newPlaceOSKey(t)
	dir := t.TempDir()
	// As psql's row_to_json writes the three tables; the password digest is a column keyauthz
	// ignores.
	export := filepath.Join(dir, "placeos-export.jsonl")
	writeFile(t, export, `{"id":"authority-PlaceOS1","name":"PlaceOS HQ","domain":"placeos.example","description":"","created_at":"2025-03-01T09:00:00+00:00"}
{"id":"user-Panel1","authority_id":"authority-PlaceOS1","name":"Lobby Panel","email":"panel@placeos.example","sys_admin":false,"support":false,"groups":["panels"],"password_digest":"$2a$10$notkeptnotkept"}
{"id":"`+pk.id+`","name":"Lobby booking panel","description":"imported from PlaceOS","scopes":["systems.read","zones.read"],"permissions":0,"secret":"`+pk.hash+`","user_id":"user-Panel1","authority_id":"authority-PlaceOS1","expires_at":null}
`)
	// CSV as psql's \copy writes it, a header row per table: the user on line 3 has no email,
	// the key on line 5 an unknown level. The good user on line 2 must not be written either.
	bad := filepath.Join(dir, "placeos-bad.csv")
	other := newPlaceOSKey(t)
	writeFile(t, bad, `id,authority_id,name,email,sys_admin,support,groups
user-Visitor2,authority-PlaceOS1,Visitor,visitor@placeos.example,f,f,{}
user-NoMail,authority-PlaceOS1,No Mail,,f,f,{}
id,name,description,scopes,permissions,secret,user_id,authority_id
`+other.id+`,visitor key,,"[""systems.read""]",7,`+other.hash+`,user-Visitor2,authority-PlaceOS1
`)

	b := newBrowser(t)
	b.open(k)
	b.waitFor("focus on the key field", `document.activeElement.id === "signin-key"`)
	b.do("type the key", chromedp.KeyEvent(k.AdminKey), chromedp.KeyEvent(kb.Enter))
	b.waitFor("the key list", `!document.getElementById("keys-view").hidden && document.getElementById("keys-rows").innerText.includes("bootstrap")`)

	// The Import page from the nav, then the file field. The file itself is chosen in the
	// system's file dialog, which the test fills through the DevTools protocol.
	b.tabTo("Import")
	b.do("open the Import page", chromedp.KeyEvent(kb.Enter))
	b.waitFor("the Import page", `!document.getElementById("import-view").hidden &&
		document.querySelector("button[data-view=import]").getAttribute("aria-current") === "page"`)
	b.tabTo("PlaceOS export (.jsonl, .ndjson or .csv)")
	b.chooseFile(export)
	b.shot("import-page")

	// Dry run: what would be created, nothing written.
	b.tabTo("Dry run")
	b.do("dry run", chromedp.KeyEvent(kb.Enter))
	b.waitText("import-report-title", "Dry run of placeos-export.jsonl: nothing was written")
	b.checkImportCounts("would be created", "1 1 1")
	if got := b.textOf("import-status"); !strings.Contains(got, "The import would have created 1 domain, 1 user, 1 key;") {
		b.fail("the dry run's live region says %q", got)
	}
	b.checkImportRecords([]string{"1 domain authority-PlaceOS1 would be created", "2 user user-Panel1 would be created",
		"3 API key " + pk.id + " would be created"})
	if b.pageHolds(pk.hash) || b.pageHolds("notkept") {
		t.Fatal("the report shows the key's hash or a column keyauthz does not keep")
	}
	b.shot("dry-run")
	if hasDomain(t, k, "placeos.example") || k.auditTotal(t, "action=import") != 0 {
		t.Fatal("a dry run wrote something")
	}
	if v := k.decideOn(t, pk.String(), "placeos.example", "GET", "/api/engine/v2/systems/sys-1"); v.Allow {
		t.Fatalf("before the import the PlaceOS key is %+v", v)
	}

	// Import: Tab to it from Dry run, confirm (the dry run's counts recalled), and the report.
	b.tabTo("Import")
	b.do("import", chromedp.KeyEvent(kb.Enter))
	b.waitFor("the confirmation, focus on Cancel", `document.getElementById("confirm-dialog").open && document.activeElement.id === "confirm-cancel"`)
	if got := b.textOf("confirm-text"); !strings.Contains(got, "The dry run found to create: 1 domain, 1 user, 1 key") {
		b.fail("the confirmation does not recall the dry run: %q", got)
	}
	b.shot("confirm-import")
	b.tabTo("Import")
	b.do("confirm", chromedp.KeyEvent(kb.Enter))
	b.waitText("import-report-title", "Imported placeos-export.jsonl")
	b.waitFor("focus back on Import", `!document.getElementById("confirm-dialog").open && document.activeElement.id === "import-run"`)
	b.checkImportCounts("created", "1 1 1")
	b.checkImportCounts("unchanged", "0 0 0")
	b.shot("imported")

	// The PlaceOS key works unchanged: allowed within its scopes, refused outside them.
	if v := k.decideOn(t, pk.String(), "placeos.example", "GET", "/api/engine/v2/systems/sys-1"); !v.Allow {
		t.Fatalf("the imported PlaceOS key: %+v, want allowed", v)
	}
	if v := k.decideOn(t, pk.String(), "placeos.example", "GET", "/api/engine/v2/api_keys"); v.Allow || v.Status != 403 {
		t.Fatalf("the imported key outside its scopes: %+v, want 403", v)
	}
	if n := k.auditTotal(t, "action=import"); n != 1 {
		t.Fatalf("%d import records in the audit log, want 1", n)
	}
	// The Domain pickers list the domain imported.
	if !eval[bool](b, `Array.from(document.getElementById("domain-select").options).some((o) => o.value === "authority-PlaceOS1")`) {
		b.fail("the domain picker does not list the imported domain")
	}

	// Re-import: all unchanged, nothing written.
	b.confirmImport()
	b.waitText("import-report-title", "Import of placeos-export.jsonl: nothing new to write")
	b.checkImportCounts("created", "0 0 0")
	b.checkImportCounts("unchanged", "1 1 1")
	b.checkImportRecords([]string{"1 domain authority-PlaceOS1 unchanged", "2 user user-Panel1 unchanged",
		"3 API key " + pk.id + " unchanged"})
	b.shot("reimport-unchanged")
	if n := k.auditTotal(t, "action=import"); n != 1 {
		t.Fatalf("a re-import left %d import records, want 1", n)
	}

	// A row changed in keyauthz since: the import refuses it (409) and says why.
	if st := k.call(t, "PATCH", "/api_keys/"+pk.id, k.AdminKey, map[string]any{"description": "changed in keyauthz"}, nil); st != 200 {
		t.Fatalf("patch the imported key: %d", st)
	}
	b.confirmImport()
	b.waitText("import-form-error", "the import conflicts with stored records: nothing was imported")
	b.waitText("import-report-title", "refused")
	b.checkImportCounts("conflicts", "0 0 1")
	b.waitText("import-records-rows", "stored with other values of description")
	b.shot("conflict")

	// A malformed file: every bad row by its line, nothing written (not even its good rows).
	b.shiftTabTo("PlaceOS export (.jsonl, .ndjson or .csv)")
	b.chooseFile(bad)
	if !eval[bool](b, `document.getElementById("import-report").hidden && document.getElementById("import-form-error").hidden`) {
		b.fail("a new file still shows the previous file's report")
	}
	b.confirmImport()
	b.waitText("import-file-error", "placeos-bad.csv has 2 bad rows, listed below: nothing was imported.")
	lines := eval[[]string](b, `Array.from(document.querySelectorAll("#import-failures-rows tr")).map((r) => r.children[0].innerText)`)
	if !slices.Equal(lines, []string{"3", "5"}) {
		b.fail("bad rows listed at lines %v, want 3 and 5", lines)
	}
	if !eval[bool](b, `document.getElementById("import-file").getAttribute("aria-invalid") === "true"`) {
		b.fail("the file field is not marked invalid")
	}
	b.shot("bad-rows")
	if st := k.call(t, "GET", "/users/user-Visitor2", k.AdminKey, nil, nil); st != 404 {
		t.Fatalf("the malformed file's good user: %d, want 404 (nothing written)", st)
	}
	if n := k.auditTotal(t, "action=import"); n != 1 {
		t.Fatalf("a malformed file left %d import records, want 1", n)
	}

	b.signOut(k.AdminKey, "placeos-export.jsonl", "placeos-bad.csv", pk.id, "authority-PlaceOS1", "Visitor2")

	// A key that may not import authority rows (no domains.write): the 403 names it.
	limited := k.createKey(t, "keys only", admin.ID, "admin", "api_keys", "users", "domains.read")
	b.signIn(limited.Key)
	b.click(`button[data-view="import"]`)
	b.chooseFile(export)
	b.click("#import-dry-run")
	b.waitText("import-form-error", "scope domains.write: the calling key does not hold it")
	if !eval[bool](b, `document.getElementById("import-report").hidden`) {
		b.fail("a refused dry run shows a report")
	}
	b.shot("forbidden")
	b.signOut(limited.Key, "placeos-export.jsonl")
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// chooseFile puts the file at path into the import's file field, as the file dialog does
// (the field's change event follows).
func (b *browser) chooseFile(path string) {
	b.t.Helper()
	b.do("choose "+filepath.Base(path), chromedp.SetUploadFiles(chromedp.ID("import-file"), []string{path}))
	b.waitFor("the file chosen", `(document.getElementById("import-file").files[0] || {}).name === `+js(filepath.Base(path)))
}

// confirmImport presses Import (focus is on it) and the confirmation's Import, by keyboard.
func (b *browser) confirmImport() {
	b.t.Helper()
	b.tabTo("Import")
	b.do("import", chromedp.KeyEvent(kb.Enter))
	b.waitFor("the confirmation", `document.getElementById("confirm-dialog").open && document.activeElement.id === "confirm-cancel"`)
	b.tabTo("Import")
	b.do("confirm", chromedp.KeyEvent(kb.Enter))
	b.waitFor("the answer", `!document.getElementById("confirm-dialog").open && !document.getElementById("import-dry-run").disabled &&
		document.getElementById("import-status").textContent !== "Working\u2026"`)
}

// shiftTabTo presses Shift+Tab until the focused control's name is name.
func (b *browser) shiftTabTo(name string) {
	b.t.Helper()
	for range 80 {
		if eval[string](b, focusedName) == name {
			return
		}
		b.do("shift+tab", chromedp.KeyEvent(kb.Tab, chromedp.KeyModifiers(chromedp.ModifierShift)))
	}
	b.fail("no control named %q within 80 shift+tabs", name)
}

// checkImportCounts checks the report's counts row (domains, users, keys, space-separated).
func (b *browser) checkImportCounts(outcome, want string) {
	b.t.Helper()
	got := eval[string](b, `(() => { const r = Array.from(document.querySelectorAll("#import-counts-rows tr")).find((r) => r.children[0].innerText === `+js(outcome)+`);
		return r ? Array.from(r.children).slice(1).map((c) => c.innerText).join(" ") : "no row"; })()`)
	if got != want {
		b.fail("import counts %q: %q, want %q", outcome, got, want)
	}
}

// checkImportRecords checks the report's rows: line, kind, id and outcome of each.
func (b *browser) checkImportRecords(want []string) {
	b.t.Helper()
	got := eval[[]string](b, `Array.from(document.querySelectorAll("#import-records-rows tr")).map((r) => Array.from(r.children).slice(0, 4).map((c) => c.innerText).join(" "))`)
	if !slices.Equal(got, want) {
		b.fail("import records:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// hasDomain reports whether a domain with this host is stored.
func hasDomain(t *testing.T, k *keyauthz, host string) bool {
	t.Helper()
	return slices.ContainsFunc(listDomains(t, k), func(d domain) bool { return d.Domain == host })
}

// decideOn asks the decision endpoint whether key may make the request method path on host.
func (k *keyauthz) decideOn(t *testing.T, key, host, method, path string) verdict {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"input": map[string]any{
		"method": method, "path": path, "host": host, "headers": map[string]string{"x-api-key": key},
	}})
	resp, err := http.Post(k.URL+"/v1/data/keyauthz/decision", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Result verdict `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("decision: %d %v", resp.StatusCode, err)
	}
	return out.Result
}
