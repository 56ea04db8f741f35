package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

const adminBase = "/api/engine/v2"

func handleRoot() gin.HandlerFunc {
	return func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"healthy": true}) }
}

func handleVersion(version string) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"service": "keyauthz", "version": version})
	}
}

func handleScopes(scopes func() []string) gin.HandlerFunc {
	return func(c *gin.Context) {
		list := []string{}
		if scopes != nil {
			list = scopes()
		}
		c.JSON(http.StatusOK, list)
	}
}

// Degraded wraps a problem that leaves decisions working (the disk too full for writes):
// returned by Deps.Health, it makes /health answer 200 with status "degraded" rather than 503.
type Degraded struct{ Err error }

func (d *Degraded) Error() string { return d.Err.Error() }
func (d *Degraded) Unwrap() error { return d.Err }

// handleHealth answers 200 "ok" when the store and a policy are loaded and the last policy load
// succeeded; 200 "degraded" with the reason when Health reports a *Degraded problem (keyauthz
// still decides, but refuses admin writes); else 503 "unhealthy" naming the problem. Degraded
// is a 200 on purpose: load balancers and orchestrators take any other status as "take this
// node out", and a node that cannot write still answers every decision, so taking it out (and
// every node that shares the full disk) would turn refused admin writes into refused traffic.
// Monitoring reads "status". See docs/operations.md#disk-space.
func (s *Server) handleHealth() gin.HandlerFunc {
	return func(c *gin.Context) {
		body := gin.H{"status": "ok", "revision": s.deps.Engine.Revision()}
		if s.deps.Health != nil {
			err := s.deps.Health()
			var degraded *Degraded
			switch {
			case errors.As(err, &degraded):
				body["status"] = "degraded"
				body["error"] = err.Error()
			case err != nil:
				body["status"] = "unhealthy"
				body["error"] = err.Error()
				c.JSON(http.StatusServiceUnavailable, body)
				return
			}
		}
		c.JSON(http.StatusOK, body)
	}
}

func (s *Server) handleNoRoute() gin.HandlerFunc {
	return func(c *gin.Context) {
		p := c.Request.URL.Path
		if underAdminPage(p) {
			setAdminPageHeaders(c.Writer.Header()) // any method, any spelling (adminpage.go)
		}
		if p == adminBase || strings.HasPrefix(p, adminBase+"/") {
			s.authorize(c)
			if c.IsAborted() {
				return
			}
		}
		c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": "not found"})
	}
}
