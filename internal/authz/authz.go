// Package authz is keyauthz's one credential path: it takes a request (from the admin API, the
// Data API decision endpoint or forward-auth), extracts the API key
// (docs/http-api.md#presenting-a-key), authenticates it against the key store, builds the typed
// policy input (docs/policy-contract.md#input) and asks the policy, through the caches of
// docs/architecture.md#caches. Every endpoint goes through Authorize, so they can never disagree.
package authz

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyauthz/keyauthz/internal/cache"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// Messages of the denials that Go decides (authentication); the policy decides the rest.
const (
	MsgUnknownKey = "unknown X-API-Key"
	MsgExpiredKey = "API key has expired"
	MsgInternal   = "internal error"
	// MsgUnavailable is the 503 deny when the store cannot be reached.
	MsgUnavailable = "store unavailable: try again"
	// MsgAmbiguousPath is the 403 for a path that routers read differently (opa.Ambiguous).
	MsgAmbiguousPath = "ambiguous path"
	// MsgMethodOverride is the 403 for a request carrying a method override (methodOverride).
	MsgMethodOverride = "method override not allowed"
)

// methodOverrideHeaders are the headers frameworks read a request's "real" method from.
var methodOverrideHeaders = [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// methodOverride names the method override a request carries ("" if none): one of
// methodOverrideHeaders, or the _method query parameter. A _method in a form body cannot be
// seen here (gateways do not pass bodies to forward auth); see SECURITY.md.
func methodOverride(h http.Header, query map[string][]string) string {
	for _, name := range methodOverrideHeaders {
		if _, ok := h[name]; ok {
			return name
		}
	}
	for name := range query {
		if strings.EqualFold(name, "_method") {
			return name
		}
	}
	return ""
}

// Credential sources, in the order they are tried (docs/http-api.md#presenting-a-key).
const (
	SourceHeader = "header"
	SourceQuery  = "query"
	SourceCookie = "cookie"
)

// maxCachedURI is the longest request URI whose decision is cached, and maxCachedMethod the
// longest method: a client must not be able to fill the cache with megabytes of its own text.
const (
	maxCachedURI    = 2048
	maxCachedMethod = 16
)

// KeyParam is the name of the URL parameter and of the cookie that may carry the key.
const KeyParam = "api-key"

// Engine is what Authorize needs of the policy engine (opa.Engine implements it).
type Engine interface {
	// Policy names the policy in use now: a cached decision is looked up under it.
	Policy() opa.Policy
	// Decide evaluates in and names the policy that decided; any fault is a deny with
	// status 500 (opa.Result).
	Decide(ctx context.Context, in *opa.Input) opa.Result
}

// Request is the request to judge, as it reached keyauthz or as a gateway described it.
type Request struct {
	Method string
	// URI is the path as received, optionally with a query ("/a/b?c=d").
	URI string
	// Host is the Host header (or the gateway's forwarded host); a port is ignored.
	Host string
	// Header holds the request headers, canonical names (http.Header); the key is read from
	// X-API-Key and the Cookie header, the protocol from Upgrade.
	Header http.Header
	// Protocol, when "http" or "websocket", overrides the protocol read from Upgrade.
	Protocol string
	// ClientIP is the client's address as the surface's trusted source gives it ("" when it
	// gives none; docs/limits.md#the-client-address). Anything keys.ParseClientIP does not
	// read is unknown, and a key with an allow-list is then refused.
	ClientIP string
}

// Result is the outcome of Authorize: the decision and who the caller is.
type Result struct {
	Decision opa.Decision
	// Input is what the policy saw; it holds no key material (api-key is removed from the query).
	// Its Key, User and Domain are shared with the key and host caches: read-only.
	Input opa.Input
	// Key, User and Domain are set for a valid, unexpired key (Domain is the key's own).
	Key  *keys.APIKey
	User *keys.User
	// KeyID is the id part of a presented key even when it was refused, for logs ("" if none).
	KeyID string
	// Revision is the revision of the policy that decided ("" when Go denied before the policy
	// ran, or no policy is loaded).
	Revision string
	// RetryAfter is set on a 429 deny (the key's rate limit): how long until it may try again.
	RetryAfter time.Duration
}

// Authorizer is the credential path. It is built by New and is safe for concurrent use.
//
// Caching is part of its construction, not something it discovers: every answer it reads from
// the key store comes through a cache.Store, which versions them (per key, user and domain,
// moved by every committed change, docs/architecture.md#caches), so a decision cache, when
// configured, always has the versions of the records each decision was made from. A store
// that cannot report its changes (cache.Source.OnChange) cannot be given to New at all.
type Authorizer struct {
	store     *cache.Store
	decisions *cache.Decisions // nil: decisions are not cached
	engine    Engine
	usage     UsageRecorder
	logger    *slog.Logger
	now       func() time.Time
	limiter   *limiter // per-key rate limits (ratelimit.go)
}

// Options configures New. The zero Options caches nothing; DefaultOptions is what keyauthz
// serve runs unless told otherwise.
type Options struct {
	// Cache bounds the caches in front of the key store (verified keys, unknown key ids, hosts);
	// a zero bound turns that cache off. The store's answers are versioned either way.
	Cache cache.Options
	// DecisionBytes bounds the decision cache; zero turns it off. A cached decision is keyed on
	// the policy it was made with and carries the versions of the key, user and domains it was
	// made from, so a change to its key, the key's user or domain, the request host's domain (or
	// any domain, for a host that had none), a delete or a policy swap makes the next decision
	// fresh, while decisions that depended on none of them stay cached; and a decision made with
	// a key is never served once the key has expired.
	DecisionBytes int64
	// Usage, when set, is told of every use of a valid key (for last_used_at).
	Usage UsageRecorder
	// Logger receives store faults; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RateLimitBuckets bounds the rate-limit buckets kept (ratelimit.go); 0 means
	// DefaultRateLimitBuckets.
	RateLimitBuckets int
}

// DefaultOptions are the cache bounds keyauthz serve uses unless told otherwise.
func DefaultOptions() Options {
	return Options{Cache: cache.DefaultOptions(), DecisionBytes: cache.DefaultDecisionBytes}
}

// New returns the credential path over the key store src and the policy engine: a cache.Store
// in front of src (registered with src.OnChange) and, when o.DecisionBytes > 0, a decision
// cache. keyauthz serve and the server's tests both build their Authorizer here, so the tests
// run the wiring production runs. It panics when src or engine is nil.
func New(src cache.Source, engine Engine, o Options) *Authorizer {
	if src == nil || engine == nil {
		panic("authz: New needs a key store and a policy engine")
	}
	a := &Authorizer{
		store:  cache.New(src, o.Cache),
		engine: engine,
		usage:  o.Usage,
		logger: o.Logger,
		now:    o.Now,
	}
	a.limiter = newLimiter(o.RateLimitBuckets)
	a.decisions = cache.NewDecisions(o.DecisionBytes, a.store)
	if a.logger == nil {
		a.logger = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a
}

// StoreCache returns the cache in front of the key store, for its counters and size.
func (a *Authorizer) StoreCache() *cache.Store { return a.store }

// DecisionCache returns the decision cache, for its counters and size; nil when decisions are
// not cached (the methods of a nil *cache.Decisions answer zero).
func (a *Authorizer) DecisionCache() *cache.Decisions { return a.decisions }

// UsageRecorder notes key uses; keys.UsageRecorder writes them to the store in batches.
type UsageRecorder interface {
	Record(keyID string, at time.Time)
}

// Authorize judges r. It never allows on an error: every failure is a deny with its status.
// An allow for a key with a rate limit takes a token from its bucket, and is a 429 deny
// when there is none (ratelimit.go).
func (a *Authorizer) Authorize(ctx context.Context, r Request) Result {
	res := a.authorize(ctx, r)
	a.limit(&res)
	return res
}

// authorize is Authorize before the rate limit: the credential path and the policy.
func (a *Authorizer) authorize(ctx context.Context, r Request) Result {
	now := a.now()
	// The generation is read before anything is read from the store. A decision is cached
	// with the versions of the records it was made from (deps: the key, its user, its domain,
	// the host's domain lookup), each read before the store was (cache/versions.go), so a
	// change to one of them makes it a miss; and, belt and braces, it is not cached at all if
	// any change committed while it was being made.
	gen := a.store.Generation()
	var deps cache.Deps
	// Requests with very long URIs are decided but not cached: a client must not be able to
	// fill the cache's memory with megabytes of unique paths.
	caching := a.decisions != nil && len(r.URI) <= maxCachedURI && len(r.Method) <= maxCachedMethod
	target := RequestTarget(r.URI)
	rawPath, query := opa.SplitURI(target)
	cred, source, present := Credential(r.Header, query)
	delete(query, KeyParam)
	host := Hostname(r.Host)
	in := opa.Input{Request: opa.Request{
		// The method as received: the policy refuses what is not one of the seven it knows,
		// and "get" is not GET to a case-sensitive backend.
		Method:    r.Method,
		Path:      opa.NormalizePath(rawPath),
		Host:      host,
		Protocol:  protocol(r),
		Query:     query,
		CrossSite: CrossSite(r.Header, r.Host),
	}}
	if r.ClientIP != "" {
		in.Request.ClientIP, _ = keys.ParseClientIP(r.ClientIP)
	}
	res := Result{}
	if present {
		res.KeyID = KeyID(cred)
	}
	// A path that routers read differently is refused before anything else: the policy can
	// judge only one reading of it, and the backend might run another.
	if reason := opa.Ambiguous(target); reason != "" {
		res.Input = in
		res.Decision = opa.Decision{Status: http.StatusForbidden, Message: MsgAmbiguousPath}
		a.logger.DebugContext(ctx, "ambiguous path refused", "reason", reason, "key_id", res.KeyID)
		return res
	}
	// A method override is a second method: a backend that honours it (Rack, gorilla/handlers,
	// Express, Laravel) runs the overriding method where the policy judged this one.
	if name := methodOverride(r.Header, query); name != "" {
		res.Input = in
		res.Decision = opa.Decision{Status: http.StatusForbidden, Message: MsgMethodOverride}
		a.logger.DebugContext(ctx, "method override refused", "override", name, "key_id", res.KeyID)
		return res
	}
	if present {
		// The key and user parts of the input (and their Rego values) come with the cache
		// entry, built once per verified key (cache.Cred): a decision builds only its request.
		auth, err := a.store.AuthenticateCred(ctx, cred, now, &deps)
		if err != nil {
			res.Input = in
			res.Decision = a.authnDenial(err, res.KeyID)
			return res
		}
		res.Key, res.User = auth.Key, auth.User
		if a.usage != nil {
			a.usage.Record(auth.Key.ID, now)
		}
		auth.SetInput(&in, source)
	}
	if in.Request.Host != "" {
		d, err := a.store.HostDomainDeps(ctx, in.Request.Host, &deps)
		switch {
		case err == nil:
			d.SetInput(&in)
		case keys.ErrorCode(err) != keys.ENOTFOUND:
			a.logger.Log(ctx, faultLevel(err), "domain lookup failed", "host", in.Request.Host, "err", err)
			res.Input = in
			res.Decision = storeFault(err)
			return res
		}
	}
	res.Input = in
	if !caching {
		er := a.engine.Decide(ctx, &in)
		res.Decision, res.Revision = er.Decision, er.Policy.Revision
		return res
	}
	dk := cache.DecisionKey{
		Method: in.Request.Method, Path: in.Request.Path, Host: in.Request.Host,
		Protocol: in.Request.Protocol, CrossSite: in.Request.CrossSite, Policy: a.engine.Policy(),
		ClientIP: in.Request.ClientIP,
	}
	if len(query) > 0 {
		dk.Query = url.Values(query).Encode()
	}
	var expiresAt *int64
	if in.Key != nil {
		dk.KeyID, dk.Source, expiresAt = in.Key.ID, in.Key.Source, res.Key.ExpiresAt
	}
	if d, ok := a.decisions.Get(&dk, now); ok {
		res.Decision, res.Revision = d, dk.Policy.Revision
		return res
	}
	er := a.engine.Decide(ctx, &in)
	res.Decision, res.Revision = er.Decision, er.Policy.Revision
	// Cache only what a policy decided (never an engine fault), under the policy that decided
	// it (a swap may have happened since the lookup), with the versions of what it was made
	// from, and only if no change committed meanwhile.
	if er.Err == nil && er.Policy != (opa.Policy{}) && a.store.Generation() == gen {
		dk.Policy = er.Policy
		a.decisions.Add(&dk, &deps, er.Decision, expiresAt)
	}
	return res
}

func (a *Authorizer) authnDenial(err error, keyID string) opa.Decision {
	switch {
	case errors.Is(err, keys.ErrExpiredKey):
		return opa.Decision{Status: http.StatusUnauthorized, Message: MsgExpiredKey}
	case errors.Is(err, keys.ErrUnknownKey):
		return opa.Decision{Status: http.StatusUnauthorized, Message: MsgUnknownKey}
	default:
		// A store fault must not become an allow: log it and deny.
		a.logger.Log(context.Background(), faultLevel(err), "key lookup failed", "key_id", keyID, "err", err)
		return storeFault(err)
	}
}

// faultLevel is the log level of a store fault: an unreachable store is logged once by the
// store when it goes and when it is back (docs/cluster.md#failures), not again by each of the
// decisions it refuses meanwhile (debug); any other fault is an error.
func faultLevel(err error) slog.Level {
	if keys.ErrorCode(err) == keys.EUNAVAILABLE {
		return slog.LevelDebug
	}
	return slog.LevelError
}

// storeFault is the deny for a store that failed: 503 when it cannot be reached (an etcd
// cluster without a quorum: try again), else 500. Either way a deny, never an allow.
func storeFault(err error) opa.Decision {
	if keys.ErrorCode(err) == keys.EUNAVAILABLE {
		return opa.Decision{Status: http.StatusServiceUnavailable, Message: MsgUnavailable}
	}
	return opa.Decision{Status: http.StatusInternalServerError, Message: MsgInternal}
}

// Credential returns the presented key and where it came from: the X-API-Key header (any case,
// an empty value counts), else the api-key URL parameter, else the api-key cookie.
func Credential(h http.Header, query url.Values) (key, source string, present bool) {
	if v, ok := h["X-Api-Key"]; ok {
		if len(v) == 0 {
			return "", SourceHeader, true
		}
		return v[0], SourceHeader, true
	}
	if v, ok := query[KeyParam]; ok {
		if len(v) == 0 {
			return "", SourceQuery, true
		}
		return v[0], SourceQuery, true
	}
	if _, ok := h["Cookie"]; ok {
		if c, err := (&http.Request{Header: h}).Cookie(KeyParam); err == nil {
			return c.Value, SourceCookie, true
		}
	}
	return "", "", false
}

// KeyID is the id part of a presented key, for logs: the text before the first "." when it has
// the shape of an id (32 hex characters), else "".
func KeyID(cred string) string {
	id, _, ok := strings.Cut(cred, ".")
	if !ok || len(id) != 32 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return ""
		}
	}
	return id
}

// Hostname is the host of a Host header (or a gateway's forwarded host), lower-cased, without
// its port or IPv6 brackets and without one trailing dot; "" when host is not a plain host name
// or IP address with an optional numeric port. Anything else ("b.test:80@localhost", a path, a
// space, a second colon) names no host: the policy then finds no domain, rather than judging
// the part of the text that one parser or another would pick.
func Hostname(host string) string {
	name := host
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return ""
		}
		name, rest := host[1:end], host[end+1:]
		if rest != "" && (rest[0] != ':' || !validPort(rest[1:])) {
			return ""
		}
		if !strings.Contains(name, ":") || net.ParseIP(name) == nil {
			return "" // only an IPv6 address goes in brackets
		}
		return strings.ToLower(name)
	}
	if i := strings.IndexByte(host, ':'); i >= 0 {
		var port string
		name, port = host[:i], host[i+1:]
		if !validPort(port) {
			return ""
		}
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return ""
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '.' && c != '-' && c != '_' {
			return ""
		}
	}
	return strings.ToLower(name)
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && p[0] != '+' && p[0] != '-' && n >= 0 && n <= 65535 && len(p) <= 5
}

// port is the port of a Host header ("" when it has none or is not a valid host).
func port(hostHeader string) string {
	if Hostname(hostHeader) == "" {
		return ""
	}
	i := strings.LastIndexByte(hostHeader, ':')
	if i < 0 || strings.HasSuffix(hostHeader, "]") {
		return ""
	}
	return hostHeader[i+1:]
}

// RequestTarget is the origin-form of a request-target as received: an absolute-form target
// ("http://host/a?b", which HTTP/1.1 allows and proxies send) becomes "/a?b"; anything else is
// returned as it is (and is refused as ambiguous unless it starts with "/").
func RequestTarget(uri string) string {
	if uri == "" || uri[0] == '/' {
		return uri
	}
	for _, scheme := range [...]string{"http://", "https://", "ws://", "wss://"} {
		if len(uri) >= len(scheme) && strings.EqualFold(uri[:len(scheme)], scheme) {
			rest := uri[len(scheme):]
			if i := strings.IndexAny(rest, "/?"); i >= 0 {
				if rest[i] == '?' {
					return "/" + rest[i:]
				}
				return rest[i:]
			}
			return "/"
		}
	}
	return uri
}

// CrossSite reports whether a browser says that another site started the request
// (docs/policy-contract.md#cross-site-writes-with-ambient-keys): Sec-Fetch-Site is present and
// neither "same-origin" nor "none", or an Origin header is present whose host is not the
// request's. hostHeader is the request's Host (or the gateway's forwarded host) as received. The
// ports are compared only when hostHeader has one: a gateway such as nginx passes $host without
// it, while a browser's Origin keeps a non-default port. Origin "null" (a sandboxed frame, a
// cross-site redirect) is cross-site. Requests with neither header (servers, scripts, native
// apps) are not cross-site.
func CrossSite(h http.Header, hostHeader string) bool {
	for _, v := range h.Values("Sec-Fetch-Site") {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "same-origin", "none":
		default:
			return true
		}
	}
	origins := h.Values("Origin")
	if len(origins) == 0 {
		return false
	}
	host, hostPort := Hostname(hostHeader), port(hostHeader)
	for _, v := range origins {
		u, err := url.Parse(strings.TrimSpace(v))
		if err != nil || u.Host == "" || host == "" || Hostname(u.Host) != host {
			return true
		}
		if hostPort != "" && cmp.Or(u.Port(), defaultPorts[strings.ToLower(u.Scheme)]) != hostPort {
			return true
		}
	}
	return false
}

// defaultPorts are the ports an Origin without one implies.
var defaultPorts = map[string]string{"http": "80", "https": "443"}

// protocol is "websocket" when the described request's protocol or its Upgrade header says so:
// either is enough, so that a service passing "http" beside an Upgrade header cannot switch off
// the rules for websockets.
func protocol(r Request) string {
	if r.Protocol == "websocket" {
		return "websocket"
	}
	return Protocol(r.Header)
}

// Protocol is "websocket" for a websocket upgrade, else "http".
func Protocol(h http.Header) string {
	for _, v := range h.Values("Upgrade") {
		if strings.EqualFold(strings.TrimSpace(v), "websocket") {
			return "websocket"
		}
	}
	return "http"
}
