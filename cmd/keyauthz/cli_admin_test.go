package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// End-to-end tests of the admin-API commands (keys, domains, users) against a real keyauthz
// serve on loopback with a real Badger folder, as an operator runs them.

// cliServer is a started server and the environment that points the CLI at it with the
// bootstrap admin key.
func cliServer(t *testing.T) (*testServer, map[string]string) {
	t.Helper()
	ts := startServer(t, "")
	// The bootstrap domain is "localhost": the CLI must name that host, not 127.0.0.1.
	url := strings.Replace(ts.URL, "127.0.0.1", "localhost", 1)
	return ts, map[string]string{"KEYAUTHZ_URL": url, "KEYAUTHZ_API_KEY": ts.AdminKey}
}

// with returns env with the extra variables.
func with(env map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

var columnGap = regexp.MustCompile(`\S(  +)\S`)

// parseTable reads a list table: the header's words (separated by two spaces or more) name
// columns that start where the header's words start. A value in the wrong place (a table not
// aligned) ends up in the wrong column and fails the test's comparisons.
func parseTable(t *testing.T, out string) []map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := lines[0]
	starts := []int{0}
	for _, m := range columnGap.FindAllStringSubmatchIndex(header, -1) {
		starts = append(starts, m[3])
	}
	names := make([]string, len(starts))
	for i, start := range starts {
		end := len(header)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		names[i] = strings.TrimSpace(header[start:end])
	}
	var rows []map[string]string
	for _, line := range lines[1:] {
		row := map[string]string{}
		for i, start := range starts {
			if start > len(line) {
				t.Fatalf("row %q is shorter than the header %q", line, header)
			}
			if i > 0 && line[start-1] != ' ' {
				t.Fatalf("column %s of row %q is not aligned with the header %q", names[i], line, header)
			}
			end := len(line)
			if i+1 < len(starts) {
				end = min(starts[i+1], len(line))
			}
			row[names[i]] = strings.TrimSpace(line[start:end])
		}
		rows = append(rows, row)
	}
	return rows
}

var recordLine = regexp.MustCompile(`^(\S+(?: \S+)*)( {2,})(.*)$`)

// parseRecord reads a record's table: one "FIELD  value" line per field, the values aligned.
func parseRecord(t *testing.T, out string) map[string]string {
	t.Helper()
	rec := map[string]string{}
	col := -1
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		m := recordLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("record line %q is not FIELD  VALUE; output:\n%s", line, out)
		}
		if at := len(m[1]) + len(m[2]); col == -1 {
			col = at
		} else if at != col {
			t.Fatalf("record values are not aligned (%d, %d):\n%s", col, at, out)
		}
		rec[m[1]] = m[3]
	}
	return rec
}

func findRow(rows []map[string]string, id string) map[string]string {
	for _, r := range rows {
		if r["ID"] == id {
			return r
		}
	}
	return nil
}

// TestCLIResources drives every command of keys, domains and users against a real server, in
// table and in JSON output: create a domain, a user in it and a key for the user; list, show and
// update each; use the key printed once; delete the key, the user and the domain.
func TestCLIResources(t *testing.T) {
	ts, env := cliServer(t)
	for _, output := range []string{"table", "json"} {
		t.Run(output, func(t *testing.T) {
			env := with(env, "KEYAUTHZ_OUTPUT", output)
			cli := func(args ...string) (string, string) {
				t.Helper()
				out, stderr, err := runCLI(t, env, args...)
				if err != nil {
					t.Fatalf("keyauthz %q: %v\nstderr: %s", args, err, stderr)
				}
				return out, stderr
			}
			// record runs a command printing one record and returns it as field -> text, in the
			// table's names (ID, NAME, ...) whatever the output.
			record := func(args ...string) (map[string]string, string) {
				t.Helper()
				out, stderr := cli(args...)
				if output == "table" {
					return parseRecord(t, out), stderr
				}
				var obj map[string]any
				if err := json.Unmarshal([]byte(out), &obj); err != nil {
					t.Fatalf("keyauthz %q printed %q, not JSON: %v", args, out, err)
				}
				return jsonAsRecord(obj), stderr
			}
			list := func(args ...string) []map[string]string {
				t.Helper()
				out, _ := cli(args...)
				if output == "table" {
					return parseTable(t, out)
				}
				var objs []map[string]any
				if err := json.Unmarshal([]byte(out), &objs); err != nil {
					t.Fatalf("keyauthz %q printed %q, not a JSON list: %v", args, out, err)
				}
				var rows []map[string]string
				for _, o := range objs {
					rows = append(rows, jsonAsRecord(o))
				}
				return rows
			}
			host := "cli-" + output + ".example.com"

			// Domains.
			dom, _ := record("domains", "create", "--name", "CLI "+output, "--domain", host, "--description", "made by the CLI test")
			if dom["DOMAIN"] != host || dom["ID"] == "" {
				t.Fatalf("domains create: %v", dom)
			}
			if row := findRow(list("domains", "list"), dom["ID"]); row == nil || row["DOMAIN"] != host || row["NAME"] != "CLI "+output {
				t.Errorf("domains list: the new domain's row is %v", row)
			}
			if got, _ := record("domains", "update", dom["ID"], "--description", "changed"); got["DESCRIPTION"] != "changed" || got["NAME"] != "CLI "+output {
				t.Errorf("domains update: %v", got)
			}
			if got, _ := record("domains", "show", dom["ID"]); got["DESCRIPTION"] != "changed" {
				t.Errorf("domains show: %v", got)
			}

			// Users, with the shared flags before the subcommand as well.
			user, _ := record("users", "create", "--authority-id", dom["ID"], "--name", "Ada", "--email", "ada@"+host, "--groups", "ops,desk", "--support")
			if user["DOMAIN"] != dom["ID"] || user["GROUPS"] != "ops,desk" || user["SUPPORT"] != "true" || user["SYS ADMIN"] != "false" {
				t.Fatalf("users create: %v", user)
			}
			rows := list("users", "--url", env["KEYAUTHZ_URL"], "list", "--authority-id", dom["ID"])
			if len(rows) != 1 || rows[0]["ID"] != user["ID"] || rows[0]["EMAIL"] != "ada@"+host {
				t.Errorf("users list --authority-id: %v", rows)
			}
			if got, _ := record("users", "update", user["ID"], "--name", "Ada L.", "--groups", ""); got["NAME"] != "Ada L." || got["GROUPS"] != "-" || got["SUPPORT"] != "true" {
				t.Errorf("users update: %v", got)
			}
			if got, _ := record("users", "show", user["ID"]); got["NAME"] != "Ada L." {
				t.Errorf("users show: %v", got)
			}

			// Keys: the plaintext is printed once, with a warning.
			key, stderr := record("keys", "create", "--name", "panel "+output, "--description", "booking panel",
				"--user-id", user["ID"], "--scopes", "systems.read,control", "--permissions", "support", "--expires-in", "24h")
			if key["API KEY"] == "" || key["API KEY"] == "-" || !strings.Contains(stderr, "only time it is shown") {
				t.Fatalf("keys create: no key or no warning: %v, stderr %q", key, stderr)
			}
			if key["SCOPES"] != "systems.read,control" || key["PERMISSIONS"] != "support" || key["USER"] != user["ID"] || key["EXPIRES"] == "never" {
				t.Errorf("keys create: %v", key)
			}
			// The key printed works on its domain's host.
			if r := ts.must(t, call{method: "GET", path: "/api/engine/v2/api_keys/inspect", key: key["API KEY"], host: host}); r.status != 200 {
				t.Errorf("the key printed by keys create: inspect is %d %s", r.status, r.body)
			}

			rows = list("keys", "list", "--authority-id", dom["ID"], "--q", "panel")
			if len(rows) != 1 || rows[0]["ID"] != key["ID"] || rows[0]["NAME"] != "panel "+output || rows[0]["LAST USED"] == "" {
				t.Errorf("keys list: %v", rows)
			}
			if k := rows[0]["API KEY"]; k != "" && k != "-" {
				t.Errorf("keys list shows the key: %v", rows[0])
			}
			got, _ := record("keys", "show", key["ID"])
			if got["NAME"] != "panel "+output || got["DESCRIPTION"] != "booking panel" || (got["API KEY"] != "" && got["API KEY"] != "-") {
				t.Errorf("keys show: %v", got)
			}
			got, stderr = record("keys", "update", key["ID"], "--name", "panel 2", "--expires-at", "never", "--scopes", "systems.read")
			if got["NAME"] != "panel 2" || got["EXPIRES"] != "never" || got["SCOPES"] != "systems.read" || got["DESCRIPTION"] != "booking panel" || stderr != "" {
				t.Errorf("keys update: %v (stderr %q)", got, stderr)
			}

			// Deletes: the key, the user, the domain; each is gone afterwards.
			for _, del := range []struct{ resource, id string }{{"keys", key["ID"]}, {"users", user["ID"]}, {"domains", dom["ID"]}} {
				out, _ := cli(del.resource, "delete", del.id)
				if want := ""; output == "json" && out != want {
					t.Errorf("%s delete --output json printed %q", del.resource, out)
				}
				if output == "table" && !strings.Contains(out, "deleted") {
					t.Errorf("%s delete printed %q", del.resource, out)
				}
				if _, _, err := runCLI(t, env, del.resource, "show", del.id); err == nil || !strings.Contains(err.Error(), "404 Not Found") {
					t.Errorf("%s show after delete: want a 404 error, got %v", del.resource, err)
				}
			}
		})
	}
}

// jsonAsRecord names a JSON record's fields as the tables do, with the tables' text for
// lists, booleans and times that the test compares.
func jsonAsRecord(obj map[string]any) map[string]string {
	names := map[string]string{
		"id": "ID", "name": "NAME", "domain": "DOMAIN", "description": "DESCRIPTION",
		"email": "EMAIL", "sys_admin": "SYS ADMIN", "support": "SUPPORT", "groups": "GROUPS",
		"scopes": "SCOPES", "permissions": "PERMISSIONS", "user_id": "USER", "x_api_key": "API KEY",
		"expires_at": "EXPIRES", "last_used_at": "LAST USED",
	}
	rec := map[string]string{}
	for k, v := range obj {
		name := names[k]
		switch k {
		case "authority_id":
			if _, isUser := obj["email"]; isUser {
				name = "DOMAIN"
			}
		}
		if name == "" {
			continue
		}
		switch v := v.(type) {
		case nil:
			rec[name] = "-"
			if k == "expires_at" || k == "last_used_at" {
				rec[name] = "never"
			}
		case string:
			rec[name] = v
		case bool:
			if v {
				rec[name] = "true"
			} else {
				rec[name] = "false"
			}
		case []any:
			var parts []string
			for _, p := range v {
				parts = append(parts, p.(string))
			}
			rec[name] = strings.Join(parts, ",")
			if len(parts) == 0 {
				rec[name] = "-"
			}
		default:
			b, _ := json.Marshal(v)
			rec[name] = string(b)
		}
	}
	return rec
}

// TestCLIAPIErrors: the API's refusals are shown clearly, with a non-zero exit: a 422 field by
// field, a 403 with the policy's message, a 401 with a hint, a 404.
func TestCLIAPIErrors(t *testing.T) {
	ts, env := cliServer(t)
	me := struct {
		User struct{ ID string } `json:"user"`
	}{}
	if err := json.Unmarshal(ts.admin(t, "GET", "/api/engine/v2/api_keys/inspect", nil, 200).body, &me); err != nil {
		t.Fatal(err)
	}
	// A user-level key without the api_keys scope.
	var weak struct {
		XAPIKey string `json:"x_api_key"`
	}
	body := ts.admin(t, "POST", "/api/engine/v2/api_keys", map[string]any{"name": "weak", "user_id": me.User.ID, "scopes": []string{"systems.read"}}, 201).body
	if err := json.Unmarshal(body, &weak); err != nil || weak.XAPIKey == "" {
		t.Fatalf("weak key: %s (%v)", body, err)
	}

	cases := []struct {
		note string
		env  map[string]string
		args []string
		want []string
	}{
		{"422 lists every failed field", env, []string{"keys", "create", "--description", "no name, no user"},
			[]string{"POST /api/engine/v2/api_keys: 422 Unprocessable Entity: validation failed", "\n  name: is required", "\n  user_id: is required"}},
		{"422 of a domain taken", env, []string{"domains", "create", "--name", "again", "--domain", "localhost"},
			[]string{"422", "\n  domain: has already been taken"}},
		{"403 names the missing scope", with(env, "KEYAUTHZ_API_KEY", weak.XAPIKey), []string{"keys", "list"},
			[]string{"GET /api/engine/v2/api_keys: 403 Forbidden: missing scope: api_keys"}},
		{"403 in json output too", with(env, "KEYAUTHZ_API_KEY", weak.XAPIKey, "KEYAUTHZ_OUTPUT", "json"), []string{"domains", "list"},
			[]string{"403 Forbidden: missing scope: domains"}},
		{"401 with a hint", with(env, "KEYAUTHZ_API_KEY", "not-a-key"), []string{"users", "list"},
			[]string{"401 Unauthorized: unknown X-API-Key", "check the caller's key"}},
		{"404", env, []string{"users", "show", "no-such-user"}, []string{"GET /api/engine/v2/users/no-such-user: 404 Not Found"}},
		{"400 of a bad scope", env, []string{"keys", "create", "--name", "bad", "--user-id", me.User.ID, "--scopes", "a.b.c"},
			[]string{"400 Bad Request: invalid scope"}},
		{"no server", with(env, "KEYAUTHZ_URL", "http://localhost:1"), []string{"domains", "list"},
			[]string{"GET /api/engine/v2/domains:", "refused"}},
		{"no key file", map[string]string{"KEYAUTHZ_URL": env["KEYAUTHZ_URL"], "KEYAUTHZ_KEY_FILE": filepath.Join(t.TempDir(), "none")}, []string{"keys", "list"},
			[]string{"no caller key: set KEYAUTHZ_API_KEY or --key-file"}},
	}
	for _, c := range cases {
		t.Run(c.note, func(t *testing.T) {
			out, _, err := runCLI(t, c.env, c.args...)
			if err == nil {
				t.Fatalf("no error; printed %q", out)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if out != "" {
				t.Errorf("printed %q on a refusal", out)
			}
		})
	}
}

// TestCLIKeySources: the caller's key comes from --key-file on the command line over
// KEYAUTHZ_API_KEY, else from KEYAUTHZ_API_KEY, else from KEYAUTHZ_KEY_FILE; a flag on the
// command line wins over its variable (--output over KEYAUTHZ_OUTPUT).
func TestCLIKeySources(t *testing.T) {
	ts, env := cliServer(t)
	keyFile := filepath.Join(t.TempDir(), "admin.key")
	if err := os.WriteFile(keyFile, []byte(ts.AdminKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := env["KEYAUTHZ_URL"]
	for _, c := range []struct {
		note string
		env  map[string]string
		args []string
	}{
		{"KEYAUTHZ_API_KEY", map[string]string{"KEYAUTHZ_URL": url, "KEYAUTHZ_API_KEY": ts.AdminKey}, nil},
		{"KEYAUTHZ_KEY_FILE", map[string]string{"KEYAUTHZ_URL": url, "KEYAUTHZ_KEY_FILE": keyFile}, nil},
		{"--key-file over KEYAUTHZ_API_KEY", map[string]string{"KEYAUTHZ_URL": url, "KEYAUTHZ_API_KEY": "wrong"}, []string{"--key-file", keyFile}},
		{"--url over KEYAUTHZ_URL", map[string]string{"KEYAUTHZ_URL": "http://localhost:1", "KEYAUTHZ_API_KEY": ts.AdminKey}, []string{"--url", url}},
	} {
		t.Run(c.note, func(t *testing.T) {
			out, stderr, err := runCLI(t, with(c.env, "KEYAUTHZ_OUTPUT", "json"), append([]string{"domains", "list", "--output", "table"}, c.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			rows := parseTable(t, out)
			if len(rows) != 1 || rows[0]["DOMAIN"] != "localhost" {
				t.Errorf("domains list: %v", rows)
			}
		})
	}
}

// TestCLIListPaging: a table of a partial page says how many there are and how to see more.
func TestCLIListPaging(t *testing.T) {
	ts, env := cliServer(t)
	me := struct {
		User struct{ ID string } `json:"user"`
	}{}
	if err := json.Unmarshal(ts.admin(t, "GET", "/api/engine/v2/api_keys/inspect", nil, 200).body, &me); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"page a", "page b", "page c"} {
		if _, stderr, err := runCLI(t, env, "keys", "create", "--name", name, "--user-id", me.User.ID); err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
	}
	out, stderr, err := runCLI(t, env, "keys", "list", "--q", "page", "--limit", "2", "--offset", "1")
	if err != nil {
		t.Fatal(err)
	}
	rows := parseTable(t, out)
	if len(rows) != 2 || rows[0]["NAME"] != "page b" || rows[1]["NAME"] != "page c" || rows[0]["SCOPES"] != "-" || rows[0]["EXPIRES"] != "never" {
		t.Errorf("keys list --limit 2 --offset 1: %v", rows)
	}
	if stderr != "" {
		t.Errorf("a last page printed %q", stderr)
	}
	_, stderr, err = runCLI(t, env, "keys", "list", "--q", "page", "--limit", "1")
	if err != nil || !strings.Contains(stderr, "showing 1-1 of 3 API keys; --offset 1 for more") {
		t.Errorf("a first page: stderr %q, err %v", stderr, err)
	}
}
