// Package server is keyauthz's HTTP surface: it wires the admin API, the decision endpoints,
// health and metrics onto one Gin engine (see routes.go, the one place that maps them) and puts
// every admin request through the same credential path (package authz) as every decision.
package server

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyauthz/keyauthz/internal/authz"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// Engine is what the server needs of the policy engine.
type Engine interface {
	authz.Engine
	// Revision is the active policy's revision.
	Revision() string
}

// Deps are the server's dependencies, given by the caller (run in cmd/keyauthz).
type Deps struct {
	Logger *slog.Logger
	Store  keys.Service
	Engine Engine
	// Authorizer is the credential path over Store and Engine, built by authz.New as keyauthz
	// serve builds it (caches, usage recorder); required. Its caches' counters are exported as
	// keyauthz_cache_{hits,misses}_total{cache="key"|"decision"}.
	Authorizer *authz.Authorizer
	// Health reports whether the service can decide; nil means always healthy.
	Health func() error
	// Scopes lists the scope names the route table knows (GET /api/engine/v2/scopes).
	Scopes func() []string
	// Version is the build's version string.
	Version string
	// Registry receives the server's metrics; nil means a new registry of its own.
	Registry *prometheus.Registry
	// DecisionLog, when set, receives one record per decision (decisionlog.go).
	DecisionLog *DecisionLogger
}

// Server is the HTTP handler of keyauthz.
type Server struct {
	deps    Deps
	authz   *authz.Authorizer
	gin     *gin.Engine
	metrics *metrics
	logger  *slog.Logger
}

// New returns the keyauthz HTTP handler built from deps. It panics when deps.Authorizer is nil:
// the server never builds a credential path of its own, so that what its tests run is what
// keyauthz serve runs.
func New(deps Deps) *Server {
	a := deps.Authorizer
	if a == nil || deps.Engine == nil {
		panic("server: Deps.Authorizer (authz.New) and Deps.Engine are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	gin.SetMode(gin.ReleaseMode)
	g := gin.New()
	g.HandleMethodNotAllowed = false
	g.RedirectTrailingSlash = false // a gateway's auth call must never be answered by a redirect
	g.RedirectFixedPath = false
	g.ContextWithFallback = true
	s := &Server{deps: deps, authz: a, gin: g, logger: deps.Logger}
	var revision func() string
	if deps.Engine != nil {
		revision = deps.Engine.Revision
	}
	caches := map[string]CacheStats{"key": a.StoreCache().Stats, "decision": a.DecisionCache().Stats}
	s.metrics = newMetrics(deps.Registry, deps.Store, revision, caches)
	registerLimitMetrics(deps.Registry, a)
	g.Use(s.recoverJSON, s.logRequests)
	s.routes()
	return s
}

// ServeHTTP routes r by the path the policy judges: the raw request-target's path, normalised
// (Authorize does the same with the URI it is given), so that Gin dispatches exactly the route
// the policy judged: "/api/engine/v2/systems/../api_keys" is routed, and judged, as
// "/api/engine/v2/api_keys". Forward auth is routed on the raw target (forwardAuthRoute).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.URL.Path = routePath(r)
	r.URL.RawPath = ""
	s.gin.ServeHTTP(w, r)
}

// routePath is the path ServeHTTP routes r by.
func routePath(r *http.Request) string {
	target := requestURI(r)
	// URIPath cuts the path as Authorize's SplitURI does: routing and judging read the same
	// path (and the query is not parsed here for nothing).
	rawPath := opa.URIPath(target)
	p := opa.NormalizePath(rawPath)
	if route := forwardAuthRoute(target, rawPath, p); route != "" {
		return route
	}
	return p
}

// recoverJSON turns a panic into a 500 with a JSON body and no stack trace for the client.
func (s *Server) recoverJSON(c *gin.Context) {
	// The server's logger, for writeError: its records go through the same (redacting)
	// handler as every other record of the server.
	c.Set(ctxLogger, s.logger)
	defer func() {
		if v := recover(); v != nil {
			s.logger.Error("panic in handler", "path", c.Request.URL.Path, "panic", v)
			c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
		}
	}()
	c.Next()
}

// logRequests logs one line per request at debug level, with the api-key parameter stripped.
func (s *Server) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	if !s.logger.Enabled(c.Request.Context(), slog.LevelDebug) {
		return
	}
	s.logger.Debug("request",
		"method", c.Request.Method,
		"path", RedactPath(c.Request.URL.Path),
		"query", RedactQuery(c.Request.URL.RawQuery),
		"status", c.Writer.Status(),
		"key_id", c.GetString(ctxKeyID),
		"latency", time.Since(start))
}

// ctxLogger is the Gin context key under which the server's logger is kept for writeError.
const ctxLogger = "keyauthz.logger"

// ctxKeyID is the Gin context key under which the caller's key id is kept for the request log.
const ctxKeyID = "keyauthz.key_id"

// authorize is the admin API's gate: the policy judges every request, through the same
// credential path as the decision endpoints, on the raw request-target (requestURI). A deny ends the request with the decision's status
// and {"error": message}; an allow hands the caller to the handler.
func (s *Server) authorize(c *gin.Context) {
	res, decisionID := s.decide(c, authz.Request{
		Method: c.Request.Method,
		URI:    requestURI(c.Request),
		Host:   c.Request.Host,
		Header: c.Request.Header,
		// The admin API is reached directly: its client is the connection (docs/limits.md).
		ClientIP: connectionIP(c.Request),
	})
	// The request id of the audit log (docs/audit.md) is the id of the decision that let the
	// request in, so a record leads to its decision log entry; the client sees it too.
	c.Header("X-Request-Id", decisionID)
	c.Request = c.Request.WithContext(keys.ContextWithRequestID(c.Request.Context(), decisionID))
	if !res.Decision.Allow {
		setRetryAfter(c, res)
		c.AbortWithStatusJSON(denyStatus(res.Decision), gin.H{"error": res.Decision.Message})
		return
	}
	if res.Key != nil {
		c.Request = c.Request.WithContext(keys.ContextWithCaller(c.Request.Context(), &keys.Caller{
			Key: res.Key, User: res.User, Permissions: keys.Permission(res.Decision.Permissions),
		}))
	}
	c.Next()
}

// decide runs the credential path for r and records the decision (metrics, decision log).
// It returns the result and the decision's id.
func (s *Server) decide(c *gin.Context, r authz.Request) (authz.Result, string) {
	start := time.Now()
	res := s.authz.Authorize(c.Request.Context(), r)
	elapsed := time.Since(start)
	id := uuid.NewString()
	c.Set(ctxKeyID, res.KeyID)
	s.metrics.observe(res.Decision, elapsed)
	if s.deps.DecisionLog != nil {
		// The revision of the policy that decided (a reload may have swapped another in since),
		// or none when keyauthz refused before the policy ran (a bad key, an ambiguous path).
		s.deps.DecisionLog.Log(id, res, res.Revision, elapsed)
	}
	return res, id
}

// denyStatus is the HTTP status of a deny: the decision's own, never 200.
func denyStatus(d opa.Decision) int {
	switch d.Status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusServiceUnavailable:
		return d.Status
	default:
		return http.StatusForbidden
	}
}

// requestURI is the request-target as the client sent it (r.RequestURI: raw, not normalised,
// with its query), in origin form: the policy must judge the spelling the backend behind a
// gateway receives, and Authorize refuses the spellings that routers read differently. An
// absolute-form target ("http://host/path") is cut to its path and query.
func requestURI(r *http.Request) string {
	if r.RequestURI != "" && r.RequestURI != "*" {
		return authz.RequestTarget(r.RequestURI)
	}
	// "*" (OPTIONS *), or a request made in-process without a RequestURI.
	return r.URL.RequestURI()
}
