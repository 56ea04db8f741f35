package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// commands is keyauthz's command table: every command, its summary, its flags and its run
// func, in the order `keyauthz help` lists them.
func commands() *command {
	root := &command{
		name:    "keyauthz",
		summary: "API-key authorization for HTTP APIs",
		help: `keyauthz with no command, or with a flag first, runs serve: 'keyauthz --addr :8080' is
'keyauthz serve --addr :8080'.`,
		subs: []*command{
			{
				name:    "serve",
				summary: "run the service: the admin API, the decision endpoints and forward auth (the default)",
				flags:   serveFlags,
				// Bad environment values are reported with the configuration's other problems.
				envWithRun: true,
			},
			keysCommand(),
			resourceCommand(domainsResource),
			resourceCommand(usersResource),
			importCommand, // importcmd.go
			auditCommand,  // auditcmd.go
			{
				name:    "decide",
				summary: "decide one request from the command line, with the built-in policy or another",
				help:    decideHelp,
				flags:   decideFlags,
			},
			{
				name:    "bundle",
				summary: "build the policy as an OPA bundle",
				subs: []*command{{
					name:    "build",
					summary: "build the policy as an OPA bundle, optionally signed",
					help:    bundleBuildHelp,
					flags:   bundleBuildFlags,
				}},
			},
			{
				name:    "version",
				summary: "print the version",
				flags: func(*flag.FlagSet) runFunc {
					return func(_ context.Context, c *cli, _ []string) error {
						_, err := fmt.Fprintln(c.stdout, "keyauthz", version())
						return err
					}
				},
			},
		},
	}
	root.subs = append(root.subs, &command{
		name:    "help",
		summary: "show the commands, or one command's usage (keyauthz help keys create)",
		args:    "[COMMAND...]",
		nargs:   -1,
		flags: func(*flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				cmd, path := root, []string{root.name}
				for _, a := range args {
					if cmd = cmd.sub(a); cmd == nil {
						return usageErrorf("help", "unknown command %q", strings.Join(append(path[1:], a), " "))
					}
					path = append(path, a)
				}
				cmd.printHelp(c.stdout, path)
				return nil
			}
		},
	})
	return root
}

// run is the whole program: main only supplies the process's context, arguments, environment
// and output, so tests can run keyauthz in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (strings.HasPrefix(args[0], "-") && !isHelpArg(args[0])) {
		args = append([]string{"serve"}, args...)
	}
	return commands().dispatch(ctx, nil, args, getenv, stdout, stderr)
}

// version is the module version the binary was built from, or "devel".
func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}
