package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Tests of the admin commands against a hostile server, or a hostile party between the CLI and
// the server: nothing it sends may drive the terminal, and the caller's key is not sent where
// anyone on the path can read it.

// terminalControls reports the first byte or rune of s that a terminal may act on: C0 controls
// but newline, DEL, C1 controls (as bytes or runes) and bidirectional controls.
func terminalControls(s string) (string, bool) {
	for i, r := range s {
		switch {
		case r == '\n':
		case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f,
			r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"): // a byte that is not UTF-8 (0x9b: CSI)
			return s[i:min(len(s), i+8)], true
		case r == 0x61c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			return s[i:min(len(s), i+8)], true
		}
	}
	return "", false
}

// fakeAPI is a loopback server answering every request with status and body, as JSON.
func fakeAPI(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCLIHostileStatusLine: the status line is the server's text; an error shows the code and
// Go's text for it, never the reason phrase the server sent.
func TestCLIHostileStatusLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				rd := bufio.NewReader(conn)
				for { // the request's head
					line, err := rd.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				_, _ = conn.Write([]byte("HTTP/1.1 500 \x1b]0;owned\x07\x1b[2J\x9b31m\u202eEvil\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			}()
		}
	}()
	env := map[string]string{"KEYAUTHZ_URL": "http://" + ln.Addr().String(), "KEYAUTHZ_API_KEY": "k"}
	for _, output := range []string{"table", "json"} {
		out, stderr, err := runCLI(t, with(env, "KEYAUTHZ_OUTPUT", output), "keys", "list")
		if err == nil {
			t.Fatalf("%s: no error; printed %q", output, out)
		}
		if bad, ok := terminalControls(err.Error() + out + stderr); ok {
			t.Errorf("%s: the error or output holds %q:\n%q", output, bad, err.Error())
		}
		if !strings.Contains(err.Error(), "GET /api/engine/v2/api_keys: 500 Internal Server Error") || strings.Contains(err.Error(), "Evil") {
			t.Errorf("%s: error %q: want the code and Go's text, not the server's", output, err)
		}
	}
}

// TestCLIJSONOutputHostile: with --output json the CLI prints exactly one JSON value, never the
// raw body, and escapes the characters Go's encoder leaves raw that a terminal acts on.
func TestCLIJSONOutputHostile(t *testing.T) {
	refused := []struct{ note, body string }{
		{"escape sequence after the value", "{\"id\": \"a\"}\x1b[2J\x1b]0;owned\x07"},
		{"two values", `{"id": "a"} {"id": "b"}`},
		{"a stray closing brace", `{"id": "a"}}`},
		{"a value then garbage", `["a"] x`},
	}
	for _, c := range refused {
		t.Run(c.note, func(t *testing.T) {
			env := map[string]string{"KEYAUTHZ_URL": fakeAPI(t, 200, c.body), "KEYAUTHZ_API_KEY": "k"}
			for _, output := range []string{"json", "table"} {
				out, _, err := runCLI(t, with(env, "KEYAUTHZ_OUTPUT", output), "keys", "show", "a")
				if err == nil || !strings.Contains(err.Error(), "not one JSON value") {
					t.Errorf("%s: err = %v, want the answer refused", output, err)
				}
				if out != "" {
					t.Errorf("%s: printed %q", output, out)
				}
			}
		})
	}

	// A name holding a C1 CSI, a bidi override, DEL, a line separator and a lone byte 0x9b:
	// valid to encoding/json (the lone byte decodes to U+FFFD), raw in its output.
	body := "{\"id\": \"a\", \"name\": \"x\u009b31mred\u202eabc\x7f\u2028\", \"description\": \"\x9b2J\", \"n\": 1.50}"
	env := map[string]string{"KEYAUTHZ_URL": fakeAPI(t, 200, body), "KEYAUTHZ_API_KEY": "k", "KEYAUTHZ_OUTPUT": "json"}
	out, _, err := runCLI(t, env, "keys", "show", "a")
	if err != nil {
		t.Fatal(err)
	}
	if bad, ok := terminalControls(out); ok {
		t.Errorf("json output holds %q:\n%s", bad, out)
	}
	for _, want := range []string{`"x\u009b31mred\u202eabc\u007f\u2028"`, `"\ufffd2J"`, `"n": 1.50`} {
		if !strings.Contains(out, want) {
			t.Errorf("json output lacks %s:\n%s", want, out)
		}
	}
	var got, orig map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("json output is not JSON: %v\n%s", err, out)
	}
	_ = json.Unmarshal([]byte(body), &orig)
	if got["name"] != orig["name"] || got["description"] != orig["description"] {
		t.Errorf("json output changed the values: %q %q, want %q %q", got["name"], got["description"], orig["name"], orig["description"])
	}
	// The order of the API's fields stays.
	if strings.Index(out, `"id"`) > strings.Index(out, `"name"`) || strings.Index(out, `"name"`) > strings.Index(out, `"description"`) {
		t.Errorf("json output reordered the fields:\n%s", out)
	}
}

// TestCLIEscapeJSONForTerminal: the escaping keeps plain text and valid JSON as they are.
func TestCLIEscapeJSONForTerminal(t *testing.T) {
	for in, want := range map[string]string{
		`{"a": "Büro ✓"}`:               `{"a": "Büro ✓"}`,
		"[\"\u0085\", \"\u200f\"]":      `["\u0085", "\u200f"]`,
		"\"\\\\\u009b\"":                `"\\\u009b"`,
		"\"\u2066x\u2069\u061c\u2029\"": `"\u2066x\u2069\u061c\u2029"`,
	} {
		if got := string(escapeJSONForTerminal([]byte(in))); got != want {
			t.Errorf("escapeJSONForTerminal(%q) = %s, want %s", in, got, want)
		}
		if !json.Valid([]byte(want)) {
			t.Errorf("%s is not JSON", want)
		}
	}
}

// TestCLIRefusesPlainHTTP: the key is not sent over http:// to a host other than this machine,
// unless --insecure-http (or KEYAUTHZ_INSECURE_HTTP) says so.
func TestCLIRefusesPlainHTTP(t *testing.T) {
	for _, u := range []string{"http://keyauthz.example.com", "http://192.0.2.1:9", "http://[2001:db8::1]:8080", "http://10.0.0.1/", "http://localhost.example.com"} {
		_, _, err := runCLI(t, map[string]string{"KEYAUTHZ_API_KEY": "k"}, "keys", "list", "--url", u)
		if err == nil || !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "use https://") || !strings.Contains(err.Error(), "--insecure-http") {
			t.Errorf("--url %s: err = %v, want a refusal that says to use https", u, err)
		}
	}
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST": true, "localhost.": true, "127.0.0.1": true, "127.1.2.3": true, "::1": true,
		"::ffff:127.0.0.1": true, "example.com": false, "10.0.0.1": false, "::": false, "0.0.0.0": false, "localhost.evil": false,
	} {
		if got := isLoopbackHost(host); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
	// A loopback host over http and any host over https pass the check (and then fail to connect
	// or succeed, which is not this test's business).
	api := fakeAPI(t, 200, `[]`)
	localhost := strings.Replace(api, "127.0.0.1", "localhost", 1)
	for _, u := range []string{api, localhost} {
		if _, stderr, err := runCLI(t, map[string]string{"KEYAUTHZ_API_KEY": "k"}, "keys", "list", "--url", u); err != nil {
			t.Errorf("--url %s: %v %s", u, err, stderr)
		}
	}
	// --insecure-http, on the command line or in the environment, lets the key go in the clear.
	for _, c := range []struct {
		env  map[string]string
		args []string
	}{
		{map[string]string{"KEYAUTHZ_API_KEY": "k"}, []string{"--insecure-http"}},
		{map[string]string{"KEYAUTHZ_API_KEY": "k", "KEYAUTHZ_INSECURE_HTTP": "true"}, nil},
		{map[string]string{"KEYAUTHZ_API_KEY": "k"}, []string{"keys", "--insecure-http", "list"}},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		args := append([]string{"keys", "list", "--url", "http://192.0.2.1:9"}, c.args...)
		if len(c.args) == 3 {
			args = append(c.args, "--url", "http://192.0.2.1:9")
		}
		var out, errOut bytes.Buffer
		err := run(ctx, args, func(k string) string { return c.env[k] }, &out, &errOut)
		cancel()
		if err == nil || errors.Is(err, errUsage) || strings.Contains(err.Error(), "use https://") {
			t.Errorf("%v %v: err = %v, want the request tried", c.env, args, err)
		}
	}
	out, _, err := runCLI(t, nil, "keys", "list", "-h")
	if err != nil || !strings.Contains(out, "--insecure-http") || !strings.Contains(out, "[$KEYAUTHZ_INSECURE_HTTP]") {
		t.Errorf("keys list -h does not document --insecure-http: %v\n%s", err, out)
	}
}

// TestCLIKeyFileModeWarning: a key file that group or others may read is used, with a warning
// on stderr, as ssh warns of a private key's mode.
func TestCLIKeyFileModeWarning(t *testing.T) {
	api := fakeAPI(t, 200, `[]`)
	for _, c := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o400, false}, {0o640, true}, {0o644, true}, {0o604, true}} {
		keyFile := filepath.Join(t.TempDir(), "admin.key")
		if err := os.WriteFile(keyFile, []byte("k\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(keyFile, c.mode); err != nil {
			t.Fatal(err)
		}
		out, stderr, err := runCLI(t, map[string]string{"KEYAUTHZ_URL": api, "KEYAUTHZ_KEY_FILE": keyFile}, "domains", "list")
		if err != nil || !strings.HasPrefix(out, "ID") {
			t.Errorf("mode %04o: the key file was not used: %v %q", c.mode, err, out)
		}
		if warned := strings.Contains(stderr, "warning:") && strings.Contains(stderr, "chmod 600"); warned != c.warn {
			t.Errorf("mode %04o: stderr %q, want a warning: %v", c.mode, stderr, c.warn)
		}
	}
}
