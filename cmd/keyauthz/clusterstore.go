package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keyauthz/keyauthz/internal/etcdstore"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/server"
)

// etcdScheme is the --store prefix of cluster mode (docs/cluster.md): etcd://host1:2379,host2:2379.
const etcdScheme = "etcd://"

// EtcdConfig is how serve reaches etcd in cluster mode, with the options etcd's own client
// (etcdctl) takes: a CA to verify the members, a client certificate and key, a user whose
// password is read from a file (never given on the command line).
type EtcdConfig struct {
	CACert       string
	Cert         string
	Key          string
	User         string
	PasswordFile string
}

// storeEndpoints parses --store: nil for the default (Badger in --data-dir), else the etcd
// endpoints (host:port each).
func storeEndpoints(store string) ([]string, error) {
	if store == "" || store == "badger" {
		return nil, nil
	}
	rest, ok := strings.CutPrefix(store, etcdScheme)
	if !ok {
		return nil, fmt.Errorf("--store %q: want etcd://host:port[,host:port...] (or nothing, for Badger in --data-dir)", store)
	}
	var eps []string
	for _, ep := range strings.Split(rest, ",") {
		ep = strings.TrimSpace(ep)
		if strings.Contains(ep, "@") {
			// Not echoed: the text before '@' may be a password.
			return nil, errors.New("--store: an endpoint holds user information; give etcd credentials with --etcd-user and --etcd-password-file")
		}
		host, port, err := net.SplitHostPort(ep)
		if err != nil || host == "" || port == "" || strings.ContainsAny(ep, "/?#") {
			return nil, fmt.Errorf("--store %q: endpoint %q is not host:port", store, ep)
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// clustered reports whether cfg runs on etcd (cluster mode).
func (cfg Config) clustered() bool {
	eps, _ := storeEndpoints(cfg.Store)
	return eps != nil
}

// validateStore reports every problem of the store options.
func (cfg Config) validateStore() []error {
	var errs []error
	eps, err := storeEndpoints(cfg.Store)
	if err != nil {
		errs = append(errs, err)
	}
	if cfg.StaleGrace < 0 {
		errs = append(errs, errors.New("--stale-grace must not be negative"))
	}
	e := cfg.Etcd
	if eps == nil && err == nil {
		if cfg.StaleGrace != 0 {
			// Badger is local: its view is always confirmed, so a grace would mean nothing.
			errs = append(errs, errors.New("--stale-grace needs --store etcd://HOST:PORT"))
		}
		for _, f := range []struct{ name, v string }{
			{"--etcd-cacert", e.CACert}, {"--etcd-cert", e.Cert}, {"--etcd-key", e.Key},
			{"--etcd-user", e.User}, {"--etcd-password-file", e.PasswordFile},
		} {
			if f.v != "" {
				errs = append(errs, fmt.Errorf("%s needs --store etcd://HOST:PORT", f.name))
			}
		}
		return errs
	}
	if (e.Cert == "") != (e.Key == "") {
		errs = append(errs, errors.New("--etcd-cert and --etcd-key go together: give both or neither"))
	}
	if (e.User == "") != (e.PasswordFile == "") {
		errs = append(errs, errors.New("--etcd-user and --etcd-password-file go together: give both or neither"))
	}
	for _, f := range []struct{ name, path string }{
		{"--etcd-cacert", e.CACert}, {"--etcd-cert", e.Cert}, {"--etcd-key", e.Key},
		{"--etcd-password-file", e.PasswordFile},
	} {
		if f.path == "" {
			continue
		}
		if fi, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		} else if !fi.Mode().IsRegular() {
			errs = append(errs, fmt.Errorf("%s %s is not a regular file", f.name, f.path))
		}
	}
	if e.PasswordFile != "" {
		if b, err := os.ReadFile(e.PasswordFile); err == nil && strings.TrimRight(string(b), "\r\n") == "" {
			errs = append(errs, fmt.Errorf("--etcd-password-file %s is empty", e.PasswordFile))
		}
	}
	return errs
}

// etcdClientConfig builds the etcd client configuration of cfg (validated).
func (cfg Config) etcdClientConfig(logger *slog.Logger) (clientv3.Config, error) {
	eps, _ := storeEndpoints(cfg.Store)
	cc := clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 5 * time.Second,
		// Keepalives notice a dead member and move to another endpoint.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Logger:               zap.NewNop(),
	}
	e := cfg.Etcd
	if e.CACert != "" || e.Cert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if e.CACert != "" {
			pem, err := os.ReadFile(e.CACert)
			if err != nil {
				return cc, fmt.Errorf("--etcd-cacert: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return cc, fmt.Errorf("--etcd-cacert %s: no PEM certificate in it", e.CACert)
			}
			tc.RootCAs = pool
		}
		if e.Cert != "" {
			pair, err := tls.LoadX509KeyPair(e.Cert, e.Key)
			if err != nil {
				return cc, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		cc.TLS = tc
	}
	if e.User != "" {
		fi, err := os.Stat(e.PasswordFile)
		if err == nil && fi.Mode().Perm()&0o077 != 0 {
			logger.Warn("the etcd password file can be read by group or others: chmod 600 it", "file", e.PasswordFile)
		}
		b, err := os.ReadFile(e.PasswordFile)
		if err != nil {
			return cc, fmt.Errorf("--etcd-password-file: %w", err)
		}
		cc.Username, cc.Password = e.User, strings.TrimRight(string(b), "\r\n")
	}
	return cc, nil
}

// clusterStore is the etcd store of cluster mode with its client.
type clusterStore struct {
	*etcdstore.Store
	cli *clientv3.Client
}

// openClusterStore connects to etcd and opens the store on it. etcd must answer now: a node
// that cannot reach etcd at start has nothing to decide with.
func openClusterStore(ctx context.Context, cfg Config, logger *slog.Logger) (*clusterStore, error) {
	cc, err := cfg.etcdClientConfig(logger)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	// Uses within one flush interval of the stored last_used_at are not written again: a key
	// used on every node is written about once per interval, not once per node (usage.go).
	s, err := etcdstore.Open(ctx, cli, etcdstore.WithLogger(logger), etcdstore.WithUseResolution(usageFlushInterval))
	if err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("etcd store %s: %w", strings.Join(cc.Endpoints, ","), err)
	}
	return &clusterStore{Store: s, cli: cli}, nil
}

// Close stops the store's watch, then closes the client.
func (c *clusterStore) Close() error {
	return errors.Join(c.Store.Close(), c.cli.Close())
}

// health is /health's check in cluster mode (docs/cluster.md#failures): the policy first,
// then the store's view of etcd, as its heartbeat last found it (no request of its own, so a
// probe never waits for etcd):
//   - confirmed: ok;
//   - etcd unreachable, within the stale grace: degraded (200): cached keys are still decided,
//     writes answer 503;
//   - etcd unreachable beyond the grace: unhealthy (503): every decision would be a 503 deny;
//   - etcd answering but the watch broken: degraded (200): decisions read etcd, uncached.
func (c *clusterStore) health(policy func() error, grace time.Duration) func() error {
	return func() error {
		if err := policy(); err != nil {
			return err
		}
		v := c.Confirmation()
		if v.Confirmed {
			return nil
		}
		since := v.Since.UTC().Format(time.RFC3339Nano)
		if !v.Unreachable {
			return &server.Degraded{Err: fmt.Errorf("%w (unconfirmed since %s): caches bypassed, every decision reads etcd", v.Reason, since)}
		}
		if until := v.Since.Add(grace); grace > 0 && time.Now().Before(until) {
			return &server.Degraded{Err: fmt.Errorf("%w (unconfirmed since %s): admin writes answer 503; cached keys are decided until %s (--stale-grace %v), others are refused",
				v.Reason, since, until.UTC().Format(time.RFC3339Nano), grace)}
		}
		return fmt.Errorf("%w (unconfirmed since %s, --stale-grace %v): admin writes answer 503 and decisions are refused until it is back", v.Reason, since, grace)
	}
}

// isTaken reports whether err is the store's refusal of a field as "has already been taken".
func isTaken(err error, field string) bool {
	var e *keys.Error
	if !errors.As(err, &e) {
		return false
	}
	for _, f := range e.Failures {
		if f.Field == field && f.Reason == keys.ReasonTaken {
			return true
		}
	}
	return false
}
