package server

import (
	"net"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyauthz/keyauthz/internal/authz"
)

// Per-key limits on the HTTP surface (docs/limits.md): where each surface takes the client
// address from, and the Retry-After of a 429.

// connectionIP is the address of the client connected to keyauthz ("" if r has none, as a
// request made in-process). The admin API reads no forwarding header: whoever reaches it
// directly could write any.
func connectionIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}

// setRetryAfter sets Retry-After (whole seconds) on the answer to a request refused over its
// key's rate limit; any other answer is left alone.
func setRetryAfter(c *gin.Context, res authz.Result) {
	if res.Decision.Status == http.StatusTooManyRequests {
		c.Header("Retry-After", strconv.Itoa(authz.RetryAfterSeconds(res.RetryAfter)))
	}
}

// registerLimitMetrics exports the rate limiter's counters, read at scrape time:
// keyauthz_rate_limited_total (requests refused with 429) and keyauthz_rate_limit_buckets.
func registerLimitMetrics(reg *prometheus.Registry, a *authz.Authorizer) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keyauthz_rate_limited_total",
			Help: "Requests refused (429) because their key was over its rate limit on this node.",
		}, func() float64 { return float64(a.RateLimited()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keyauthz_rate_limit_buckets",
			Help: "Token buckets this node holds for keys with a rate limit.",
		}, func() float64 { return float64(a.RateLimitBuckets()) }),
	)
}
