package server

import (
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/keyauthz/keyauthz/internal/authz"
)

// DecisionLogger writes one JSON line per decision: what was asked (method, normalised path,
// query, host, the caller's key and user ids), what was answered, under which policy revision
// and how long it took. It never writes a key, a secret or the api-key parameter: authz removed
// them from the policy input, and every text a client chose (method, path, query, host) is
// redacted all the same (a key can ride in a path segment, PlaceOS's upload route has one, in
// another parameter, or be sent by mistake as the method or the host).
type DecisionLogger struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// NewDecisionLogger returns a logger writing to w. Writes are serialised.
func NewDecisionLogger(w io.Writer) *DecisionLogger {
	return &DecisionLogger{enc: json.NewEncoder(w)}
}

type decisionRecord struct {
	DecisionID string `json:"decision_id"`
	Time       string `json:"time"`
	Method     string `json:"method"`
	Path       string `json:"path"`
	Query      string `json:"query,omitempty"`
	Host       string `json:"host"`
	Protocol   string `json:"protocol"`
	ClientIP   string `json:"client_ip,omitempty"` // the client address, if known (docs/limits.md)
	KeyID      string `json:"key_id,omitempty"`
	UserID     string `json:"user_id,omitempty"`
	Result     string `json:"result"`
	Status     int    `json:"status"`
	Message    string `json:"message"`
	// Revision is the revision of the policy that decided; absent when keyauthz refused
	// before the policy ran (a malformed, unknown or expired key, an ambiguous path).
	Revision  string  `json:"revision,omitempty"`
	LatencyUS float64 `json:"latency_us"`
}

// Log writes the record of one decision.
func (l *DecisionLogger) Log(id string, res authz.Result, revision string, elapsed time.Duration) {
	rec := decisionRecord{
		DecisionID: id,
		Time:       time.Now().UTC().Format(time.RFC3339Nano),
		Method:     logMethod(res.Input.Request.Method),
		Path:       RedactPath(res.Input.Request.Path),
		Query:      logQuery(res.Input.Request.Query),
		Host:       RedactKeys(res.Input.Request.Host),
		Protocol:   res.Input.Request.Protocol,
		ClientIP:   res.Input.Request.ClientIP,
		KeyID:      res.KeyID,
		Result:     "deny",
		Status:     res.Decision.Status,
		Message:    RedactKeys(res.Decision.Message),
		Revision:   revision,
		LatencyUS:  float64(elapsed.Nanoseconds()) / 1e3,
	}
	if res.User != nil {
		rec.UserID = res.User.ID
	}
	if res.Decision.Allow {
		rec.Result = "allow"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.enc.Encode(&rec) // a failed log write must not fail the request
}

// maxLoggedMethod bounds a method in the log: the method comes from the client (or its
// gateway's header) and a refused one can be any text.
const maxLoggedMethod = 32

// logMethod is a method as the log shows it: any text the client chose is redacted like a path
// (a key sent as the method must not reach the log) and cut to maxLoggedMethod bytes.
func logMethod(m string) string {
	m = RedactKeys(m)
	if len(m) > maxLoggedMethod {
		m = m[:maxLoggedMethod] + "…"
	}
	return m
}

// logQuery is the query of a policy input as a log shows it: encoded in name order, without
// any api-key parameter, and redacted.
func logQuery(q map[string][]string) string {
	if len(q) == 0 {
		return ""
	}
	v := make(url.Values, len(q))
	for name, values := range q {
		if !strings.EqualFold(name, authz.KeyParam) {
			v[name] = values
		}
	}
	return RedactQuery(v.Encode())
}
