package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestDebugAddrValidation: --debug-addr (and KEYAUTHZ_DEBUG_ADDR) takes only a loopback
// host:port; off by default.
func TestDebugAddrValidation(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // "" for valid
		want    string // the configured address when valid
	}{
		{"off by default", nil, nil, "", ""},
		{"ipv4 loopback", []string{"--debug-addr", "127.0.0.1:6060"}, nil, "", "127.0.0.1:6060"},
		{"ipv6 loopback", []string{"--debug-addr", "[::1]:6060"}, nil, "", "[::1]:6060"},
		{"localhost", []string{"--debug-addr", "localhost:6060"}, nil, "", "localhost:6060"},
		{"from the environment", nil, map[string]string{"KEYAUTHZ_DEBUG_ADDR": "127.0.0.1:7070"}, "", "127.0.0.1:7070"},
		{"all interfaces", []string{"--debug-addr", ":6060"}, nil, "must be a loopback address", ""},
		{"wildcard", []string{"--debug-addr", "0.0.0.0:6060"}, nil, "must be a loopback address", ""},
		{"a routable address", []string{"--debug-addr", "10.0.0.1:6060"}, nil, "must be a loopback address", ""},
		{"a remote name", []string{"--debug-addr", "example.com:6060"}, nil, "must be a loopback address", ""},
		{"no port", []string{"--debug-addr", "127.0.0.1"}, nil, `--debug-addr "127.0.0.1"`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseServeFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			case tc.wantErr == "" && cfg.DebugAddr != tc.want:
				t.Errorf("DebugAddr %q, want %q", cfg.DebugAddr, tc.want)
			}
		})
	}
}

// TestDebugListener: the debug listener serves the runtime profiles under /debug/pprof/ for
// GET and nothing else; stop ends it.
func TestDebugListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := serveDebug(ln, slog.New(slog.DiscardHandler))
	base := "http://" + ln.Addr().String()
	cases := []struct {
		method, path string
		status       int
		bodyHas      string
	}{
		{"GET", "/debug/pprof/", 200, "heap"},
		{"GET", "/debug/pprof/heap?debug=1", 200, "heap profile"},
		{"GET", "/debug/pprof/allocs?debug=1", 200, "heap profile"},
		{"GET", "/debug/pprof/goroutine?debug=1", 200, "goroutine profile"},
		{"GET", "/debug/pprof/cmdline", 200, ""},
		{"POST", "/debug/pprof/heap", 405, ""},
		{"GET", "/", 404, ""},
		{"GET", "/v1/data/keyauthz/decision", 404, ""},
		{"GET", "/metrics", 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, base+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %.200s", resp.StatusCode, tc.status, b)
			}
			if !strings.Contains(string(b), tc.bodyHas) {
				t.Errorf("body does not mention %q: %.200s", tc.bodyHas, b)
			}
		})
	}
	stop()
	if _, err := http.Get(base + "/debug/pprof/"); err == nil {
		t.Error("the debug listener still answers after stop")
	}
}
