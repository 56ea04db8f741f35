package server

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/keyauthz/keyauthz/internal/authz"
)

// Forward auth (docs/http-api.md#forward-auth): one endpoint per gateway style, each reading
// the original request only from what that gateway sets itself. A client can put any header on
// its request, and nginx passes every client header to the auth subrequest, so an endpoint that
// accepted several styles (as /authz once did) let a client describe another request than the
// one the backend runs.
const (
	forwardAuthPrefix = "/authz"         // the retired endpoint, and the prefix of the three
	nginxAuthPath     = "/authz/nginx"   // X-Original-Method, X-Original-URI, Host
	traefikAuthPath   = "/authz/traefik" // X-Forwarded-Method, X-Forwarded-Uri, X-Forwarded-Host
	envoyAuthPath     = "/authz/envoy"   // the request itself; Envoy appends the client's path
)

// msgRetired is the deny of /authz and of any path under it that is none of the three endpoints.
// It is a 403, not a 404: nginx's auth_request turns a 404 into a 500 for the client and other
// gateways differ again, while every gateway reads a 403 as a deny.
const msgRetired = "/authz was replaced by /authz/nginx, /authz/traefik and /authz/envoy/<path>, " +
	"each trusting only its own gateway's headers (docs/gateways.md)"

// readForwarded reads the request a gateway asks about; problem is the reason for a 403 when a
// header the endpoint trusts is missing or ambiguous.
type readForwarded func(r *http.Request) (req authz.Request, problem string)

// nginxRequest reads nginx's auth_request subrequest: the docs' configuration sets X-Original-URI
// to $request_uri, X-Original-Method to $request_method, X-Original-Remote-Addr to $remote_addr
// and Host to $host, replacing whatever the client sent under those names.
func nginxRequest(r *http.Request) (authz.Request, string) {
	// The client address is required like the method and URI: nginx passes every client header
	// to its auth subrequest, so a configuration that does not set X-Original-Remote-Addr lets
	// the client write it, and an allow-listed key would be judged on the client's word. Refusing
	// every request of such a configuration makes it fail closed, and noticed.
	v, problem := trustedHeaders(r.Header, "X-Original-Method", "X-Original-URI", nginxClientHeader)
	if problem != "" {
		return authz.Request{}, problem
	}
	if r.Host == "" {
		return authz.Request{}, missing("Host")
	}
	return authz.Request{Method: v[0], URI: v[1], Host: r.Host, Header: r.Header, ClientIP: v[2]}, ""
}

// nginxClientHeader carries nginx's $remote_addr, the address of the client connected to it
// (docs/limits.md#the-client-address). The docs' configuration sets it with proxy_set_header,
// which replaces a client's header of that name.
const nginxClientHeader = "X-Original-Remote-Addr"

// forwardedClient is the client address Traefik and Envoy add: the right-most entry of
// X-Forwarded-For, which a proxy appends to whatever the client sent (Traefik with
// trustForwardHeader false, Envoy with use_remote_address true). Entries to its left come
// from the client, or from proxies keyauthz knows nothing of, and are never read.
func forwardedClient(h http.Header) string {
	v := h.Values("X-Forwarded-For")
	if len(v) == 0 {
		return ""
	}
	last := v[len(v)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.TrimSpace(last)
}

// traefikRequest reads Traefik's ForwardAuth request: with trustForwardHeader false, Traefik sets
// X-Forwarded-Method, X-Forwarded-Uri and X-Forwarded-Host from the request it received.
func traefikRequest(r *http.Request) (authz.Request, string) {
	v, problem := trustedHeaders(r.Header, "X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-Host")
	if problem != "" {
		return authz.Request{}, problem
	}
	return authz.Request{Method: v[0], URI: v[1], Host: v[2], Header: r.Header, ClientIP: forwardedClient(r.Header)}, ""
}

// envoyRequest reads Envoy's HTTP ext_authz request: the client's method and Host, and the
// client's path and query appended to the path_prefix /authz/envoy. The path is taken from the
// request-target as it arrived, not from Go's parsed URL, so the policy sees the client's raw
// spelling (Authorize refuses the ambiguous ones).
func envoyRequest(r *http.Request) (authz.Request, string) {
	if r.Host == "" {
		return authz.Request{}, missing("Host")
	}
	uri := strings.TrimPrefix(requestURI(r), envoyAuthPath)
	if uri == "" || uri[0] == '?' {
		uri = "/" + uri
	}
	return authz.Request{Method: r.Method, URI: uri, Host: r.Host, Header: r.Header, ClientIP: forwardedClient(r.Header)}, ""
}

// trustedHeaders returns the one value of each header the gateway sets, in the order named.
// Absent or empty is a misconfigured gateway (or a client calling keyauthz directly): a deny,
// never a fall-back to another source. Given more than once means a gateway passed a client's
// copy on beside its own.
func trustedHeaders(h http.Header, names ...string) ([]string, string) {
	out := make([]string, len(names))
	for i, name := range names {
		v := h.Values(name)
		switch {
		case len(v) == 0 || v[0] == "":
			return nil, missing(name)
		case len(v) > 1:
			return nil, name + " header given more than once: the gateway must set it, replacing the client's (docs/gateways.md)"
		}
		out[i] = v[0]
	}
	return out, ""
}

func missing(name string) string {
	return "missing " + name + " header: the gateway must set it (docs/gateways.md)"
}

// handleForwardAuth serves one forward-auth endpoint. Allow: 200 with the identity headers.
// Deny: the decision's 401 or 403 with a JSON body naming what is missing, and the message in
// X-Auth-Error (nginx's auth_request drops the body of a deny, but auth_request_set can read a
// header and put it into nginx's own error page). Never a redirect. endpoint names the
// endpoint in metrics (Envoy's requests carry the client's path after it).
func (s *Server) handleForwardAuth(endpoint string, read readForwarded) gin.HandlerFunc {
	return func(c *gin.Context) {
		req, problem := read(c.Request)
		if problem != "" {
			s.metrics.refusals.WithLabelValues(endpoint, refusedMissingHeader).Inc()
			forwardAuthError(c, problem)
			return
		}
		res, id := s.decide(c, req)
		c.Header("X-Decision-Id", id)
		if !res.Decision.Allow {
			c.Header("X-Auth-Error", res.Decision.Message)
			status := denyStatus(res.Decision)
			if status == http.StatusTooManyRequests {
				c.Header("X-Auth-Status", strconv.Itoa(status))
				setRetryAfter(c, res)
				// nginx's auth_request takes any status but 2xx, 401 and 403 for a fault of
				// its own (500): nginx is told 403, and the configuration of docs/gateways.md
				// answers the client 429 from X-Auth-Status, with Retry-After.
				if c.Request.URL.Path == nginxAuthPath {
					status = http.StatusForbidden
				}
			}
			c.AbortWithStatusJSON(status, gin.H{
				"error":  res.Decision.Message,
				"status": res.Decision.Status,
				"route":  res.Decision.Route,
			})
			return
		}
		for k, v := range identityHeaders(res) {
			c.Header(k, v)
		}
		c.JSON(http.StatusOK, gin.H{"allow": true, "decision_id": id})
	}
}

// forwardAuthAnyMethod serves, on Gin's no-route path, a forward-auth request whose method Gin
// has no route for (g.Any covers only the standard methods): Envoy asks with the client's
// method, whatever it is.
func (s *Server) forwardAuthAnyMethod() gin.HandlerFunc {
	handlers := map[string]gin.HandlerFunc{
		nginxAuthPath:     s.handleForwardAuth(nginxAuthPath, nginxRequest),
		traefikAuthPath:   s.handleForwardAuth(traefikAuthPath, traefikRequest),
		envoyAuthPath:     s.handleForwardAuth(envoyAuthPath, envoyRequest),
		forwardAuthPrefix: s.handleRetiredForwardAuth(),
	}
	return func(c *gin.Context) {
		if h, ok := handlers[c.Request.URL.Path]; ok {
			h(c)
			c.Abort()
		}
	}
}

// handleRetiredForwardAuth answers /authz and every other path under it (counted under the
// endpoint "/authz", whatever the path: a client's path must not make new series).
func (s *Server) handleRetiredForwardAuth() gin.HandlerFunc {
	return func(c *gin.Context) {
		s.metrics.refusals.WithLabelValues(forwardAuthPrefix, refusedRetired).Inc()
		forwardAuthError(c, msgRetired)
	}
}

// forwardAuthError is a deny that Go gives before any decision: 403 with the reason.
func forwardAuthError(c *gin.Context, msg string) {
	c.Header("X-Auth-Error", msg)
	c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": msg, "status": http.StatusForbidden})
}

// forwardAuthRoute returns the forward-auth route a request-target is served by, or "" when it
// is not under /authz at all; rawPath is the target's path, normalised its normalised form. The three endpoints are matched on the raw target, letter for
// letter: Envoy writes /authz/envoy followed by the client's path as the client wrote it, so
// "/authz/envoy/%2e%2e/%2e%2e/metrics" must be judged as the client's path, never routed to
// keyauthz's own /metrics (a 200 that Envoy would take for an allow). Any other spelling whose
// path lies under /authz (before or after normalisation, in any case) is the retired endpoint:
// a gateway still configured for the old /authz, such as Envoy with path_prefix /authz, is then
// refused instead of having its appended path routed inside keyauthz, and "/x/../authz/nginx"
// never reaches an endpoint that trusts headers.
func forwardAuthRoute(target, rawPath, normalised string) string {
	for _, p := range [...]string{nginxAuthPath, traefikAuthPath} {
		if rest, ok := strings.CutPrefix(target, p); ok && (rest == "" || rest[0] == '?') {
			return p
		}
	}
	if rest, ok := strings.CutPrefix(target, envoyAuthPath); ok && (rest == "" || rest[0] == '/' || rest[0] == '?') {
		return envoyAuthPath
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(normalised, "/"), "/")
	if underForwardAuth(rawPath) || strings.EqualFold(first, "authz") {
		return forwardAuthPrefix
	}
	return ""
}

// underForwardAuth reports whether the first segment of an escaped path that survives
// normalisation is "authz" in any case (after skipping empty, "." and leading ".." segments,
// with escapes decoded once as NormalizePath does).
func underForwardAuth(escaped string) bool {
	p := escaped
	for p != "" {
		p = strings.TrimPrefix(p, "/")
		seg, after, found := cutSegment(p)
		name := seg
		if u, err := url.PathUnescape(seg); err == nil {
			name = u
		}
		switch {
		case name == "" || name == "." || name == "..":
			if !found {
				return false
			}
			p = after
		default:
			return strings.EqualFold(name, "authz")
		}
	}
	return false
}

// cutSegment cuts p at its first separator: '/', or an escaped slash or backslash ("%2f",
// "%5c", any case), which a router may also read as a separator.
func cutSegment(p string) (seg, after string, found bool) {
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			return p[:i], p[i+1:], true
		}
		if p[i] == '%' && i+2 < len(p) && (p[i+1] == '2' && (p[i+2] == 'f' || p[i+2] == 'F') ||
			p[i+1] == '5' && (p[i+2] == 'c' || p[i+2] == 'C')) {
			return p[:i], p[i+3:], true
		}
	}
	return p, "", false
}
