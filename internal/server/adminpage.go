package server

import (
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/keyauthz/keyauthz/web"
)

// The admin page (docs/admin-page.md): static assets embedded from web/admin, served at
// /admin/ to anyone, with no key. The page holds no data; everything it shows it fetches from
// the admin API with the administrator's key in X-API-Key, so the policy judges every one of
// those requests as it judges curl's.

// adminPagePath is where the page lives. ServeHTTP normalises "/admin/" to "/admin".
const adminPagePath = "/admin"

// adminPageCSP allows the page's own script, style and images and its calls to the API on the
// same origin; nothing inline, nothing from elsewhere, no framing, no form submission (the
// page's forms are handled by its script), no <base>.
const adminPageCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// adminAsset is one embedded file with its content type.
type adminAsset struct {
	body        []byte
	contentType string
}

// adminContentTypes are the types of the files web/admin holds; a file of another kind is not
// served.
var adminContentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".txt":  "text/plain; charset=utf-8",
}

// loadAdminAssets reads every servable file of web/admin into memory, keyed by its name.
func loadAdminAssets() map[string]adminAsset {
	assets := map[string]adminAsset{}
	root, err := fs.Sub(web.Admin, "admin")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder
	}
	_ = fs.WalkDir(root, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := adminContentTypes[path.Ext(name)]
		if !ok {
			return nil
		}
		body, err := fs.ReadFile(root, name)
		if err != nil {
			return err
		}
		assets[name] = adminAsset{body: body, contentType: ct}
		return nil
	})
	return assets
}

// mapAdminPage maps GET and HEAD of /admin/ (index.html) and /admin/<file>.
func (s *Server) mapAdminPage() {
	h := handleAdminPage(loadAdminAssets())
	page := s.gin.Group(adminPagePath, adminPageHeaders)
	page.GET("", h)
	page.HEAD("", h)
	page.GET("/*file", h)
	page.HEAD("/*file", h)
}

// adminPageHeaders sets the security headers on every answer of the page's routes, 404s
// included; handleNoRoute sets them on every other answer under /admin (other methods, other
// spellings).
func adminPageHeaders(c *gin.Context) {
	setAdminPageHeaders(c.Writer.Header())
	c.Next()
}

// underAdminPage reports whether the routed path p is the page's or starts like it ("/admin",
// "/admin/x", "/admin;x/", "/administrator"): every answer there carries the page's headers.
func underAdminPage(p string) bool {
	return len(p) >= len(adminPagePath) && strings.EqualFold(p[:len(adminPagePath)], adminPagePath)
}

// setAdminPageHeaders sets the admin page's security headers on h.
func setAdminPageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", adminPageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	// The assets change with the binary: revalidate rather than keep a stale page.
	h.Set("Cache-Control", "no-cache")
}

func handleAdminPage(assets map[string]adminAsset) gin.HandlerFunc {
	return func(c *gin.Context) {
		name := strings.TrimPrefix(c.Param("file"), "/")
		if name == "" {
			name = "index.html"
		}
		a, ok := assets[name]
		if !ok {
			c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": "not found"})
			return
		}
		c.Data(http.StatusOK, a.contentType, a.body)
	}
}
