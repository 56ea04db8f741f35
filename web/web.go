// Package web holds the admin page's assets (index.html, app.js, style.css, the trash icon),
// embedded in the binary so that `keyauthz serve` can serve /admin/ with no build step and no
// files beside it. internal/server/adminpage.go serves them; docs/admin-page.md describes the
// page.
package web

import "embed"

// Admin is the admin page's folder: admin/index.html and its assets.
//
//go:embed admin
var Admin embed.FS
