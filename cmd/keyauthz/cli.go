package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// command is one entry of keyauthz's command table (commands in run.go). Every command has the
// same shape: a name, a one-line summary and either subcommands (a group such as keys) or a
// flag set and a run func (a leaf). The dispatcher parses a leaf's flags, fills the ones not
// given from the environment (setFromEnv), answers -h with the command's usage, and only then
// runs it, so -h never reads a key or contacts a server.
type command struct {
	name    string
	summary string // one line, shown in the parent's command list
	help    string // optional paragraphs shown by -h after the summary
	args    string // positional arguments in the synopsis, e.g. "ID"
	nargs   int    // exact number of positional arguments; -1 for any
	// flags declares the leaf's flags on fs and returns the function that runs the command
	// once fs is parsed and filled from the environment.
	flags func(fs *flag.FlagSet) runFunc
	// shared declares the flags that every subcommand of a group has (keys: --url,
	// --key-file, --output); they may also come before the subcommand's name.
	shared func(fs *flag.FlagSet)
	subs   []*command
	// envWithRun hands a bad environment value to the run func (cli.envErr) instead of
	// refusing it at once, for a command that reports it together with its own validation, so
	// that every problem of a configuration is reported at once (serve).
	envWithRun bool
}

// runFunc runs a parsed leaf command with its positional arguments.
type runFunc func(ctx context.Context, c *cli, args []string) error

// cli is what a running command gets besides its flags: the process's environment and output,
// and which flags were given on the command line (as opposed to the environment).
type cli struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	name           string          // "keys create"
	cmdline        map[string]bool // flags given on the command line
	fs             *flag.FlagSet
	// envErr holds the bad environment values of a command with envWithRun.
	envErr error
}

// given reports whether the flag name was set, on the command line or from the environment.
func (c *cli) given(name string) bool {
	found := false
	c.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// errUsage marks a bad command line; main exits 2 for it.
var errUsage = errors.New("bad command line")

// usageError is a bad command line of one command: what is wrong, and where to look.
type usageError struct {
	cmd string // "keys create"
	err error
}

func (e *usageError) Error() string {
	if e.cmd == "" {
		return fmt.Sprintf("%v (see 'keyauthz help')", e.err)
	}
	return fmt.Sprintf("%s: %v (see 'keyauthz %s -h')", e.cmd, e.err, e.cmd)
}

func (e *usageError) Unwrap() []error { return []error{e.err, errUsage} }

func usageErrorf(cmd, format string, a ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, a...)}
}

// envName is the environment variable a flag falls back to: KEYAUTHZ_ and the flag's name in
// upper snake case (--key-file: KEYAUTHZ_KEY_FILE).
func envName(flagName string) string {
	return "KEYAUTHZ_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// setFromEnv gives every flag of fs that the command line did not set the value of its
// environment variable (envName), when that is not empty: a flag on the command line wins. It
// reports every bad value at once. Flags set here count as set for fs.Visit, so a command
// such as update sends a field given only in the environment.
func setFromEnv(fs *flag.FlagSet, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// parseInterspersed parses args with fs, allowing flags after positional arguments ("keys show
// ID --output json"); "--" ends the flags. It returns the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

func isHelpArg(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// dispatch runs cmd, reached by path ("keyauthz keys"), with args.
func (cmd *command) dispatch(ctx context.Context, path []string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	path = append(slices.Clip(path), cmd.name)
	name := strings.Join(path[1:], " ")
	switch {
	case cmd.subs != nil:
		if len(args) == 0 {
			cmd.printHelp(stderr, path)
			return &usageError{cmd: name, err: fmt.Errorf("missing command (want %s)", cmd.subNames())}
		}
		if isHelpArg(args[0]) || (args[0] == "help" && cmd.sub("help") == nil) {
			cmd.printHelp(stdout, path)
			return nil
		}
		var lead []string
		if cmd.shared != nil && strings.HasPrefix(args[0], "-") {
			var err error
			if lead, args, err = cmd.leadingFlags(name, args); err != nil {
				return err
			}
			if len(args) == 0 {
				return &usageError{cmd: name, err: fmt.Errorf("missing command (want %s)", cmd.subNames())}
			}
		}
		sub := cmd.sub(args[0])
		if sub == nil {
			return usageErrorf(name, "unknown command %q (want %s)", args[0], cmd.subNames())
		}
		return sub.dispatch(ctx, path, append(lead, args[1:]...), getenv, stdout, stderr)
	}

	fs := flag.NewFlagSet(strings.Join(path, " "), flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, help printed by printHelp
	fs.Usage = func() {}
	var runCmd runFunc
	if cmd.flags != nil {
		runCmd = cmd.flags(fs)
	}
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		cmd.printHelp(stdout, path)
		return nil
	}
	if err != nil {
		return &usageError{cmd: name, err: err}
	}
	c := &cli{getenv: getenv, stdout: stdout, stderr: stderr, name: name, cmdline: map[string]bool{}, fs: fs}
	fs.Visit(func(f *flag.Flag) { c.cmdline[f.Name] = true })
	if err := setFromEnv(fs, getenv); err != nil {
		if !cmd.envWithRun {
			return &usageError{cmd: name, err: err}
		}
		c.envErr = err
	}
	if cmd.nargs >= 0 && len(pos) != cmd.nargs {
		if len(pos) > cmd.nargs {
			return usageErrorf(name, "unexpected arguments %q", pos[cmd.nargs:])
		}
		return usageErrorf(name, "missing %s", cmd.args)
	}
	if runCmd == nil {
		return nil
	}
	return runCmd(ctx, c, pos)
}

// leadingFlags parses the group's shared flags given before the subcommand's name ("keys --url
// U list") and returns them as arguments for the subcommand, followed by the rest.
func (cmd *command) leadingFlags(name string, args []string) (lead, rest []string, err error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	cmd.shared(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			err = errors.New("-h goes after the command's name")
		}
		return nil, nil, &usageError{cmd: name, err: err}
	}
	fs.Visit(func(f *flag.Flag) { lead = append(lead, "--"+f.Name+"="+f.Value.String()) })
	return lead, fs.Args(), nil
}

func (cmd *command) sub(name string) *command {
	for _, s := range cmd.subs {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (cmd *command) subNames() string {
	names := make([]string, len(cmd.subs))
	for i, s := range cmd.subs {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// printHelp writes cmd's usage: synopsis, summary, help text, then its commands or its flags,
// each flag with the environment variable it falls back to.
func (cmd *command) printHelp(w io.Writer, path []string) {
	full := strings.Join(path, " ")
	if cmd.subs != nil {
		fmt.Fprintf(w, "Usage: %s COMMAND [flags]\n\n%s\n", full, capitalize(cmd.summary))
		if cmd.help != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.help))
		}
		fmt.Fprint(w, "\nCommands:\n")
		tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		for _, s := range cmd.subs {
			fmt.Fprintf(tw, "  %s\t%s\n", s.name, s.summary)
		}
		_ = tw.Flush()
		fmt.Fprintf(w, "\nRun '%s COMMAND -h' for a command's flags.\n", full)
		if len(path) == 1 {
			fmt.Fprint(w, envNote)
		}
		if cmd.shared != nil {
			fs := flag.NewFlagSet(full, flag.ContinueOnError)
			cmd.shared(fs)
			fmt.Fprint(w, "\nFlags of every command (also accepted before COMMAND):\n")
			printFlags(w, fs)
			fmt.Fprint(w, envNote)
		}
		return
	}
	fs := flag.NewFlagSet(full, flag.ContinueOnError)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	synopsis := full
	if hasFlags(fs) {
		synopsis += " [flags]"
	}
	if cmd.args != "" {
		synopsis += " " + cmd.args
	}
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", synopsis, capitalize(cmd.summary))
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.help))
	}
	if hasFlags(fs) {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, fs)
		fmt.Fprint(w, envNote)
	}
}

const envNote = `
Every flag falls back to an environment variable: KEYAUTHZ_ and the flag's name in upper snake
case (--key-file: KEYAUTHZ_KEY_FILE), shown beside each flag. A flag on the command line wins.
`

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// printFlags lists fs's flags as flag.PrintDefaults does, with "--" for long names and the
// environment variable each falls back to.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		typ, usage := flag.UnquoteUsage(f)
		line := "  " + dash + f.Name
		if typ != "" {
			line += " " + typ
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		switch f.DefValue {
		case "", "0", "false", "0s", "[]":
		default:
			if typ == "string" {
				fmt.Fprintf(w, " (default %q)", f.DefValue)
			} else {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
		}
		fmt.Fprintf(w, " [$%s]\n", envName(f.Name))
	})
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

// choiceValue is a string flag that takes one of a fixed set of values.
type choiceValue struct {
	value   *string
	choices []string
}

func newChoice(p *string, def string, choices ...string) *choiceValue {
	*p = def
	return &choiceValue{value: p, choices: choices}
}

func (c *choiceValue) String() string {
	if c == nil || c.value == nil {
		return ""
	}
	return *c.value
}

func (c *choiceValue) Set(s string) error {
	if !slices.Contains(c.choices, s) {
		return fmt.Errorf("want %s", strings.Join(c.choices, " or "))
	}
	*c.value = s
	return nil
}
