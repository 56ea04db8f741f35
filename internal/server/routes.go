package server

import (
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

	api.GET("/api_keys", handleListKeys(store))
	api.POST("/api_keys", handleCreateKey(store))
	api.GET("/api_keys/inspect", handleInspect())
	api.GET("/api_keys/:id", handleShowKey(store))
	api.PATCH("/api_keys/:id", handleUpdateKey(store))
	api.PUT("/api_keys/:id", handleUpdateKey(store))
	api.DELETE("/api_keys/:id", handleDeleteKey(store))
	api.POST("/api_keys/:id/rotate", handleRotateKey(store))
	api.POST("/import/placeos", handleImportPlaceOS(store))
	api.GET("/audit", handleListAudit(store)) // admin_audit.go

	api.GET("/domains", handleListDomains(store))
	api.POST("/domains", handleCreateDomain(store))
	api.GET("/domains/:id", handleShowDomain(store))
	api.PATCH("/domains/:id", handleUpdateDomain(store))
	api.PUT("/domains/:id", handleUpdateDomain(store))
	api.DELETE("/domains/:id", handleDeleteDomain(store))

	api.GET("/users", handleListUsers(store))
	api.POST("/users", handleCreateUser(store))
	api.GET("/users/current", handleCurrentUser())
	api.GET("/users/:id", handleShowUser(store))
	api.PATCH("/users/:id", handleUpdateUser(store))
	api.PUT("/users/:id", handleUpdateUser(store))
	api.DELETE("/users/:id", handleDeleteUser(store))

	// Decision endpoints for gateways and services (decide.go).
	g.POST("/v1/data/keyauthz/decision", s.handleDataDecision(false))
	g.POST("/v1/data/keyauthz/allow", s.handleDataDecision(true))
	// Forward auth, one endpoint per gateway style (forwardauth.go). ServeHTTP routes every
	// other path under /authz, however spelt, to the retired /authz: a 403.
	g.Any(nginxAuthPath, s.handleForwardAuth(nginxAuthPath, nginxRequest))
	g.Any(traefikAuthPath, s.handleForwardAuth(traefikAuthPath, traefikRequest))
	g.Any(envoyAuthPath, s.handleForwardAuth(envoyAuthPath, envoyRequest))
	g.Any(forwardAuthPrefix, s.handleRetiredForwardAuth())

	// Operations.
	g.GET("/health", s.handleHealth())
	g.GET("/metrics", gin.WrapH(promhttp.HandlerFor(s.deps.Registry, promhttp.HandlerOpts{})))

	// Forward auth answers any method, also those Gin does not route (Envoy passes the client's
	// method on, and the policy, not a 404, must refuse an unknown one). Anything else under
	// the admin base is judged by the policy first, then is a 404; anything
	// outside it is a plain 404.
	g.NoRoute(s.forwardAuthAnyMethod(), s.handleNoRoute())
	s.mapAdminPage() // the admin page at /admin/: public, embedded assets (adminpage.go)
}
