package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"
	"time"

	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/keys"
)

const host = "acme.example.com"

// fixture is what the harness put into a fresh data folder: one domain, a panel user with the
// booking panel and map kiosk keys, and a fleet user owning the bulk-imported keys.
type fixture struct {
	domain         *keys.Domain
	panelUser      *keys.User
	fleetUser      *keys.User
	booking, kiosk *keys.APIKey
	bookingPlain   string
	kioskPlain     string
	// sample holds plaintexts of imported keys spread over the whole store, and sampleIDs
	// their ids (the same order).
	sample    []string
	sampleIDs []string
	// importTime is how long the bulk import of the fleet keys took.
	importTime time.Duration
	// compactTime is how long flattening the store after the import took.
	compactTime time.Duration
}

// makeStore creates dir's store with n keys in all: the two panel keys through the store's
// normal API and n-2 fleet keys (scopes systems.read) through the bulk importer, keeping about
// sampleN of their plaintexts.
func makeStore(ctx context.Context, dir string, n, sampleN int) (*fixture, error) {
	return makeStoreWith(ctx, dir, n, sampleN, nil)
}

// makeStoreWith is makeStore with decorate, if not nil, applied to each fleet key before it is
// stored (the limits mode gives them an allow-list and a rate limit).
func makeStoreWith(ctx context.Context, dir string, n, sampleN int, decorate func(*keys.APIKey)) (*fixture, error) {
	s, err := badgerstore.Open(dir)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	f, err := seed(ctx, s)
	if err != nil {
		return nil, err
	}
	fleet := f.fleetUser
	bulk := max(n-2, 0)
	every := max(bulk/max(sampleN, 1), 1)
	var genErr error
	seq := iter.Seq[keys.BulkKey](func(yield func(keys.BulkKey) bool) {
		for i := range bulk {
			p, id, hash, err := keys.Generate()
			if err != nil {
				genErr = err
				return
			}
			if i%every == 0 && len(f.sample) < sampleN {
				f.sample = append(f.sample, string(p))
				f.sampleIDs = append(f.sampleIDs, id)
			}
			k := keys.APIKey{ID: id, Name: fmt.Sprintf("fleet-%07d", i), UserID: fleet.ID,
				Scopes: []string{"systems.read"}, CreatedAt: time.Now().Unix(), UpdatedAt: time.Now().Unix()}
			if decorate != nil {
				decorate(&k)
			}
			if !yield(keys.BulkKey{Key: k, Hash: hash}) {
				return
			}
		}
	})
	start := time.Now()
	if _, err := s.ImportKeys(ctx, seq); err != nil {
		return nil, err
	}
	f.importTime = time.Since(start)
	if genErr != nil {
		return nil, genErr
	}
	start = time.Now()
	if err := s.Compact(); err != nil {
		return nil, err
	}
	f.compactTime = time.Since(start)
	return f, s.Close()
}

// seed creates, through s's API, the domain, the two users and the panel and kiosk keys of
// the fixture (every store the harness fills starts so).
func seed(ctx context.Context, s keys.Service) (*fixture, error) {
	f := &fixture{domain: &keys.Domain{Name: "Acme", Domain: host}}
	if err := s.CreateDomain(ctx, f.domain); err != nil {
		return nil, err
	}
	f.panelUser = &keys.User{AuthorityID: f.domain.ID, Name: "Panels", Email: "panels@" + host, Groups: []string{"sys-1"}}
	f.fleetUser = &keys.User{AuthorityID: f.domain.ID, Name: "Fleet", Email: "fleet@" + host, Groups: []string{"sys-1"}}
	for _, u := range []*keys.User{f.panelUser, f.fleetUser} {
		if err := s.CreateUser(ctx, u); err != nil {
			return nil, err
		}
	}
	f.booking = &keys.APIKey{Name: "booking panel", UserID: f.panelUser.ID,
		Scopes: []string{"systems.read", "control", "metadata.read", "zones.read"}}
	f.kiosk = &keys.APIKey{Name: "map kiosk", UserID: f.panelUser.ID, Scopes: []string{"public.read", "zones.read"}}
	for _, k := range []*keys.APIKey{f.booking, f.kiosk} {
		p, err := s.CreateKey(ctx, k)
		if err != nil {
			return nil, err
		}
		if k == f.booking {
			f.bookingPlain = string(p)
		} else {
			f.kioskPlain = string(p)
		}
	}
	return f, nil
}

// request is one request of the mix, as both servers get it.
type request struct {
	Name      string `json:"name"`
	Method    string `json:"method"`
	Path      string `json:"path"`
	WantAllow bool   `json:"want_allow"`
	// kaBody is keyauthz's Data API body (the key in the x-api-key header); opaBody is OPA's,
	// with the already-resolved domain, key and user as policy input.
	kaBody, opaBody []byte
}

// mix is the request mix: the booking panel and the map kiosk keys, allowed and denied, on
// several routes, plus an anonymous request.
func (f *fixture) mix() []request {
	type r struct {
		name, method, path string
		key                *keys.APIKey
		allow              bool
	}
	rs := []r{
		{"panel: show system", "GET", "/api/engine/v2/systems/sys-1", f.booking, true},
		{"panel: module state", "GET", "/api/engine/v2/systems/sys-1/Bookings_1", f.booking, false},
		{"panel: execute", "POST", "/api/engine/v2/systems/sys-1/Bookings_1/book", f.booking, true},
		{"panel: metadata", "GET", "/api/engine/v2/metadata/sys-1", f.booking, true},
		{"panel: delete system", "DELETE", "/api/engine/v2/systems/sys-1", f.booking, false},
		{"panel: list keys", "GET", "/api/engine/v2/api_keys", f.booking, false},
		{"kiosk: zones", "GET", "/api/engine/v2/zones", f.kiosk, true},
		{"kiosk: staff events", "GET", "/api/staff/v1/events", f.kiosk, true},
		{"kiosk: book", "POST", "/api/staff/v1/events", f.kiosk, false},
		{"kiosk: delete zone", "DELETE", "/api/engine/v2/zones/zone-1", f.kiosk, false},
		{"anonymous: health route", "GET", "/api/engine/v2", nil, true},
	}
	out := make([]request, 0, len(rs))
	for _, x := range rs {
		q := request{Name: x.name, Method: x.method, Path: x.path, WantAllow: x.allow}
		headers := map[string]string{}
		opaIn := map[string]any{
			"request": map[string]any{"method": x.method, "path": x.path, "host": host, "protocol": "http", "query": map[string]any{}},
			"domain":  map[string]any{"id": f.domain.ID, "name": f.domain.Name, "domain": f.domain.Domain},
		}
		if x.key != nil {
			headers["x-api-key"] = f.plain(x.key)
			opaIn["key"] = map[string]any{"id": x.key.ID, "authority_id": x.key.AuthorityID, "scopes": x.key.Scopes,
				"permissions": string(x.key.Permissions), "source": "header"}
			u := f.panelUser
			opaIn["user"] = map[string]any{"id": u.ID, "authority_id": u.AuthorityID, "name": u.Name, "email": u.Email,
				"sys_admin": u.SysAdmin, "support": u.Support, "groups": u.Groups}
		}
		q.kaBody = mustJSON(map[string]any{"input": map[string]any{
			"method": x.method, "path": x.path, "host": host, "headers": headers}})
		q.opaBody = mustJSON(map[string]any{"input": opaIn})
		out = append(out, q)
	}
	return out
}

// sampleRequests are keyauthz requests with the sampled fleet keys (one distinct key each):
// the key and decision caches miss, so each one reads the store and evaluates the policy.
func (f *fixture) sampleRequests() [][]byte {
	out := make([][]byte, 0, len(f.sample))
	for _, p := range f.sample {
		out = append(out, mustJSON(map[string]any{"input": map[string]any{
			"method": "GET", "path": "/api/engine/v2/systems/sys-1", "host": host,
			"headers": map[string]string{"x-api-key": p}}}))
	}
	return out
}

func (f *fixture) plain(k *keys.APIKey) string {
	if k == f.booking {
		return f.bookingPlain
	}
	return f.kioskPlain
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// sysIDMark is where a distinct request's system id goes in its body templates.
const sysIDMark = "SYSID-MARK"

// workload is one request stream, as each server gets it: body(n) is the nth request's body
// for keyauthz (the key in the x-api-key header), for opa (the already-resolved domain, key and
// user as policy input) and for the HTTP floor (the opa body, which it does not judge).
type workload struct {
	name string
	// check lists the requests both servers must decide alike before the run, and as wanted.
	check []request
	ka    func(n uint64) []byte
	opa   func(n uint64) []byte
}

// repeated is one request again and again: the booking panel showing sys-1 (keyauthz answers
// it from its decision cache).
func (f *fixture) repeated() workload {
	r := f.mix()[0]
	return workload{name: "repeated", check: []request{r},
		ka: func(uint64) []byte { return r.kaBody }, opa: func(uint64) []byte { return r.opaBody }}
}

// mixWorkload cycles the 11 requests of the mix.
func (f *fixture) mixWorkload() workload {
	m := f.mix()
	return workload{name: "mix", check: m,
		ka:  func(n uint64) []byte { return m[n%uint64(len(m))].kaBody },
		opa: func(n uint64) []byte { return m[n%uint64(len(m))].opaBody }}
}

// distinct makes every request a new one: GET /api/engine/v2/systems/sys-<n> (allowed: the
// fleet keys hold systems.read), with the sampled fleet keys cycled, so that no decision is
// ever cached while the keys stay in the verified-key cache.
func (f *fixture) distinct() workload {
	type tmpl struct{ ka, opa [2][]byte }
	ts := make([]tmpl, len(f.sample))
	u := f.fleetUser
	for i, plain := range f.sample {
		path := "/api/engine/v2/systems/" + sysIDMark
		ka := mustJSON(map[string]any{"input": map[string]any{
			"method": "GET", "path": path, "host": host, "headers": map[string]string{"x-api-key": plain}}})
		op := mustJSON(map[string]any{"input": map[string]any{
			"request": map[string]any{"method": "GET", "path": path, "host": host, "protocol": "http", "query": map[string]any{}},
			"domain":  map[string]any{"id": f.domain.ID, "name": f.domain.Name, "domain": f.domain.Domain},
			"key": map[string]any{"id": f.sampleIDs[i], "authority_id": f.domain.ID, "scopes": []string{"systems.read"},
				"permissions": "user", "source": "header"},
			"user": map[string]any{"id": u.ID, "authority_id": u.AuthorityID, "name": u.Name, "email": u.Email,
				"sys_admin": u.SysAdmin, "support": u.Support, "groups": u.Groups},
		}})
		ts[i] = tmpl{split2(ka), split2(op)}
	}
	fill := func(t [2][]byte, n uint64) []byte {
		b := make([]byte, 0, len(t[0])+len(t[1])+24)
		b = append(b, t[0]...)
		b = append(b, "sys-"...)
		b = strconv.AppendUint(b, n, 10)
		return append(b, t[1]...)
	}
	w := workload{name: "distinct",
		ka:  func(n uint64) []byte { return fill(ts[n%uint64(len(ts))].ka, n) },
		opa: func(n uint64) []byte { return fill(ts[n%uint64(len(ts))].opa, n) },
	}
	for n := range uint64(3) {
		w.check = append(w.check, request{Name: fmt.Sprintf("distinct #%d", n), Method: "GET",
			Path: fmt.Sprintf("/api/engine/v2/systems/sys-%d", n), WantAllow: true, kaBody: w.ka(n), opaBody: w.opa(n)})
	}
	return w
}

// split2 cuts b at sysIDMark.
func split2(b []byte) [2][]byte {
	before, after, ok := bytes.Cut(b, []byte(sysIDMark))
	if !ok {
		panic("no " + sysIDMark + " in " + string(b))
	}
	return [2][]byte{before, after}
}
