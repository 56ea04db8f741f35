package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs keyauthz in-process with exactly the environment env and returns its output.
func runCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(t.Context(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestHelpListsCommands: keyauthz -h, --help and help list every command of the table with its
// summary, and not serve's flags.
func TestHelpListsCommands(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, _, err := runCLI(t, nil, args...)
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			for _, cmd := range commands().subs {
				if !strings.Contains(out, "  "+cmd.name+" ") || !strings.Contains(out, cmd.summary) {
					t.Errorf("help lacks %q (%s):\n%s", cmd.name, cmd.summary, out)
				}
			}
			for _, serveFlag := range []string{"\n  --addr", "\n  -addr", "\n  --data-dir"} {
				if strings.Contains(out, serveFlag) {
					t.Errorf("help shows serve's flag %s:\n%s", serveFlag, out)
				}
			}
			if !strings.Contains(out, "KEYAUTHZ_") {
				t.Errorf("help does not mention the environment:\n%s", out)
			}
		})
	}
}

// leafCommands walks the command table: the path of every command that runs.
func leafCommands(cmd *command, path []string) [][]string {
	if cmd.subs == nil {
		return [][]string{path}
	}
	var out [][]string
	for _, s := range cmd.subs {
		out = append(out, leafCommands(s, append(append([]string{}, path...), s.name))...)
	}
	return out
}

// TestCommandHelpNeedsNoKey: `keyauthz CMD -h` (and --help, and help CMD) prints the command's
// usage with every flag and its KEYAUTHZ_* variable, exits 0, and reads no key and contacts no
// server, even with a key file that does not exist and a server that does not answer.
func TestCommandHelpNeedsNoKey(t *testing.T) {
	env := map[string]string{
		"KEYAUTHZ_KEY_FILE": filepath.Join(t.TempDir(), "missing.key"),
		"KEYAUTHZ_URL":      "http://192.0.2.1:9", // TEST-NET-1: nothing answers
	}
	for _, path := range leafCommands(commands(), nil) {
		for _, form := range []string{"-h", "--help", "help"} {
			var args []string
			if form == "help" {
				args = append([]string{"help"}, path...)
			} else {
				args = append(append([]string{}, path...), form)
			}
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				out, stderr, err := runCLI(t, env, args...)
				if err != nil {
					t.Fatalf("err = %v; stderr:\n%s", err, stderr)
				}
				if want := "Usage: keyauthz " + strings.Join(path, " "); !strings.HasPrefix(out, want) {
					t.Errorf("usage does not start with %q:\n%s", want, out)
				}
				if path[0] == "help" || path[0] == "version" {
					return // no flags
				}
				if !strings.Contains(out, "Flags:") {
					t.Errorf("usage lists no flags:\n%s", out)
				}
				// Each flag names its environment variable.
				if n, m := strings.Count(out, "\n  -"), strings.Count(out, "[$KEYAUTHZ_"); n != m {
					t.Errorf("%d flags but %d environment variables in:\n%s", n, m, out)
				}
			})
		}
	}
	// The admin commands document the key's own variable.
	out, _, _ := runCLI(t, env, "keys", "create", "-h")
	for _, want := range []string{"KEYAUTHZ_API_KEY", "[$KEYAUTHZ_KEY_FILE]", "[$KEYAUTHZ_USER_ID]", "--expires-in duration", "(default table)"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys create -h lacks %q:\n%s", want, out)
		}
	}
	// A group's -h lists its commands.
	out, _, err := runCLI(t, env, "users", "-h")
	if err != nil || !strings.Contains(out, "  update ") || !strings.Contains(out, "[$KEYAUTHZ_URL]") {
		t.Errorf("users -h: %v\n%s", err, out)
	}
}

// TestCommandUsageErrors: a bad command line is an error wrapping errUsage (main exits 2) with a
// message that says what is wrong and where to look, and nothing is sent.
func TestCommandUsageErrors(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("not-used\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{"KEYAUTHZ_URL": "http://192.0.2.1:9", "KEYAUTHZ_KEY_FILE": keyFile}
	cases := []struct {
		note string
		env  map[string]string
		args []string
		want []string
	}{
		{"unknown command", nil, []string{"frobnicate"}, []string{`unknown command "frobnicate"`, "serve, keys, domains, users", "keyauthz help"}},
		{"unknown subcommand", nil, []string{"keys", "revoke"}, []string{`keys: unknown command "revoke"`, "list, show, create, update, delete, rotate"}},
		{"missing subcommand", nil, []string{"domains"}, []string{"domains: missing command"}},
		{"unknown flag", nil, []string{"keys", "list", "--colour"}, []string{"keys list: flag provided but not defined: -colour", "keyauthz keys list -h"}},
		{"unknown flag of serve", nil, []string{"serve", "--colour"}, []string{"colour"}},
		{"update has no user id", nil, []string{"keys", "update", "ID", "--user-id", "u"}, []string{"keys update: flag provided but not defined: -user-id"}},
		{"bad output", nil, []string{"users", "list", "--output", "yaml"}, []string{`invalid value "yaml" for flag -output: want table or json`}},
		{"missing id", nil, []string{"keys", "show"}, []string{"keys show: missing API_KEY_ID"}},
		{"extra argument", nil, []string{"domains", "delete", "a", "b"}, []string{`domains delete: unexpected arguments ["b"]`}},
		{"expiry twice", base, []string{"keys", "create", "--expires-in", "1h", "--expires-at", "never"}, []string{"--expires-at and --expires-in are exclusive"}},
		{"bad expiry", base, []string{"keys", "create", "--expires-at", "tomorrow"}, []string{`--expires-at: "tomorrow"`}},
		{"update of nothing", base, []string{"users", "update", "some-id"}, []string{"users update: nothing to change"}},
		{"bad environment value", map[string]string{"KEYAUTHZ_LIMIT": "many"}, []string{"keys", "list"}, []string{`KEYAUTHZ_LIMIT="many"`}},
		{"key twice in the environment", map[string]string{"KEYAUTHZ_API_KEY": "k", "KEYAUTHZ_KEY_FILE": keyFile}, []string{"keys", "list"}, []string{"KEYAUTHZ_API_KEY and KEYAUTHZ_KEY_FILE are both set"}},
		{"bad url", map[string]string{"KEYAUTHZ_API_KEY": "k"}, []string{"keys", "list", "--url", "localhost:8080"}, []string{`--url "localhost:8080"`}},
		{"version takes no arguments", nil, []string{"version", "now"}, []string{"version: unexpected arguments"}},
		{"bundle build takes no arguments", nil, []string{"bundle", "build", "x"}, []string{"bundle build: unexpected arguments"}},
		{"help of an unknown command", nil, []string{"help", "keys", "revoke"}, []string{`unknown command "keys revoke"`}},
	}
	for _, c := range cases {
		t.Run(c.note, func(t *testing.T) {
			_, _, err := runCLI(t, c.env, c.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if c.note != "unknown flag of serve" && !errors.Is(err, errUsage) {
				t.Errorf("error %q does not wrap errUsage", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestCLIEnvFallback: setFromEnv fills the flags the command line left unset from
// KEYAUTHZ_<FLAG>, lets the command line win, counts an environment value as given, and
// reports every bad value.
func TestCLIEnvFallback(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	keyFile := fs.String("key-file", "default", "")
	url := fs.String("url", "default", "")
	limit := fs.Int("limit", 0, "")
	offset := fs.Int("offset", 0, "")
	untouched := fs.String("q", "default", "")
	env := map[string]string{
		"KEYAUTHZ_KEY_FILE": "from-env", "KEYAUTHZ_URL": "from-env",
		"KEYAUTHZ_LIMIT": "7", "KEYAUTHZ_OFFSET": "x",
	}
	if err := fs.Parse([]string{"--url", "from-args"}); err != nil {
		t.Fatal(err)
	}
	err := setFromEnv(fs, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), `KEYAUTHZ_OFFSET="x"`) {
		t.Errorf("bad value: err = %v", err)
	}
	if *keyFile != "from-env" || *url != "from-args" || *limit != 7 || *offset != 0 || *untouched != "default" {
		t.Errorf("key-file %q url %q limit %d offset %d q %q", *keyFile, *url, *limit, *offset, *untouched)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !given["key-file"] || !given["limit"] || given["q"] {
		t.Errorf("given = %v: want key-file and limit given, q not", given)
	}
	for flagName, want := range map[string]string{"key-file": "KEYAUTHZ_KEY_FILE", "o": "KEYAUTHZ_O", "sys-admin": "KEYAUTHZ_SYS_ADMIN"} {
		if got := envName(flagName); got != want {
			t.Errorf("envName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

// TestCLIParseInterspersed: flags may follow the positional arguments; "--" ends the flags.
func TestCLIParseInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	out := fs.String("output", "table", "")
	pos, err := parseInterspersed(fs, []string{"ID", "--output", "json", "--", "--not-a-flag"})
	if err != nil || *out != "json" || strings.Join(pos, " ") != "ID --not-a-flag" {
		t.Errorf("pos %q output %q err %v", pos, *out, err)
	}
}

// TestCLICleanText: text from the API cannot drive the terminal.
func TestCLICleanText(t *testing.T) {
	for in, want := range map[string]string{
		"panel":                    "panel",
		"Büro":                     "Büro",
		"evil\x1b[2Jname":          `"evil\x1b[2Jname"`,
		"tab\there":                `"tab\there"`,
		"abc\u202edcba":            `"abc\u202edcba"`,
		string([]byte{0xff}) + "x": `"\xffx"`,
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %s, want %s", in, got, want)
		}
	}
}
