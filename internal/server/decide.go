package server

import (
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/keyauthz/keyauthz/internal/authz"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// dataRequest is the body of POST /v1/data/keyauthz/{decision,allow}, the OPA Data API shape.
type dataRequest struct {
	Input *dataInput `json:"input"`
}

type dataInput struct {
	Method   string `json:"method"`
	Path     string `json:"path"`
	Host     string `json:"host"`
	Protocol string `json:"protocol"`
	// Headers maps a header name (any case) to a value, or to a list of values.
	Headers map[string]headerValues `json:"headers"`
}

// headerValues is a header's value in the Data API input: a string or a list of strings.
type headerValues []string

// UnmarshalJSON implements json.Unmarshaler.
func (v *headerValues) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*v = headerValues{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("a header's value must be a string or a list of strings")
	}
	*v = many
	return nil
}

// dataResponse is the answer of POST /v1/data/keyauthz/decision; boolResponse of .../allow.
type dataResponse struct {
	Result     DecisionResult `json:"result"`
	DecisionID string         `json:"decision_id"`
}

type boolResponse struct {
	Result     bool   `json:"result"`
	DecisionID string `json:"decision_id"`
}

// DecisionResult is the "result" of POST /v1/data/keyauthz/decision.
type DecisionResult struct {
	Allow       bool              `json:"allow"`
	Status      int               `json:"status"`
	Message     string            `json:"message"`
	KeyID       string            `json:"key_id"`
	UserID      string            `json:"user_id"`
	AuthorityID string            `json:"authority_id"`
	Permissions string            `json:"permissions"`
	Scopes      []string          `json:"scopes"`
	Headers     map[string]string `json:"headers"`
}

// handleDataDecision serves the Data API: the full decision, or (boolOnly) just allow, for OPA
// clients such as Kong's and APISIX's plugins that expect a boolean result.
func (s *Server) handleDataDecision(boolOnly bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		var body dataRequest
		if err := keys.BindJSON(c, &body); err != nil {
			keys.WriteError(c, err)
			return
		}
		if body.Input == nil {
			keys.WriteError(c, keys.Errorf(keys.EINVALID, `missing "input"`))
			return
		}
		header := headerFromInput(body.Input.Headers)
		res, id := s.decide(c, authz.Request{
			Method:   body.Input.Method,
			URI:      body.Input.Path,
			Host:     cmp.Or(body.Input.Host, header.Get("Host")),
			Header:   header,
			Protocol: body.Input.Protocol,
		})
		if boolOnly {
			c.JSON(http.StatusOK, boolResponse{Result: res.Decision.Allow, DecisionID: id})
			return
		}
		c.JSON(http.StatusOK, dataResponse{Result: decisionResult(res), DecisionID: id})
	}
}

func headerFromInput(in map[string]headerValues) http.Header {
	h := make(http.Header, len(in))
	// In name order, so that "X-API-Key" and "x-api-key" given together always give the same
	// first value (the one a credential is read from), whatever the map order.
	names := make([]string, 0, len(in))
	for name := range in {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, v := range in[name] {
			h.Add(name, v)
		}
	}
	return h
}

func decisionResult(res authz.Result) DecisionResult {
	out := DecisionResult{
		Allow:       res.Decision.Allow,
		Status:      res.Decision.Status,
		Message:     res.Decision.Message,
		KeyID:       res.KeyID,
		Permissions: res.Decision.Permissions,
		Scopes:      []string{},
		Headers:     map[string]string{},
	}
	if res.Key != nil {
		out.AuthorityID = res.Key.AuthorityID
		out.Scopes = res.Key.Scopes
	}
	if res.User != nil {
		out.UserID = res.User.ID
	}
	if out.Allow {
		out.Headers = identityHeaders(res)
	}
	return out
}

// identityHeaders are the headers a gateway passes upstream on an allow.
func identityHeaders(res authz.Result) map[string]string {
	h := map[string]string{"X-Auth-Permissions": res.Decision.Permissions}
	if res.Key != nil {
		h["X-Auth-Key-Id"] = res.Key.ID
		h["X-Auth-Authority-Id"] = res.Key.AuthorityID
		h["X-Auth-Scopes"] = strings.Join(res.Key.Scopes, ",")
	}
	if res.User != nil {
		h["X-Auth-User-Id"] = res.User.ID
	}
	return h
}

// handleForwardAuth serves /authz for nginx auth_request, Traefik ForwardAuth and Envoy's HTTP
// ext_authz. The original request is read from Traefik's X-Forwarded-* headers, else nginx's
// X-Original-* headers, else the request itself with the /authz prefix removed (Envoy).
// Allow: 200 with the identity headers. Deny: the decision's 401 or 403 with a JSON body naming
// what is missing. Never a redirect.
func (s *Server) handleForwardAuth() gin.HandlerFunc {
	return func(c *gin.Context) {
		res, id := s.decide(c, forwardedRequest(c.Request))
		c.Header("X-Decision-Id", id)
		if !res.Decision.Allow {
			// The message as a header too: nginx's auth_request drops the body of a deny, but
			// auth_request_set can read a header and put it into nginx's own error page.
			c.Header("X-Auth-Error", res.Decision.Message)
			c.AbortWithStatusJSON(denyStatus(res.Decision), gin.H{
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

// forwardedRequest reconstructs the request a gateway asks about.
func forwardedRequest(r *http.Request) authz.Request {
	h := r.Header
	out := authz.Request{Method: r.Method, Host: r.Host, Header: h}
	switch {
	case h.Get("X-Forwarded-Uri") != "" || h.Get("X-Forwarded-Method") != "":
		out.Method = cmp.Or(h.Get("X-Forwarded-Method"), r.Method)
		out.URI = cmp.Or(h.Get("X-Forwarded-Uri"), "/")
		out.Host = cmp.Or(h.Get("X-Forwarded-Host"), r.Host)
	case h.Get("X-Original-Uri") != "" || h.Get("X-Original-Method") != "":
		out.Method = cmp.Or(h.Get("X-Original-Method"), r.Method)
		out.URI = cmp.Or(h.Get("X-Original-Uri"), "/")
		out.Host = cmp.Or(h.Get("X-Original-Host"), h.Get("X-Forwarded-Host"), r.Host)
	default:
		out.URI = strings.TrimPrefix(requestURI(r), "/authz")
	}
	return out
}

// forwardAuthPrefix is the path prefix of forward auth; Envoy appends the original path to it.
const forwardAuthPrefix = "/authz"

// routePath is the path ServeHTTP routes and the policy judges: the normalised path, except
// that a forward-auth path keeps its /authz prefix and only the rest is normalised. Envoy sends
// "/authz" + the client's path as the client wrote it, so "/authz/%2e%2e/metrics" must be judged
// as the client's "/metrics", not routed to keyauthz's own /metrics (a 200 that Envoy would take
// for an allow).
func routePath(escaped string) string {
	if rest, ok := cutForwardAuthPrefix(escaped); ok {
		if rest = opa.NormalizePath(rest); rest != "/" {
			return forwardAuthPrefix + rest
		}
		return forwardAuthPrefix
	}
	return opa.NormalizePath(escaped)
}

// cutForwardAuthPrefix reports whether the first segment of an escaped path that survives
// normalisation is "authz" (after skipping empty, "." and leading ".." segments, with escapes
// decoded once as NormalizePath does), and returns the escaped rest after it.
func cutForwardAuthPrefix(escaped string) (rest string, ok bool) {
	p := escaped
	for p != "" {
		p = strings.TrimPrefix(p, "/")
		seg, after, found := cutSegment(p)
		name := seg
		if u, err := url.PathUnescape(seg); err == nil {
			name = u
		}
		switch name {
		case "", ".", "..":
			if !found {
				return "", false
			}
			p = after
			continue
		case "authz":
			if !found {
				return "", true
			}
			return "/" + after, true
		}
		return "", false
	}
	return "", false
}

// cutSegment cuts p at its first separator: '/' or an escaped slash ("%2f", "%2F"), which
// NormalizePath also treats as a separator.
func cutSegment(p string) (seg, after string, found bool) {
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			return p[:i], p[i+1:], true
		}
		if p[i] == '%' && i+2 < len(p) && p[i+1] == '2' && (p[i+2] == 'f' || p[i+2] == 'F') {
			return p[:i], p[i+3:], true
		}
	}
	return p, "", false
}
