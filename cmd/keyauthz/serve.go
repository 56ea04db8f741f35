package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	opakeys "github.com/open-policy-agent/opa/v1/keys"

	"github.com/keyauthz/keyauthz/internal/authz"
	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/cache"
	"github.com/keyauthz/keyauthz/internal/diskspace"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
	"github.com/keyauthz/keyauthz/internal/server"
)

// Config is the configuration of keyauthz serve. Every flag has an environment variable
// KEYAUTHZ_<NAME> (upper case, "-" as "_"); a flag given on the command line wins.
type Config struct {
	Addr            string
	DataDir         string
	PolicyDir       string
	Bundle          string
	VerificationKey string
	VerificationAlg string
	BootstrapDomain string
	LogLevel        string
	DecisionLog     string
	ShutdownTimeout time.Duration
	EvalTimeout     time.Duration
	// KeyCacheBytes and DecisionCacheBytes bound the key and decision caches in bytes (an
	// estimate of what their entries take); 0 turns a cache off.
	KeyCacheBytes      int64
	DecisionCacheBytes int64
	Check              bool
	// Store is empty for Badger in DataDir (the default), or etcd://host:port[,host:port...]
	// for cluster mode (clusterstore.go), reached with the options of Etcd.
	Store string
	Etcd  EtcdConfig
	// StaleGrace is how long after its view of etcd was last confirmed a node in cluster mode
	// still serves cached answers (docs/cluster.md#--stale-grace); 0 serves none.
	StaleGrace time.Duration
	// AuditRetentionCount and AuditRetentionAge bound the audit log (auditcmd.go,
	// docs/audit.md#retention); 0 keeps every record.
	AuditRetentionCount int
	AuditRetentionAge   time.Duration
	// DebugAddr, when set, is a loopback address serving Go's runtime profiles (debug.go,
	// docs/operations.md#profiling); empty (the default) serves none.
	DebugAddr string
}

// DefaultConfig is the embedded default: loopback, ./data, the built-in policy.
func DefaultConfig() Config {
	return Config{
		Addr:               "127.0.0.1:8080",
		DataDir:            "./data",
		BootstrapDomain:    "localhost",
		LogLevel:           "info",
		VerificationAlg:    "RS256",
		ShutdownTimeout:    10 * time.Second,
		EvalTimeout:        opa.DefaultTimeout,
		KeyCacheBytes:      cache.DefaultOptions().KeyBytes,
		DecisionCacheBytes: cache.DefaultDecisionBytes,
	}
}

// serveFlags declares serve's flags on fs, over DefaultConfig, and returns the command that
// validates the configuration (every problem at once, bad environment values included) and
// runs the service. The command table
// fills each flag not given on the command line from KEYAUTHZ_<FLAG> (setFromEnv).
func serveFlags(fs *flag.FlagSet) runFunc {
	cfg := declareServeFlags(fs)
	return func(ctx context.Context, c *cli, _ []string) error {
		if err := errors.Join(append([]error{c.envErr}, cfg.Validate()...)...); err != nil {
			return &usageError{cmd: "serve", err: err}
		}
		return serve(ctx, *cfg, c.stdout, c.stderr)
	}
}

// declareServeFlags declares serve's flags on fs and returns the configuration they fill.
func declareServeFlags(fs *flag.FlagSet) *Config {
	cfg := DefaultConfig()
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address (host:port)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "Badger data folder (created if missing)")
	fs.StringVar(&cfg.PolicyDir, "policy-dir", "", "load the policy from this folder of .rego and data files instead of the built-in one")
	fs.StringVar(&cfg.Bundle, "bundle", "", "load the policy from this OPA bundle (.tar.gz or folder), reloaded when it changes")
	fs.StringVar(&cfg.VerificationKey, "verification-key", "", "PEM public key (or HMAC secret file) that bundles must be signed with")
	fs.StringVar(&cfg.VerificationAlg, "verification-alg", cfg.VerificationAlg, "signature algorithm of --verification-key (RS256, ES256, HS256, ...)")
	fs.StringVar(&cfg.BootstrapDomain, "bootstrap-domain", cfg.BootstrapDomain, "host of the domain created on first start")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.DecisionLog, "decision-log", "", "write one JSON line per decision to this file (\"-\" for stdout)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long in-flight requests may take to finish on shutdown")
	fs.DurationVar(&cfg.EvalTimeout, "eval-timeout", cfg.EvalTimeout, "longest one policy evaluation may take; a slower one is a deny (500)")
	fs.Var((*byteSize)(&cfg.KeyCacheBytes), "key-cache-bytes", "memory for verified keys, in bytes (or KiB, MiB, GiB; half as much again for unknown key ids); 0 turns the key cache off")
	fs.Var((*byteSize)(&cfg.DecisionCacheBytes), "decision-cache-bytes", "memory for cached decisions, in bytes (or KiB, MiB, GiB); 0 turns the decision cache off")
	// The entry counts of earlier versions: a count is no bound on memory (a flood of long
	// distinct paths filled 400 MB), so only 0, "off", is still taken.
	fs.Func("key-cache-size", "replaced by --key-cache-bytes; only 0 (off) is accepted", replacedSize("key-cache", &cfg.KeyCacheBytes))
	fs.Func("decision-cache-size", "replaced by --decision-cache-bytes; only 0 (off) is accepted", replacedSize("decision-cache", &cfg.DecisionCacheBytes))
	fs.StringVar(&cfg.Store, "store", "", "etcd://host:port[,host:port...] keeps domains, users and keys in etcd (cluster mode); default: Badger in --data-dir")
	fs.DurationVar(&cfg.StaleGrace, "stale-grace", 0, "cluster mode: how long after the node last confirmed its view of etcd (watch delivering, quorum answering) it still serves cached keys and decisions; 0 serves none then (fail closed)")
	fs.StringVar(&cfg.Etcd.CACert, "etcd-cacert", "", "CA certificate (PEM) that etcd's server certificates must chain to (cluster mode)")
	fs.StringVar(&cfg.Etcd.Cert, "etcd-cert", "", "client certificate (PEM) presented to etcd (cluster mode; with --etcd-key)")
	fs.StringVar(&cfg.Etcd.Key, "etcd-key", "", "private key (PEM) of --etcd-cert")
	fs.StringVar(&cfg.Etcd.User, "etcd-user", "", "etcd user name (cluster mode; with --etcd-password-file)")
	fs.StringVar(&cfg.Etcd.PasswordFile, "etcd-password-file", "", "file holding the password of --etcd-user (never give a password on the command line)")
	declareAuditFlags(fs, &cfg) // auditcmd.go
	fs.StringVar(&cfg.DebugAddr, "debug-addr", "", "serve Go's runtime profiles (/debug/pprof/) on this loopback host:port, a listener of its own; default: off")
	fs.BoolVar(&cfg.Check, "check", false, "validate the configuration and the policy, then exit")
	return &cfg
}

// Validate reports every problem of cfg at once.
func (cfg Config) Validate() []error {
	var errs []error
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		errs = append(errs, fmt.Errorf("--addr %q: %w", cfg.Addr, err))
	}
	if cfg.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if cfg.PolicyDir != "" && cfg.Bundle != "" {
		errs = append(errs, errors.New("--policy-dir and --bundle are exclusive: give one"))
	}
	if cfg.VerificationKey != "" && cfg.Bundle == "" {
		errs = append(errs, errors.New("--verification-key needs --bundle"))
	}
	if !opakeys.IsSupportedAlgorithm(cfg.VerificationAlg) {
		errs = append(errs, fmt.Errorf("--verification-alg %q is not a supported signature algorithm", cfg.VerificationAlg))
	}
	if _, ok := keys.NormalizeHost(cfg.BootstrapDomain); !ok {
		errs = append(errs, fmt.Errorf("--bootstrap-domain %q is not a host name", cfg.BootstrapDomain))
	}
	if _, err := parseLevel(cfg.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if cfg.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("--shutdown-timeout must be positive"))
	}
	if cfg.KeyCacheBytes < 0 || cfg.DecisionCacheBytes < 0 {
		errs = append(errs, errors.New("--key-cache-bytes and --decision-cache-bytes must not be negative"))
	}
	if cfg.EvalTimeout <= 0 {
		errs = append(errs, errors.New("--eval-timeout must be positive"))
	}
	errs = append(errs, cfg.validateStore()...)
	errs = append(errs, cfg.validateAudit()...)
	if err := validateDebugAddr(cfg.DebugAddr); err != nil {
		errs = append(errs, err)
	}
	return errs
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// serve runs the service with a validated cfg until ctx ends: it loads the policy, opens the
// store (bootstrapping an empty one), serves, and shuts down in order.
func serve(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	level, _ := parseLevel(cfg.LogLevel)
	// Every record goes through redaction: no log line may hold a key
	// (docs/security.md#files-memory-and-logs).
	logger := slog.New(server.NewRedactingHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})))

	policy, err := newPolicyLoader(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer policy.Close()
	if cfg.Check {
		fmt.Fprintf(stdout, "configuration and policy (revision %s) are valid\n", policy.engine.Revision())
		return nil
	}

	if err := prepareDataDir(cfg.DataDir); err != nil {
		return err
	}
	var (
		store      keys.Service
		usageStore keys.UsageStore
		health     func() error
	)
	if eps, _ := storeEndpoints(cfg.Store); eps != nil {
		cs, err := openClusterStore(ctx, cfg, logger)
		if err != nil {
			return err
		}
		defer func() {
			if err := cs.Close(); err != nil {
				logger.Error("closing the etcd store", "err", err)
			}
		}()
		if err := bootstrap(ctx, cs, cfg, logger); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		store, usageStore, health = cs, cs, cs.health(policy.Health, cfg.StaleGrace)
		logger.Info("cluster mode: domains, users and keys are in etcd; the caches follow its watch",
			"etcd", strings.Join(eps, ","), "stale_grace", cfg.StaleGrace.String())
	} else {
		bs, err := badgerstore.Open(cfg.DataDir, badgerstore.WithLogger(logger))
		if err != nil {
			return err
		}
		defer func() {
			if err := bs.Close(); err != nil {
				logger.Error("closing the store", "err", err)
			}
		}()
		if err := bootstrap(ctx, bs, cfg, logger); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		stopWatch := watchSpace(ctx, bs.SpaceGuard(), logger)
		defer stopWatch() // before the store closes: the watch reads the store's table sizes
		store, usageStore, health = bs, bs, serviceHealth(policy.Health, bs.CheckSpace)
	}

	// The audit log's retention (auditcmd.go); stopped before the store closes.
	stopPrune := pruneAudit(ctx, store, cfg, logger)
	defer stopPrune()

	var decisionLog *server.DecisionLogger
	if cfg.DecisionLog != "" {
		w, closeLog, err := openDecisionLog(cfg.DecisionLog, stdout)
		if err != nil {
			return err
		}
		defer closeLog()
		decisionLog = server.NewDecisionLogger(w)
	}

	// last_used_at: uses are collected in memory and written every usageFlushInterval, and once
	// more at shutdown, before the store closes.
	usage := keys.NewUsageRecorder(usageStore, logger)
	usageCtx, stopUsage := context.WithCancel(context.WithoutCancel(ctx))
	usageDone := make(chan struct{})
	go func() {
		defer close(usageDone)
		// Nodes started together would flush together: each starts its ticker after a random
		// part of the interval (docs/cluster.md#last_used_at). A stop meanwhile flushes once.
		select {
		case <-usageCtx.Done():
		case <-time.After(rand.N(usageFlushInterval)):
		}
		usage.Run(usageCtx, usageFlushInterval)
	}()
	defer func() {
		stopUsage()
		<-usageDone
	}()
	handler := server.New(server.Deps{
		Logger:      logger,
		Store:       store,
		Engine:      policy.engine,
		Authorizer:  newAuthorizer(cfg, store, policy.engine, usage, logger),
		Health:      health,
		Scopes:      policy.Scopes,
		Version:     version(),
		DecisionLog: decisionLog,
	})

	// Bind first, so that a busy port is an error here and not a log line later.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	stopDebug, err := startDebug(cfg.DebugAddr, logger) // debug.go
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer stopDebug()
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(stdout, "keyauthz listening on http://%s\n", ln.Addr())
	logger.Info("listening", "addr", ln.Addr().String(), "data_dir", cfg.DataDir, "policy_revision", policy.engine.Revision())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down: finishing in-flight requests")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// usageFlushInterval is how often key uses are written to the store (last_used_at).
const usageFlushInterval = 10 * time.Second

// spaceWatchInterval is how often the data folder's free space is measured in the background,
// to log when writes stop and resume. Writes and /health measure it themselves each time.
const spaceWatchInterval = 5 * time.Second

// watchSpace logs, until ctx ends or stop is called, each moment the data folder's free space
// falls below what the store needs (admin writes are refused with 507 from then on) and each
// moment it is back. stop returns once the watch has ended. A nil guard (a store in memory)
// watches nothing.
func watchSpace(ctx context.Context, guard *diskspace.Guard, logger *slog.Logger) (stop func()) {
	if guard == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		guard.Watch(ctx, spaceWatchInterval, logSpace(guard.Path(), logger))
	}()
	return func() {
		cancel()
		<-done
	}
}

// logSpace logs a change of the data folder's free-space state.
func logSpace(dataDir string, logger *slog.Logger) func(error) {
	return func(err error) {
		var low *diskspace.LowError
		switch {
		case err == nil:
			logger.Info("disk space is back: writes accepted again", "data_dir", dataDir)
		case errors.As(err, &low):
			logger.Error("disk nearly full: refusing writes (507) until space is freed; decisions go on",
				"data_dir", low.Path, "free_bytes", low.Free, "needed_bytes", low.Need)
		default:
			logger.Error("cannot measure the data folder's free space", "err", err)
		}
	}
}

// serviceHealth is /health's check: the policy's health first (a failed policy is a 503), then
// the data folder's free space, measured now: too little is "degraded" (200), because
// decisions go on and only writes are refused (see server.Degraded).
func serviceHealth(policy, checkSpace func() error) func() error {
	return func() error {
		if err := policy(); err != nil {
			return err
		}
		if err := checkSpace(); err != nil {
			return &server.Degraded{Err: err}
		}
		return nil
	}
}

// newAuthorizer is the credential path as keyauthz serve runs it: authz.New (the constructor
// the server's tests use too) with the cache bounds of cfg, a bound of 0 turning a cache off,
// and usage recording every use of a valid key.
func newAuthorizer(cfg Config, store keys.Service, engine *opa.Engine, usage authz.UsageRecorder, logger *slog.Logger) *authz.Authorizer {
	return authz.New(store, engine, authz.Options{
		Cache: cache.Options{
			KeyBytes:        cfg.KeyCacheBytes,
			UnknownKeyBytes: cfg.KeyCacheBytes / 2,
			HostBytes:       cache.DefaultOptions().HostBytes,
			// In cluster mode the store is a cache.Confirmer: past the grace, the caches are
			// bypassed (docs/cluster.md#--stale-grace). Badger is always confirmed.
			StaleGrace: cfg.StaleGrace,
		},
		DecisionBytes: cfg.DecisionCacheBytes,
		Usage:         usage,
		Logger:        logger,
	})
}

func openDecisionLog(path string, stdout io.Writer) (io.Writer, func(), error) {
	if path == "-" {
		return stdout, func() {}, nil
	}
	// O_NOFOLLOW: a link planted at the path must not make keyauthz append to another file.
	f, err := os.OpenFile(filepath.Clean(path), os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("decision log: %w", err)
	}
	// An existing file must be a regular file of ours; it is narrowed to 0600, since the log
	// names keys, users and the paths they called.
	fi, err := f.Stat()
	if err == nil && (!fi.Mode().IsRegular() || !ownedByUs(fi)) {
		err = fmt.Errorf("%s is not a regular file owned by the user keyauthz runs as", path)
	}
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("decision log: %w", err)
	}
	return f, func() { _ = f.Close() }, nil
}

// byteSize is a flag holding a size in bytes: a whole number, optionally followed by KiB, MiB
// or GiB (any case).
type byteSize int64

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	for _, u := range []struct {
		name  string
		shift uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n := int64(*b); n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(*b), 10)
}

func (b *byteSize) Set(s string) error {
	num, shift := s, uint(0)
	for _, u := range []struct {
		name  string
		shift uint
	}{{"kib", 10}, {"mib", 20}, {"gib", 30}} {
		if strings.HasSuffix(strings.ToLower(s), u.name) {
			num, shift = strings.TrimSpace(s[:len(s)-len(u.name)]), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64>>shift {
		return fmt.Errorf("want a size in bytes such as 67108864, 65536KiB or 64MiB")
	}
	*b = byteSize(n << shift)
	return nil
}

// replacedSize handles a --X-size flag of earlier versions: 0 still turns the cache off.
func replacedSize(name string, bytes *int64) func(string) error {
	return func(v string) error {
		if n, err := strconv.Atoi(v); err == nil && n == 0 {
			*bytes = 0
			return nil
		}
		return fmt.Errorf("a count of entries is no longer taken: use --%s-bytes (a bound in bytes, e.g. 64MiB)", name)
	}
}
