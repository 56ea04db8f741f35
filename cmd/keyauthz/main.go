// Command keyauthz issues, stores and checks API keys: it serves the admin API and the
// decision endpoints (serve), manages keys, domains and users over that API (keys, domains,
// users), builds policy bundles (bundle build), and answers single decisions from the command
// line (decide). The commands are listed in run.go; see README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "keyauthz:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2) // a bad command line, as the flag package exits for one
		}
		os.Exit(1)
	}
}
