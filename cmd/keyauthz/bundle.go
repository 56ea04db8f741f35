package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/keyauthz/keyauthz/bundle"
)

const bundleUsage = `Usage:
  keyauthz bundle build [-o keyauthz.tar.gz] [--revision R] [--signing-key key.pem [--signing-alg RS256]] [--policy-dir DIR]

Builds the policy (the built-in one, or --policy-dir) as an OPA bundle: Rego modules without
*_test.rego, the route table, the route index materialised at data.keyauthz.routes.index, and
the manifest of bundle/.manifest with the revision (--revision, else the policy's content
hash). With --signing-key the bundle carries a .signatures.json as 'opa build --signing-key'
makes it. The output file is replaced atomically, so a running 'keyauthz serve --bundle' never
sees half a bundle.

Flags:
`

// runBundle is `keyauthz bundle SUBCOMMAND`; build is the only subcommand.
func runBundle(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "build" {
		fmt.Fprint(stderr, bundleUsage)
		if len(args) == 0 {
			return fmt.Errorf("bundle: missing subcommand: %w", errUsage)
		}
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			return nil
		}
		return fmt.Errorf("bundle: unknown subcommand %q: %w", args[0], errUsage)
	}
	fs := flag.NewFlagSet("keyauthz bundle build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), bundleUsage)
		fs.PrintDefaults()
	}
	out := fs.String("o", "keyauthz.tar.gz", "output file (\"-\" for stdout)")
	revision := fs.String("revision", "", "manifest revision (default: the policy's content hash)")
	signingKey := fs.String("signing-key", "", "sign the bundle with this PEM private key (or HMAC secret file)")
	signingAlg := fs.String("signing-alg", bundle.DefaultSigningAlg, "signing algorithm (RS256, ES256, HS256, ...)")
	policyDir := fs.String("policy-dir", "", "build this policy folder instead of the built-in policy")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bundle build: unexpected arguments %q: %w", fs.Args(), errUsage)
	}
	if *out == "" {
		return fmt.Errorf("bundle build: -o must not be empty: %w", errUsage)
	}
	var signing *bundle.Signing
	if *signingKey != "" {
		if _, err := os.Stat(*signingKey); err != nil {
			return fmt.Errorf("bundle build: --signing-key: %w", err)
		}
		signing = &bundle.Signing{Key: *signingKey, Algorithm: *signingAlg}
	}

	b, err := bundle.Build(ctx, bundle.Options{PolicyDir: *policyDir, Revision: *revision})
	if err != nil {
		return err
	}
	if *out == "-" {
		return bundle.Write(stdout, b, signing)
	}
	if err := writeFileAtomic(*out, func(w io.Writer) error { return bundle.Write(w, b, signing) }); err != nil {
		return err
	}
	signed := "unsigned"
	if signing != nil {
		signed = "signed (" + *signingAlg + ")"
	}
	fmt.Fprintf(stdout, "wrote %s: revision %s, %d modules, %s\n", *out, b.Manifest.Revision, len(b.Modules), signed)
	return nil
}

// writeFileAtomic writes path through a temporary file in its folder and renames it into
// place, so that readers see the old file or the new one, never a part.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("bundle build: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if err := write(f); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		_ = f.Close()
		return fmt.Errorf("bundle build: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bundle build: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("bundle build: %w", err)
	}
	return nil
}
