// Package gateway tests keyauthz behind a real gateway (nginx auth_request): the binary as a
// user runs it, the configuration of docs/gateways.md, and a recording upstream.
package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/testutil"
)

var binary string // the keyauthz binary, built once by TestMain

func TestMain(m *testing.M) { os.Exit(testutil.RunWithBinary(m, "keyauthz-gateway-", &binary)) }

// keyauthz is a running `keyauthz serve` process.
type keyauthz = testutil.Process

// startKeyauthz runs `keyauthz serve` on a free port with a temp data folder and extra
// arguments (see testutil.StartKeyauthz); the process gets SIGTERM at cleanup.
func startKeyauthz(tb testing.TB, extra ...string) *keyauthz {
	tb.Helper()
	return testutil.StartKeyauthz(tb, binary, extra...)
}

// call sends a JSON request to keyauthz's admin API with key and decodes the JSON answer.
func call(tb testing.TB, method, url, key string, body, out any) int {
	tb.Helper()
	rd, err := testutil.Body(body)
	if err != nil {
		tb.Fatal(err)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	req.Host = "localhost"
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			tb.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

type createdKey struct {
	ID     string `json:"id"`
	Key    string `json:"x_api_key"`
	UserID string `json:"user_id"`
}

// createPanelKey creates, through the admin API, a user and a booking-panel key for it.
func createPanelKey(tb testing.TB, k *keyauthz, name string) createdKey {
	tb.Helper()
	var domains []struct {
		ID     string `json:"id"`
		Domain string `json:"domain"`
	}
	if st := call(tb, "GET", k.URL+"/api/engine/v2/domains", k.AdminKey, nil, &domains); st != 200 || len(domains) == 0 {
		tb.Fatalf("list domains: %d %v", st, domains)
	}
	var user struct {
		ID string `json:"id"`
	}
	if st := call(tb, "POST", k.URL+"/api/engine/v2/users", k.AdminKey, map[string]any{
		"authority_id": domains[0].ID, "name": name, "email": name + "@localhost",
	}, &user); st != 201 {
		tb.Fatalf("create user: %d", st)
	}
	var key createdKey
	if st := call(tb, "POST", k.URL+"/api/engine/v2/api_keys", k.AdminKey, map[string]any{
		"name": name, "user_id": user.ID, "permissions": "user",
		"scopes": []string{"users.read", "systems.read", "control", "zones.read", "metadata.read"},
	}, &key); st != 201 || key.Key == "" {
		tb.Fatalf("create key: %d", st)
	}
	return key
}

// upstream is the application behind the gateway: it records what reaches it.
type upstream struct {
	URL  string
	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	Method, URI, UserID, KeyID string
}

func startUpstream(tb testing.TB) *upstream {
	tb.Helper()
	u := &upstream{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{r.Method, r.RequestURI, r.Header.Get("X-Auth-User-Id"), r.Header.Get("X-Auth-Key-Id")})
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"upstream":true}`)
	}))
	tb.Cleanup(srv.Close)
	u.URL = srv.URL
	return u
}

func (u *upstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

type nginxParams struct {
	Prefix   string // a folder for logs, temp files and the pid
	User     string // "root" when running as root, else ""
	Listen   string // 127.0.0.1:PORT
	Keyauthz string // keyauthz's host:port
	Upstream string // the application's host:port
	// Without is a line of the documented block to leave out ("" for none): a configuration
	// that differs from the docs, as an older one would.
	Without string
}

// nginxConfig is a whole nginx.conf for a test: the block of docs/gateways.md between its
// nginx-config markers, as written, with only its addresses replaced, inside the scaffolding a
// test needs (a writable prefix for logs, temp files and the pid). Reading the block from the
// docs means the tested configuration and the documented one cannot drift apart.
func nginxConfig(tb testing.TB, p nginxParams) string {
	tb.Helper()
	doc, err := os.ReadFile("../../docs/gateways.md")
	if err != nil {
		tb.Fatal(err)
	}
	_, rest, ok1 := strings.Cut(string(doc), "<!-- nginx-config: begin -->\n```nginx\n")
	block, _, ok2 := strings.Cut(rest, "```\n<!-- nginx-config: end -->")
	if !ok1 || !ok2 {
		tb.Fatal("docs/gateways.md: no ```nginx block between the nginx-config markers")
	}
	for _, r := range []struct{ doc, test string }{
		{"server 127.0.0.1:8080;", "server " + p.Keyauthz + ";"},
		{"server 127.0.0.1:3000;", "server " + p.Upstream + ";"},
		{"listen 80;", "listen " + p.Listen + ";"},
	} {
		if n := strings.Count(block, r.doc); n != 1 {
			tb.Fatalf("docs/gateways.md: the nginx block has %q %d times, want once", r.doc, n)
		}
		block = strings.Replace(block, r.doc, r.test, 1)
	}
	if p.Without != "" {
		if n := strings.Count(block, p.Without+"\n"); n != 1 {
			tb.Fatalf("docs/gateways.md: the nginx block has the line %q %d times, want once", p.Without, n)
		}
		block = strings.Replace(block, p.Without+"\n", "", 1)
	}
	var b strings.Builder
	if p.User != "" {
		fmt.Fprintf(&b, "user %s;\n", p.User)
	}
	fmt.Fprintf(&b, "worker_processes 1;\npid %[1]s/nginx.pid;\nerror_log %[1]s/error.log warn;\n"+
		"events {\n    worker_connections 1024;\n}\n"+
		"http {\n    access_log %[1]s/access.log;\n    client_body_temp_path %[1]s/client_body;\n"+
		"    proxy_temp_path %[1]s/proxy;\n    fastcgi_temp_path %[1]s/fastcgi;\n"+
		"    uwsgi_temp_path %[1]s/uwsgi;\n    scgi_temp_path %[1]s/scgi;\n\n%[2]s}\n", p.Prefix, block)
	return b.String()
}

// nginxBinary returns the nginx executable, or skips when it is missing outside CI.
func nginxBinary(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("nginx")
	if err == nil {
		return path
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("nginx is not installed, and CI=%s: the gateway test must run in CI", os.Getenv("CI"))
	}
	tb.Skip("nginx is not installed (install it, or set CI=true to make this a failure)")
	return ""
}

// startNginx writes the configuration into a temp folder and runs nginx in the foreground; it
// returns nginx's base URL once it accepts connections. without, if given, is a line of the
// documented configuration to leave out (nginxParams.Without).
func startNginx(tb testing.TB, keyauthzAddr, upstreamURL string, without ...string) string {
	tb.Helper()
	bin := nginxBinary(tb)
	prefix := tb.TempDir()
	p := nginxParams{Prefix: prefix, Listen: freePort(tb), Keyauthz: keyauthzAddr, Upstream: strings.TrimPrefix(upstreamURL, "http://")}
	if len(without) > 0 {
		p.Without = without[0]
	}
	if os.Geteuid() == 0 {
		p.User = "root" // workers must reach the temp folders owned by this user
	}
	conf := nginxConfig(tb, p)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	out := &testutil.SyncBuffer{}
	cmd := exec.Command(bin, "-p", prefix, "-c", confPath, "-e", filepath.Join(prefix, "error.log"), "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // graceful stop of master and workers
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if tb.Failed() {
			errLog, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			tb.Logf("nginx output:\n%s\nerror.log:\n%s", out, errLog)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			errLog, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			tb.Fatalf("nginx exited:\n%s\n%s\nconfig:\n%s", out, errLog, conf)
		default:
		}
		c, err := net.DialTimeout("tcp", p.Listen, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return "http://" + p.Listen
		}
		if time.Now().After(deadline) {
			tb.Fatalf("nginx did not listen on %s: %v\n%s", p.Listen, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}
