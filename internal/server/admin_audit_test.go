package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// The audit log over HTTP (docs/audit.md): every admin route that writes leaves exactly one
// record naming the calling key, its user and the request; a refused write leaves none; the
// listing filters and pages; no record holds a secret or a hash.

const auditPath = "/api/engine/v2/audit"

// adminCall sends method path with body (JSON, or none when nil) as the key; it returns the
// status, the body and the response's X-Request-Id.
func (f *fixture) adminCall(t *testing.T, key, method, path string, body any) (int, []byte, string) {
	t.Helper()
	req := newRequest(t, method, f.URL+path, body)
	req.Host = "localhost"
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	if body == nil && method != "GET" && method != "DELETE" {
		req.Header.Set("Content-Type", "application/json")
	}
	status, out, h := send(t, req)
	return status, out, h.Get("X-Request-Id")
}

// audit lists the audit log with the query q as the fixture's admin key.
func (f *fixture) audit(t *testing.T, q string) ([]keys.AuditRecord, http.Header) {
	t.Helper()
	req := newRequest(t, "GET", f.URL+auditPath+q, nil)
	req.Host = "localhost"
	req.Header.Set("X-API-Key", f.Admin)
	status, body, h := send(t, req)
	if status != http.StatusOK {
		t.Fatalf("GET audit%s: %d %s", q, status, body)
	}
	var recs []keys.AuditRecord
	if err := json.Unmarshal(body, &recs); err != nil {
		t.Fatalf("GET audit%s: %v: %s", q, err, body)
	}
	return recs, h
}

// auditTotal is the number of records in the log.
func (f *fixture) auditTotal(t *testing.T) int {
	t.Helper()
	_, h := f.audit(t, "?limit=0")
	n, err := strconv.Atoi(h.Get("X-Total-Count"))
	if err != nil {
		t.Fatalf("X-Total-Count %q", h.Get("X-Total-Count"))
	}
	return n
}

// idOf returns the "id" of a JSON object body.
func idOf(t *testing.T, body []byte) string {
	t.Helper()
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.ID == "" {
		t.Fatalf("no id in %s (%v)", body, err)
	}
	return v.ID
}

func TestAuditEveryAdminRoute(t *testing.T) {
	f := newFixture(t)
	adminKeyID, _, _ := keys.ParseKey(f.Admin)
	var domainID, userID, keyID, newKeyID string
	plaintexts := []string{f.Admin}
	for _, c := range []struct {
		name         string
		method       string
		path         func() string
		body         any
		status       int
		action, kind string
		target       func() string
		field        string // a field the record must show changed
		old, new     string // its values
		after        func(body []byte)
	}{
		{"create domain", "POST", func() string { return "/api/engine/v2/domains" }, map[string]any{"name": "Acme", "domain": "acme.example"},
			201, keys.AuditCreate, keys.KindDomain, func() string { return domainID }, "domain", `null`, `"acme.example"`,
			func(b []byte) { domainID = idOf(t, b) }},
		{"patch domain", "PATCH", func() string { return "/api/engine/v2/domains/" + domainID }, map[string]any{"description": "tenant"},
			200, keys.AuditUpdate, keys.KindDomain, func() string { return domainID }, "description", `""`, `"tenant"`, nil},
		{"put domain", "PUT", func() string { return "/api/engine/v2/domains/" + domainID }, map[string]any{"name": "Acme Inc", "domain": "acme.example", "description": "tenant"},
			200, keys.AuditUpdate, keys.KindDomain, func() string { return domainID }, "name", `"Acme"`, `"Acme Inc"`, nil},
		{"create user", "POST", func() string { return "/api/engine/v2/users" }, map[string]any{"authority_id": "", "name": "Ann", "email": "ann@acme.example"},
			201, keys.AuditCreate, keys.KindUser, func() string { return userID }, "name", `null`, `"Ann"`,
			func(b []byte) { userID = idOf(t, b) }},
		{"patch user", "PATCH", func() string { return "/api/engine/v2/users/" + userID }, map[string]any{"support": true},
			200, keys.AuditUpdate, keys.KindUser, func() string { return userID }, "support", `false`, `true`, nil},
		{"put user", "PUT", func() string { return "/api/engine/v2/users/" + userID }, map[string]any{"name": "Ann B", "email": "ann@acme.example", "support": true},
			200, keys.AuditUpdate, keys.KindUser, func() string { return userID }, "name", `"Ann"`, `"Ann B"`, nil},
		{"create key", "POST", func() string { return "/api/engine/v2/api_keys" }, map[string]any{"name": "door", "user_id": "", "scopes": []string{"systems"}},
			201, keys.AuditCreate, keys.KindKey, func() string { return keyID }, "scopes", `null`, `["systems"]`,
			func(b []byte) { keyID = idOf(t, b); plaintexts = append(plaintexts, xAPIKey(t, b)) }},
		{"patch key", "PATCH", func() string { return "/api/engine/v2/api_keys/" + keyID }, map[string]any{"description": "front door"},
			200, keys.AuditUpdate, keys.KindKey, func() string { return keyID }, "description", `""`, `"front door"`, nil},
		{"put key", "PUT", func() string { return "/api/engine/v2/api_keys/" + keyID }, map[string]any{"name": "door 1"},
			200, keys.AuditUpdate, keys.KindKey, func() string { return keyID }, "name", `"door"`, `"door 1"`, nil},
		{"rotate key", "POST", func() string { return "/api/engine/v2/api_keys/" + keyID + "/rotate" }, map[string]any{"overlap": "1h"},
			201, keys.AuditRotate, keys.KindKey, func() string { return keyID }, "replaced_by", `null`, ``,
			func(b []byte) { newKeyID = idOf(t, b); plaintexts = append(plaintexts, xAPIKey(t, b)) }},
		{"delete key", "DELETE", func() string { return "/api/engine/v2/api_keys/" + keyID }, nil,
			202, keys.AuditDelete, keys.KindKey, func() string { return keyID }, "name", `"door 1"`, `null`, nil},
		{"delete user", "DELETE", func() string { return "/api/engine/v2/users/" + userID }, nil,
			202, keys.AuditDelete, keys.KindUser, func() string { return userID }, "name", `"Ann B"`, `null`, nil},
		{"delete domain", "DELETE", func() string { return "/api/engine/v2/domains/" + domainID }, nil,
			202, keys.AuditDelete, keys.KindDomain, func() string { return domainID }, "name", `"Acme Inc"`, `null`, nil},
	} {
		// Bodies that name records made by earlier steps.
		if m, ok := c.body.(map[string]any); ok {
			if _, ok := m["authority_id"]; ok {
				m["authority_id"] = domainID
			}
			if _, ok := m["user_id"]; ok {
				m["user_id"] = userID
			}
		}
		before := f.auditTotal(t)
		status, body, rid := f.adminCall(t, f.Admin, c.method, c.path(), c.body)
		if status != c.status {
			t.Fatalf("%s: %d %s, want %d", c.name, status, body, c.status)
		}
		if c.after != nil {
			c.after(body)
		}
		if got := f.auditTotal(t); got != before+1 {
			t.Errorf("%s: %d records after, %d before: want exactly one more", c.name, got, before)
			continue
		}
		recs, _ := f.audit(t, "?limit=1")
		r := recs[0]
		if r.Action != c.action || r.TargetKind != c.kind || r.TargetID != c.target() {
			t.Errorf("%s: record %s %s %s, want %s %s %s", c.name, r.Action, r.TargetKind, r.TargetID, c.action, c.kind, c.target())
		}
		if r.ActorKeyID != adminKeyID || r.ActorUserID != f.AdminUser.ID {
			t.Errorf("%s: actor %s/%s, want the admin key %s of user %s", c.name, r.ActorKeyID, r.ActorUserID, adminKeyID, f.AdminUser.ID)
		}
		if rid == "" || r.RequestID != rid {
			t.Errorf("%s: request id %q, the response's X-Request-Id %q", c.name, r.RequestID, rid)
		}
		i := slices.IndexFunc(r.Changes, func(fc keys.FieldChange) bool { return fc.Field == c.field })
		switch {
		case i < 0:
			t.Errorf("%s: no change of %s in %+v", c.name, c.field, r.Changes)
		case string(r.Changes[i].Old) != c.old || (c.new != "" && string(r.Changes[i].New) != c.new):
			t.Errorf("%s: %s %s → %s, want %s → %s", c.name, c.field, r.Changes[i].Old, r.Changes[i].New, c.old, c.new)
		}
		if c.action == keys.AuditRotate && !slices.Contains(r.Related, keys.AuditTarget{Kind: keys.KindKey, ID: newKeyID}) {
			t.Errorf("rotate: related %v, want the new key %s", r.Related, newKeyID)
		}
	}

	// The user's delete was one record, and lists the key it took with it.
	recs, _ := f.audit(t, "?target="+newKeyID)
	if len(recs) != 2 || recs[0].Action != keys.AuditDelete || recs[0].TargetID != userID || recs[1].Action != keys.AuditRotate {
		t.Errorf("records of the rotated-in key %s: %+v, want the user's delete then the rotation", newKeyID, recs)
	}

	// No plaintext, secret or hash anywhere in the log as the API shows it.
	_, body, _ := f.adminCall(t, f.Admin, "GET", auditPath+"?limit=10000", nil)
	for _, pt := range plaintexts {
		_, secret, _ := keys.ParseKey(pt)
		for what, v := range map[string]string{"a key": pt, "a secret": secret, "a hash": keys.HashKey(strings.Split(pt, ".")[0], secret)} {
			if strings.Contains(string(body), v) {
				t.Errorf("%s (%.12s…) is in the audit log", what, v)
			}
		}
	}
	for _, field := range []string{`"hash"`, `"x_api_key"`, `"secret"`} {
		if strings.Contains(string(body), field) {
			t.Errorf("the audit log has a field %s", field)
		}
	}
}

// xAPIKey returns the x_api_key of a create or rotate response.
func xAPIKey(t *testing.T, body []byte) string {
	t.Helper()
	var v struct {
		XAPIKey string `json:"x_api_key"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.XAPIKey == "" {
		t.Fatalf("no x_api_key in %s (%v)", body, err)
	}
	return v.XAPIKey
}

func TestAuditRefusedWritesLeaveNone(t *testing.T) {
	f := newFixture(t)
	kioskID, _, _ := keys.ParseKey(f.Kiosk)
	before := f.auditTotal(t)
	for _, c := range []struct {
		name         string
		key          string
		method, path string
		body         any
		status       int
	}{
		{"no key", "", "POST", "/api/engine/v2/domains", map[string]any{"name": "x", "domain": "x.example"}, 401},
		{"scope missing", f.Booking, "POST", "/api/engine/v2/domains", map[string]any{"name": "x", "domain": "x.example"}, 403},
		{"invalid domain", f.Admin, "POST", "/api/engine/v2/domains", map[string]any{"name": "", "domain": "x.example"}, 422},
		{"host taken", f.Admin, "POST", "/api/engine/v2/domains", map[string]any{"name": "dup", "domain": "localhost"}, 422},
		{"malformed JSON", f.Admin, "POST", "/api/engine/v2/users", `{"name":`, 400},
		{"unknown user", f.Admin, "PATCH", "/api/engine/v2/users/user-missing", map[string]any{"name": "x"}, 404},
		{"minting cap", f.Admin, "POST", "/api/engine/v2/api_keys", map[string]any{"name": "x", "user_id": f.AdminUser.ID, "permissions": "admin_support"}, 403},
		{"name taken", f.Admin, "PATCH", "/api/engine/v2/api_keys/" + kioskID, map[string]any{"name": "admin"}, 422},
		{"unknown key", f.Admin, "DELETE", "/api/engine/v2/api_keys/0123456789abcdef0123456789abcdef", nil, 404},
		{"unknown domain", f.Admin, "DELETE", "/api/engine/v2/domains/authority-missing", nil, 404},
	} {
		status, body, _ := f.adminCall(t, c.key, c.method, c.path, c.body)
		if status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, body, c.status)
		}
	}
	if after := f.auditTotal(t); after != before {
		recs, _ := f.audit(t, "?limit=5")
		t.Errorf("%d records after the refused writes, %d before; newest: %+v", after, before, recs)
	}
}

func TestAuditListing(t *testing.T) {
	f := newFixture(t)
	adminKeyID, _, _ := keys.ParseKey(f.Admin)
	for _, host := range []string{"a.example", "b.example", "c.example"} {
		if status, body, _ := f.adminCall(t, f.Admin, "POST", "/api/engine/v2/domains", map[string]any{"name": host, "domain": host}); status != 201 {
			t.Fatalf("create %s: %d %s", host, status, body)
		}
	}
	// Paging as the other listings: X-Total-Count, Content-Range, Link carrying the filters.
	recs, h := f.audit(t, "?actor="+adminKeyID+"&action=create&limit=2")
	if len(recs) != 2 || h.Get("X-Total-Count") != "3" || h.Get("Content-Range") != "audit 0-1/3" {
		t.Errorf("first page: %d records, X-Total-Count %q, Content-Range %q", len(recs), h.Get("X-Total-Count"), h.Get("Content-Range"))
	}
	link := h.Get("Link")
	for _, part := range []string{"actor=" + adminKeyID, "action=create", "offset=2", "limit=2", `rel="next"`} {
		if !strings.Contains(link, part) {
			t.Errorf("Link %q lacks %s", link, part)
		}
	}
	if recs[0].TargetKind != keys.KindDomain || recs[0].ActorKeyID != adminKeyID {
		t.Errorf("newest record %+v, want the admin's last domain", recs[0])
	}
	last, h := f.audit(t, "?actor="+adminKeyID+"&action=create&limit=2&offset=2")
	if len(last) != 1 || h.Get("Link") != "" || last[0].ID >= recs[1].ID {
		t.Errorf("second page: %d records, Link %q; want the oldest one and no next", len(last), h.Get("Link"))
	}
	if got, _ := f.audit(t, "?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z"); len(got) != 0 {
		t.Errorf("records of 2000: %d, want none", len(got))
	}

	// Bad parameters are a 400 with a JSON error; only admins with the audit scope may read.
	for _, c := range []struct {
		name, key, q string
		status       int
	}{
		{"bad action", f.Admin, "?action=explode", 400},
		{"bad since", f.Admin, "?since=yesterday", 400},
		{"bad limit", f.Admin, "?limit=-1", 400},
		{"no key", "", "", 401},
		{"not admin", f.Kiosk, "", 403},
		{"admin of another domain on this host", f.Other, "", 401},
	} {
		status, body, _ := f.adminCall(t, c.key, "GET", auditPath+c.q, nil)
		var e struct {
			Error string `json:"error"`
		}
		if status != c.status || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("%s: %d %s, want %d with a JSON error", c.name, status, body, c.status)
		}
	}
}

// TestAuditImport: a PlaceOS import is one record, naming every record it created; a dry run
// and a re-import that changes nothing leave none; the imported hash is in no record.
func TestAuditImport(t *testing.T) {
	f := newFixture(t)
	const id, secret = "fedcba9876543210fedcba9876543210", "Edm7STXHDbacbsytz4RGvFc51PnBdQtcU9Yo7BSSVHw"
	hash := keys.HashKey(id, secret)
	export := `{"id":"authority-p1","name":"P","domain":"placeos.example","created_at":"2023-11-14T22:13:20+00:00"}
{"id":"user-p1","authority_id":"authority-p1","name":"Panel","email":"panel@placeos.example","sys_admin":false,"support":false,"groups":[]}
{"id":"` + id + `","name":"kiosk","scopes":["public.read"],"permissions":0,"secret":"` + hash + `","user_id":"user-p1","authority_id":"authority-p1"}
`
	post := func(query string) int {
		t.Helper()
		req := newRequest(t, http.MethodPost, f.URL+"/api/engine/v2/import/placeos"+query, export)
		req.Host = "localhost"
		req.Header.Set("X-API-Key", f.Admin)
		req.Header.Set("Content-Type", "application/x-ndjson")
		status, body, _ := send(t, req)
		if status != http.StatusOK {
			t.Fatalf("import%s: %d %s", query, status, body)
		}
		return status
	}
	before := f.auditTotal(t)
	post("?dry_run=true")
	if n := f.auditTotal(t); n != before {
		t.Errorf("a dry run left %d records", n-before)
	}
	post("")
	if n := f.auditTotal(t); n != before+1 {
		t.Fatalf("an import left %d records, want 1", n-before)
	}
	recs, _ := f.audit(t, "?target="+id)
	if len(recs) != 1 || recs[0].Action != keys.AuditImport {
		t.Errorf("records of the imported key: %+v, want the import", recs)
	}
	post("")
	if n := f.auditTotal(t); n != before+1 {
		t.Errorf("a re-import that changed nothing left %d records", n-before-1)
	}
	_, body, _ := f.adminCall(t, f.Admin, "GET", auditPath+"?action=import", nil)
	if strings.Contains(string(body), hash) || strings.Contains(string(body), `"secret"`) {
		t.Errorf("the import's record holds the hash: %s", body)
	}
}
