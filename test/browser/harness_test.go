// Package browser tests the admin page (/admin/) in Debian's chromium, driven from Go with
// chromedp, against the real keyauthz binary on loopback: the Backoffice flow of the seed,
// step by step, with a screenshot of each step.
//
// The binary is the one users run (`go build ./cmd/keyauthz`), started with a temp data folder;
// the tests read its bootstrap key as an administrator would. Screenshots go to the test's
// artifact folder (go test -artifacts -outputdir DIR keeps them), or to
// $KEYAUTHZ_SCREENSHOTS/<test name> when that variable is set.
package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keyauthz/keyauthz/internal/testutil"
)

// chromiumPath is Debian's chromium, installed by .ci/run.
const chromiumPath = "/usr/bin/chromium"

var binary string // the keyauthz binary, built once by TestMain

func TestMain(m *testing.M) { os.Exit(testutil.RunWithBinary(m, "keyauthz-browser-", &binary)) }

// keyauthz is a running `keyauthz serve` process whose URL is http://localhost:PORT: the
// bootstrap domain's host, as a browser must use it.
type keyauthz struct{ *testutil.Process }

// startKeyauthz runs `keyauthz serve` on a free port with a temp data folder (see
// testutil.StartKeyauthz) and reads its bootstrap key; the process gets SIGTERM at cleanup.
func startKeyauthz(t *testing.T) *keyauthz {
	t.Helper()
	k := &keyauthz{testutil.StartKeyauthz(t, binary)}
	// The bootstrap domain is "localhost": requests must arrive with that host.
	k.URL = strings.Replace(k.URL, "127.0.0.1", "localhost", 1)
	return k
}

// call sends a JSON request to keyauthz's admin API with key and decodes the JSON answer into
// out; it returns the status.
func (k *keyauthz) call(t *testing.T, method, path, key string, body, out any) int {
	t.Helper()
	rd, err := testutil.Body(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, k.URL+"/api/engine/v2"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

// verdict is the result of POST /v1/data/keyauthz/decision.
type verdict struct {
	Allow   bool   `json:"allow"`
	Status  int    `json:"status"`
	Message string `json:"message"`
}

// decide asks the decision endpoint whether key may make the request method path on the
// bootstrap domain's host.
func (k *keyauthz) decide(t *testing.T, key, method, path string) verdict {
	t.Helper()
	return k.decideFrom(t, key, method, path, "")
}

// decideFrom is decide for a client at address ip (input.client_ip; none when empty).
func (k *keyauthz) decideFrom(t *testing.T, key, method, path, ip string) verdict {
	t.Helper()
	input := map[string]any{
		"method": method, "path": path, "host": "localhost",
		"headers": map[string]string{"x-api-key": key},
	}
	if ip != "" {
		input["client_ip"] = ip
	}
	body, _ := json.Marshal(map[string]any{"input": input})
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

type domain struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Domain string `json:"domain"`
}

type user struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

type apiKey struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Description  string     `json:"description"`
	Scopes       []string   `json:"scopes"`
	UserID       string     `json:"user_id"`
	Permissions  string     `json:"permissions"`
	ExpiresAt    *int64     `json:"expires_at"`
	AllowedCIDRs []string   `json:"allowed_cidrs"`
	RateLimit    *rateLimit `json:"rate_limit"`
	RotatedFrom  string     `json:"rotated_from"`
	ReplacedBy   string     `json:"replaced_by"`
	State        string     `json:"state"`
	Key          string     `json:"x_api_key"`
}

type rateLimit struct {
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
}

// bootstrapDomain is the domain keyauthz created on first start (host localhost).
func (k *keyauthz) bootstrapDomain(t *testing.T) domain {
	t.Helper()
	var ds []domain
	if st := k.call(t, "GET", "/domains", k.AdminKey, nil, &ds); st != 200 {
		t.Fatalf("list domains: %d", st)
	}
	for _, d := range ds {
		if d.Domain == "localhost" {
			return d
		}
	}
	t.Fatalf("no localhost domain in %v", ds)
	return domain{}
}

// createUser creates a user of level "user" in domain d through the API.
func (k *keyauthz) createUser(t *testing.T, d domain, name string) user {
	t.Helper()
	var u user
	if st := k.call(t, "POST", "/users", k.AdminKey, map[string]any{
		"authority_id": d.ID, "name": name, "email": strings.ReplaceAll(strings.ToLower(name), " ", "-") + "@localhost",
	}, &u); st != 201 {
		t.Fatalf("create user %s: %d", name, st)
	}
	return u
}

// createKey creates a key through the API and returns it with its plaintext.
func (k *keyauthz) createKey(t *testing.T, name, userID, permissions string, scopes ...string) apiKey {
	t.Helper()
	var key apiKey
	if st := k.call(t, "POST", "/api_keys", k.AdminKey, map[string]any{
		"name": name, "user_id": userID, "permissions": permissions, "scopes": scopes,
	}, &key); st != 201 || key.Key == "" {
		t.Fatalf("create key %s: %d", name, st)
	}
	return key
}

// listKeys is the domain's keys, by the API.
func (k *keyauthz) listKeys(t *testing.T, d domain) []apiKey {
	t.Helper()
	var keys []apiKey
	if st := k.call(t, "GET", "/api_keys?authority_id="+d.ID, k.AdminKey, nil, &keys); st != 200 {
		t.Fatalf("list keys: %d", st)
	}
	return keys
}

// browser is one headless chromium tab on the admin page, with the test's screenshot folder.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string // folder of this test's screenshots
	n     int    // screenshots taken
}

// newBrowser starts headless chromium with a fresh profile. Without /usr/bin/chromium it skips,
// with the reason, unless CI is set: there it fails, since CI must run these tests.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing and CI=%s: the browser tests must run in CI (.ci/run installs chromium)", chromiumPath, os.Getenv("CI"))
		}
		t.Skipf("%s is missing: install Debian's chromium (apt-get install chromium) to run the admin page tests, or set CI=true to make this a failure", chromiumPath)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	shots := os.Getenv("KEYAUTHZ_SCREENSHOTS")
	if shots != "" {
		shots = filepath.Join(shots, t.Name())
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		shots = t.ArtifactDir()
	}
	return &browser{t: t, ctx: ctx, shots: shots}
}

// do runs actions in order; a failure ends the test with a screenshot of the page.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.fail("%s: %v", what, err)
	}
}

// fail takes a screenshot of the page as it is, then fails the test.
func (b *browser) fail(format string, args ...any) {
	b.t.Helper()
	if buf, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot()); err == nil {
		path := filepath.Join(b.shots, "failure.png")
		if os.WriteFile(path, buf, 0o644) == nil {
			b.t.Logf("screenshot of the failure: %s", path)
		}
	}
	if text, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText`)); err == nil {
		b.t.Logf("page text:\n%s", text)
	}
	b.t.Fatalf(format, args...)
}

// shot writes a screenshot of the viewport as NN-name.png.
func (b *browser) shot(name string) string {
	b.t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	b.n++
	path := filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

// eval evaluates a JavaScript expression in the page and decodes its value.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits until the JavaScript expression is truthy.
func (b *browser) waitFor(what, expr string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.fail("waiting for %s (%s): %v", what, expr, err)
	}
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// textOf is the visible text of the element with this id.
func (b *browser) textOf(id string) string {
	b.t.Helper()
	return eval[string](b, `(document.getElementById(`+js(id)+`) || {innerText: ""}).innerText`)
}

// waitText waits until the element with this id shows text containing want.
func (b *browser) waitText(id, want string) {
	b.t.Helper()
	b.waitFor(fmt.Sprintf("#%s to show %q", id, want),
		`(document.getElementById(`+js(id)+`) || {innerText: ""}).innerText.includes(`+js(want)+`)`)
}

// click clicks the element the CSS selector finds.
func (b *browser) click(css string) {
	b.t.Helper()
	b.do("click "+css, chromedp.Click(chromedp.CSS(css)))
}

// fill types text into the field with this id, after clearing it.
func (b *browser) fill(id, text string) {
	b.t.Helper()
	if !eval[bool](b, `(() => { const e = document.getElementById(`+js(id)+`); if (!e) return false; e.value = ""; return true; })()`) {
		b.fail("no field #%s", id)
	}
	b.do("fill #"+id, chromedp.SendKeys(chromedp.ID(id), text))
}

// choose picks the option with this value in the select with this id, as a user's choice
// does (a change event follows).
func (b *browser) choose(id, value string) {
	b.t.Helper()
	ok := eval[bool](b, `(() => { const s = document.getElementById(`+js(id)+`);
		if (!s || !Array.from(s.options).some((o) => o.value === `+js(value)+`)) return false;
		s.focus(); s.value = `+js(value)+`; s.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`)
	if !ok {
		b.fail("select #%s has no option %q", id, value)
	}
}

// open loads the admin page.
func (b *browser) open(k *keyauthz) {
	b.t.Helper()
	b.do("open the admin page", chromedp.Navigate(k.URL+"/admin/"))
	b.waitFor("the page's script", `document.readyState === "complete" && !!document.activeElement`)
}

// signIn pastes key on the sign-in form and waits for the key list.
func (b *browser) signIn(key string) {
	b.t.Helper()
	b.do("sign in", chromedp.WaitVisible(chromedp.ID("signin-key")), chromedp.SetValue(chromedp.ID("signin-key"), key))
	b.click("#signin-form button[type=submit]")
	b.waitFor("the key list", `!document.getElementById("keys-view").hidden && document.getElementById("keys-count").innerText !== ""`)
}

// pageHolds reports whether s appears anywhere in the page: its text, its markup, the values
// of its fields.
func (b *browser) pageHolds(s string) bool {
	b.t.Helper()
	return eval[bool](b, `(() => { const s = `+js(s)+`;
		return document.documentElement.outerHTML.includes(s) || document.body.innerText.includes(s) ||
			Array.from(document.querySelectorAll("input, textarea, select")).some((e) => (e.value || "").includes(s)); })()`)
}

// sessionLeftovers lists what the page still holds of a signed-out session: table rows, select
// options filled from the API, typed or shown values, session storage, open dialogs, text the
// API supplied. Empty when the page is as a fresh load left it.
const sessionLeftovers = `(() => {
	const problems = [];
	const id = (x) => document.getElementById(x);
	for (const x of ["keys-rows", "users-rows", "domains-rows", "audit-rows", "domain-select", "users-domain-select", "key-user", "key-scopes",
		"import-counts-rows", "import-records-rows", "import-failures-rows"]) {
		if (id(x).children.length) problems.push("#" + x + " has " + id(x).children.length + " children");
	}
	for (const x of ["keys-count", "users-count", "domains-count", "audit-count", "session-who", "created-title", "created-note", "confirm-title",
		"confirm-text", "rotate-text", "key-scopes-extra", "page-status", "page-error", "import-status", "import-report-title", "import-bad-title",
		"import-form-error"]) {
		if (id(x).textContent !== "") problems.push("#" + x + " says " + JSON.stringify(id(x).textContent));
	}
	for (const e of document.querySelectorAll("input, textarea")) {
		if (e.type === "checkbox" ? e.checked : e.value !== "") problems.push("#" + e.id + " holds " + JSON.stringify(e.type === "checkbox" ? "checked" : e.value));
	}
	for (const e of document.querySelectorAll("[aria-invalid]")) problems.push("#" + e.id + " is marked invalid");
	for (const e of document.querySelectorAll(".field-error")) {
		if (e.id !== "signin-error" && e.textContent !== "") problems.push("#" + e.id + " says " + JSON.stringify(e.textContent));
	}
	for (const d of document.querySelectorAll("dialog[open]")) problems.push("dialog #" + d.id + " is open");
	if (sessionStorage.length) problems.push("sessionStorage holds " + Object.keys(sessionStorage).join(", "));
	for (const x of ["key-dialog-title", "user-dialog-title", "domain-dialog-title", "rotate-dialog-title"]) {
		if (!/^(Add (API key|user|domain)|Rotate API key)$/.test(id(x).textContent)) problems.push("#" + x + " says " + JSON.stringify(id(x).textContent));
	}
	for (const x of ["keys-view", "users-view", "domains-view", "audit-view", "import-view", "import-report", "import-bad", "nav"]) {
		if (!id(x).hidden) problems.push("#" + x + " is shown");
	}
	return problems;
})()`

// signOut clicks Sign out and checks that the page then holds nothing of the session: none of
// its data (sessionLeftovers) and none of the strings given (names, hosts, the key).
func (b *browser) signOut(session ...string) {
	b.t.Helper()
	b.click("#signout")
	b.waitFor("the sign-in form", `!document.getElementById("signin-view").hidden`)
	b.checkForgotten(session...)
}

// checkForgotten fails the test if the page holds anything of a session that has ended.
func (b *browser) checkForgotten(session ...string) {
	b.t.Helper()
	if left := eval[[]string](b, sessionLeftovers); len(left) > 0 {
		b.fail("after sign-out the page still holds the session's data:\n  %s", strings.Join(left, "\n  "))
	}
	for _, s := range session {
		if b.pageHolds(s) {
			b.fail("after sign-out the page still holds %q", s)
		}
	}
}
