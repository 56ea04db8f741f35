package server

import (
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

// handleHealth answers 200 when the store and a policy are loaded and the last policy load
// succeeded, else 503 naming the problem.
func (s *Server) handleHealth() gin.HandlerFunc {
	return func(c *gin.Context) {
		body := gin.H{"status": "ok", "revision": s.deps.Engine.Revision()}
		if s.deps.Health != nil {
			if err := s.deps.Health(); err != nil {
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
		if p == adminBase || strings.HasPrefix(p, adminBase+"/") {
			s.authorize(c)
			if c.IsAborted() {
				return
			}
		}
		c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": "not found"})
	}
}
