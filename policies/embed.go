// Package policies holds keyauthz's built-in Rego policy and route table, embedded into the
// binary. The files are the single source of truth: `opa test policies/ policy_test/`, the
// embedded engine and `keyauthz bundle build` all read them.
package policies

import "embed"

// FS holds the policy tree rooted at "keyauthz/": the Rego modules (packages keyauthz and
// keyauthz.*) and the route table at keyauthz/routes/data.json (data.keyauthz.routes.table).
// Test files (*_test.rego) live in policy_test/, so nothing here needs filtering, but loaders
// still skip *_test.rego defensively.
//
//go:embed keyauthz
var FS embed.FS
