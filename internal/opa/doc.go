// Package opa is keyauthz's decision engine: it loads the Rego policy (built in, a directory or
// a bundle), compiles it and materialises the route index once, prepares the decision query
// data.keyauthz.decision once, evaluates typed Input against it, turns every failure into a
// deny, and hot-swaps to a new policy atomically on reload. A Reloader watches a bundle or a
// policy folder and swaps in each good version, keeping the last good one on a bad one.
//
// It also normalises request paths (NormalizePath, SplitURI) into the shape the policy expects.
package opa
