package server

import (
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/keyauthz/keyauthz/internal/authz"
	"github.com/keyauthz/keyauthz/internal/keys"
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
	// ClientIP is the address of the client the service or gateway is asking about, optional
	// (docs/limits.md#the-client-address): without it, a key with an allow-list is refused.
	ClientIP string `json:"client_ip"`
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
	// RetryAfter is set with status 429 (the key's rate limit): seconds until it may try again.
	RetryAfter int `json:"retry_after,omitempty"`
}

// handleDataDecision serves the Data API: the full decision, or (boolOnly) just allow, for OPA
// clients such as Kong's and APISIX's plugins that expect a boolean result.
func (s *Server) handleDataDecision(boolOnly bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		var body dataRequest
		if err := bindJSON(c, &body); err != nil {
			writeError(c, err)
			return
		}
		if body.Input == nil {
			writeError(c, keys.Errorf(keys.EINVALID, `missing "input"`))
			return
		}
		if ip := body.Input.ClientIP; ip != "" {
			if _, ok := keys.ParseClientIP(ip); !ok {
				writeError(c, keys.Errorf(keys.EINVALID, `"client_ip" must be an IPv4 or IPv6 address without a port`))
				return
			}
		}
		header := headerFromInput(body.Input.Headers)
		res, id := s.decide(c, authz.Request{
			Method:   body.Input.Method,
			URI:      body.Input.Path,
			Host:     cmp.Or(body.Input.Host, header.Get("Host")),
			Header:   header,
			Protocol: body.Input.Protocol,
			ClientIP: body.Input.ClientIP,
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
	if res.Decision.Status == http.StatusTooManyRequests {
		out.RetryAfter = authz.RetryAfterSeconds(res.RetryAfter)
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
