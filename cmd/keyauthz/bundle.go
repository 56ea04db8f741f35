package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/keyauthz/keyauthz/bundle"
)

const bundleBuildHelp = `Builds the policy (the built-in one, or --policy-dir) as an OPA bundle: Rego modules without
*_test.rego, the route table, the route index materialised at data.keyauthz.routes.index, and
the manifest of bundle/.manifest with the revision (--revision, else the policy's content
hash). With --signing-key the bundle carries a .signatures.json as 'opa build --signing-key'
makes it. The output file is replaced atomically, so a running 'keyauthz serve --bundle' never
sees half a bundle.`

// bundleBuildOptions are the flags of `keyauthz bundle build`.
type bundleBuildOptions struct {
	out, revision, signingKey, signingAlg, policyDir string
}

// bundleBuildFlags declares the flags of `keyauthz bundle build` and returns its run func.
func bundleBuildFlags(fs *flag.FlagSet) runFunc {
	var o bundleBuildOptions
	fs.StringVar(&o.out, "o", "keyauthz.tar.gz", "output `file` (\"-\" for stdout)")
	fs.StringVar(&o.revision, "revision", "", "manifest revision (default: the policy's content hash)")
	fs.StringVar(&o.signingKey, "signing-key", "", "sign the bundle with this PEM private key (or HMAC secret `file`)")
	fs.StringVar(&o.signingAlg, "signing-alg", bundle.DefaultSigningAlg, "signing `algorithm` (RS256, ES256, HS256, ...)")
	fs.StringVar(&o.policyDir, "policy-dir", "", "build this policy `folder` instead of the built-in policy")
	return func(ctx context.Context, c *cli, _ []string) error {
		return runBundleBuild(ctx, o, c.stdout)
	}
}

// runBundleBuild is `keyauthz bundle build` (bundleBuildHelp).
func runBundleBuild(ctx context.Context, o bundleBuildOptions, stdout io.Writer) error {
	if o.out == "" {
		return usageErrorf("bundle build", "-o must not be empty")
	}
	var signing *bundle.Signing
	if o.signingKey != "" {
		if _, err := os.Stat(o.signingKey); err != nil {
			return fmt.Errorf("bundle build: --signing-key: %w", err)
		}
		signing = &bundle.Signing{Key: o.signingKey, Algorithm: o.signingAlg}
	}

	b, err := bundle.Build(ctx, bundle.Options{PolicyDir: o.policyDir, Revision: o.revision})
	if err != nil {
		return err
	}
	if o.out == "-" {
		return bundle.Write(stdout, b, signing)
	}
	if err := writeFileAtomic(o.out, func(w io.Writer) error { return bundle.Write(w, b, signing) }); err != nil {
		return err
	}
	signed := "unsigned"
	if signing != nil {
		signed = "signed (" + o.signingAlg + ")"
	}
	fmt.Fprintf(stdout, "wrote %s: revision %s, %d modules, %s\n", o.out, b.Manifest.Revision, len(b.Modules), signed)
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
