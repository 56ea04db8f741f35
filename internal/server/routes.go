package server

import (
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// routes maps every route of keyauthz: the whole HTTP surface in one screen.
func (s *Server) routes() {
	g, store := s.gin, s.deps.Store

	// Admin API (PlaceOS paths). Every request, including unknown paths under the base, is
	// judged by the policy first.
	api := g.Group("/api/engine/v2", s.authorize)
	api.GET("", handleRoot())
	api.GET("/version", handleVersion(s.deps.Version))
	api.GET("/scopes", handleScopes(s.deps.Scopes))

	api.GET("/api_keys", keys.HandleListKeys(store))
	api.POST("/api_keys", keys.HandleCreateKey(store))
	api.GET("/api_keys/inspect", keys.HandleInspect())
	api.GET("/api_keys/:id", keys.HandleShowKey(store))
	api.PATCH("/api_keys/:id", keys.HandleUpdateKey(store))
	api.PUT("/api_keys/:id", keys.HandleUpdateKey(store))
	api.DELETE("/api_keys/:id", keys.HandleDeleteKey(store))

	api.GET("/domains", keys.HandleListDomains(store))
	api.POST("/domains", keys.HandleCreateDomain(store))
	api.GET("/domains/:id", keys.HandleShowDomain(store))
	api.PATCH("/domains/:id", keys.HandleUpdateDomain(store))
	api.PUT("/domains/:id", keys.HandleUpdateDomain(store))
	api.DELETE("/domains/:id", keys.HandleDeleteDomain(store))

	api.GET("/users", keys.HandleListUsers(store))
	api.POST("/users", keys.HandleCreateUser(store))
	api.GET("/users/current", keys.HandleCurrentUser())
	api.GET("/users/:id", keys.HandleShowUser(store))
	api.PATCH("/users/:id", keys.HandleUpdateUser(store))
	api.PUT("/users/:id", keys.HandleUpdateUser(store))
	api.DELETE("/users/:id", keys.HandleDeleteUser(store))

	// Decision endpoints for gateways and services (decide.go).
	g.POST("/v1/data/keyauthz/decision", s.handleDataDecision(false))
	g.POST("/v1/data/keyauthz/allow", s.handleDataDecision(true))
	// Forward auth, one endpoint per gateway style (forwardauth.go). ServeHTTP routes every
	// other path under /authz, however spelt, to the retired /authz: a 403.
	g.Any(nginxAuthPath, s.handleForwardAuth(nginxRequest))
	g.Any(traefikAuthPath, s.handleForwardAuth(traefikRequest))
	g.Any(envoyAuthPath, s.handleForwardAuth(envoyRequest))
	g.Any(forwardAuthPrefix, handleRetiredForwardAuth())

	// Operations.
	g.GET("/health", s.handleHealth())
	g.GET("/metrics", gin.WrapH(promhttp.HandlerFor(s.deps.Registry, promhttp.HandlerOpts{})))

	// Forward auth answers any method, also those Gin does not route (Envoy passes the client's
	// method on, and the policy, not a 404, must refuse an unknown one). Anything else under
	// the admin base is judged by the policy first, then is a 404; anything
	// outside it is a plain 404.
	g.NoRoute(s.forwardAuthAnyMethod(), s.handleNoRoute())
}
