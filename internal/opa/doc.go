// Package opa is keyauthz's decision engine: it loads the Rego policy (built in, a directory or
// a bundle), compiles it and materialises the route index once, prepares the decision query
// data.keyauthz.decision once, evaluates typed Input against it, turns every failure into a
// deny, and hot-swaps to a new policy atomically on reload. A Reloader watches a bundle or a
// policy folder and swaps in each good version, keeping the last good one on a bad one.
// docs/architecture.md describes how it fits in, docs/policy-contract.md what the policy sees
// and answers.
//
// Where things are:
//
//   - engine.go: Engine (New, Swap, Policy, Revision) and Decide, the one decision entry point.
//   - compile.go: a policy compiled and its decision query prepared, once per load.
//   - eval.go: one evaluation of the decision query, and its time-out (deadline).
//   - evalcache.go: the evaluator's per-evaluation caches, reused from a pool
//     (docs/performance.md#the-engine).
//   - input.go: Input, the typed policy input, and its conversion to a Rego value.
//   - decision.go: Decision, and the strict reading of the policy's answer (fail closed).
//   - routes.go: the route index built from the route table (WithRouteIndex), ScopeNames.
//   - load.go: reading a policy (Builtin, LoadDir, LoadBundle, signatures, revisions).
//   - source.go: Source, where a policy comes from, and how a change to it is noticed.
//   - reloader.go: Reloader, which keeps an Engine in step with a Source.
//   - normalize.go, ambiguous.go: request paths as the policy expects them (NormalizePath,
//     SplitURI), and the paths refused before it runs (Ambiguous).
package opa
