// Command keyauthz issues, stores and checks API keys: it serves the admin API and the
// decision endpoints (serve), builds policy bundles (bundle build), and answers single
// decisions from the command line (decide). See README.md.
package main

import (
	"context"
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
		os.Exit(1)
	}
}
