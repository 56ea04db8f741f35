package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/keyauthz/keyauthz/internal/opa"
)

// runDecide evaluates one policy input (design §4: request, domain, key, user) read from a file
// or stdin, with the built-in policy or the one given, and prints the decision as JSON. It is
// the command-line twin of `opa eval data.keyauthz.decision`, through keyauthz's own engine.
func runDecide(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keyauthz decide", flag.ContinueOnError)
	fs.SetOutput(stderr)
	input := fs.String("input", "-", "policy input JSON file (\"-\" for stdin)")
	policyDir := fs.String("policy-dir", "", "policy folder instead of the built-in policy")
	bundlePath := fs.String("bundle", "", "policy bundle instead of the built-in policy")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg := Config{PolicyDir: *policyDir, Bundle: *bundlePath}
	src, err := policySource(cfg)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	b, err := src.Load()
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	engine, err := opa.New(ctx, b, opa.Options{Logger: logger})
	if err != nil {
		return fmt.Errorf("policy %s: %w", src, err)
	}
	var r io.Reader = os.Stdin
	if *input != "-" {
		f, err := os.Open(*input)
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
	d, err := engine.DecideWithError(ctx, &in)
	if err != nil {
		return fmt.Errorf("decision: %w", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}
