package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/keyauthz/keyauthz/internal/opa"
)

const decideHelp = `Reads one policy input (docs/policy-contract.md#input: request, domain, key, user) as JSON
from --input or stdin and prints the decision as JSON. It is the command-line twin of
'opa eval data.keyauthz.decision', through keyauthz's own engine.`

// decideFlags declares the flags of `keyauthz decide` and returns its run func.
func decideFlags(fs *flag.FlagSet) runFunc {
	input := fs.String("input", "-", "policy input JSON `file` (\"-\" for stdin)")
	policyDir := fs.String("policy-dir", "", "policy `folder` instead of the built-in policy")
	bundlePath := fs.String("bundle", "", "policy `bundle` instead of the built-in policy")
	return func(ctx context.Context, c *cli, _ []string) error {
		return runDecide(ctx, *input, *policyDir, *bundlePath, c.stdout)
	}
}

// runDecide evaluates the policy input in the file input ("-": stdin) with the built-in policy,
// or the one in policyDir or bundlePath, and prints the decision as JSON (decideHelp).
func runDecide(ctx context.Context, input, policyDir, bundlePath string, stdout io.Writer) error {
	cfg := Config{PolicyDir: policyDir, Bundle: bundlePath}
	src, err := policySource(cfg)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	b, err := src.Load()
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	// No logger: a failed evaluation is returned as this command's error, not logged as well.
	engine, err := opa.New(ctx, b, opa.Options{})
	if err != nil {
		return fmt.Errorf("policy %s: %w", src, err)
	}
	var r io.Reader = os.Stdin
	if input != "-" {
		f, err := os.Open(input)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	var in opa.Input
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("input: %w", err)
	}
	in.Request.Path = opa.NormalizePath(in.Request.Path)
	res := engine.Decide(ctx, &in)
	if res.Err != nil {
		return fmt.Errorf("decision: %w", res.Err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res.Decision)
}
