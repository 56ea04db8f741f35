package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
)

// errUsage is returned after usage has been printed for a bad command line.
var errUsage = errors.New("bad command line (see keyauthz help)")

const usage = `keyauthz: API-key authorization for HTTP APIs

Usage:
  keyauthz [serve] [flags]     run the service (the default; keyauthz serve -h for flags)
  keyauthz keys ...            create, list, show and delete keys over the admin API
  keyauthz decide ...          decide one request from the command line (keyauthz decide -h)
  keyauthz bundle build ...    build the policy as an OPA bundle, optionally signed (keyauthz bundle build -h)
  keyauthz version             print the version
`

// run is the whole program: main only supplies the process's context, arguments, environment
// and output, so tests can run keyauthz in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && (len(args[0]) == 0 || args[0][0] != '-') {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(ctx, args, getenv, stdout, stderr)
	case "keys":
		return runKeys(ctx, args, getenv, stdout, stderr)
	case "decide":
		return runDecide(ctx, args, getenv, stdout, stderr)
	case "bundle":
		return runBundle(ctx, args, getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "keyauthz", version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q: %w", cmd, errUsage)
	}
}

// version is the module version the binary was built from, or "devel".
func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}
