package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// `keyauthz audit list`: the audit log over the admin API (docs/audit.md), with the listing's
// filters as flags and the shared admin flags (--url, --key-file, --output).

// auditResource is the audit log as a read-only resource: list only.
var auditResource = resource{
	name: "audit",
	noun: "audit record",
	path: "/api/engine/v2/audit",
	filters: []field{
		{flag: "target", json: "target", usage: "only records of this record `id` (also a delete's cascade, a rotation's new key)"},
		{flag: "actor", json: "actor", usage: "only records made by this key `id` or user id"},
		{flag: "action", json: "action", usage: "only this `action`: create, update, delete, rotate or import"},
		{flag: "since", json: "since", usage: "only records made at or after this `time` (RFC 3339 or Unix seconds)"},
		{flag: "until", json: "until", usage: "only records made before this `time` (RFC 3339 or Unix seconds)"},
		{flag: "limit", json: "limit", kind: intField, usage: "page size (the API's default 100, at most 10000)"},
		{flag: "offset", json: "offset", kind: intField, usage: "page start"},
	},
	columns: []column{
		timeCol("TIME", "time", "-"), textCol("ACTION", "action"), textCol("KIND", "target_kind"),
		textCol("TARGET", "target_id"), textCol("ACTOR KEY", "actor_key_id"), textCol("ACTOR USER", "actor_user_id"),
		changesCol("CHANGED"), textCol("REQUEST", "request_id"),
	},
}

var auditCommand = &command{
	name:    "audit",
	summary: "read the audit log of admin changes over the admin API",
	help:    "The caller's key needs the audit scope and admin level.\n\n" + adminHelp,
	shared:  func(fs *flag.FlagSet) { declareAdminFlags(fs) },
	subs: []*command{{
		name:    "list",
		summary: "list audit records, newest first",
		help: `Each record is one admin write: when, the action, the record it changed, the calling key and
its user, the fields it changed (--output json shows their old and new values) and the id of
the request (the X-Request-Id of the write, and its decision log entry's id).

` + adminHelp,
		flags: func(fs *flag.FlagSet) runFunc {
			a := declareAdminFlags(fs)
			query := declareFields(fs, auditResource.filters, true)
			return func(ctx context.Context, c *cli, _ []string) error {
				q := url.Values{}
				for k, v := range query(c) {
					q.Set(k, fmt.Sprint(v))
				}
				_, err := a.call(ctx, c, auditResource, http.MethodGet, auditResource.path, q, nil, auditResource.columns)
				return err
			}
		},
	}},
}

// changesCol lists the names of a record's changed fields.
func changesCol(header string) column {
	return column{header: header, value: func(obj map[string]any) string {
		list, _ := obj["changes"].([]any)
		names := make([]string, 0, len(list))
		for _, ch := range list {
			if m, ok := ch.(map[string]any); ok {
				if f, ok := m["field"].(string); ok {
					names = append(names, f)
				}
			}
		}
		if len(names) == 0 {
			return "-"
		}
		return clean(strings.Join(names, ","))
	}}
}

// declareAuditFlags declares serve's audit-log retention flags on fs.
func declareAuditFlags(fs *flag.FlagSet, cfg *Config) {
	fs.IntVar(&cfg.AuditRetentionCount, "audit-retention-count", 0, "keep at most this many audit records, the newest; 0 keeps every one")
	fs.DurationVar(&cfg.AuditRetentionAge, "audit-retention-age", 0, "delete audit records older than this `duration` (e.g. 2160h for 90 days); 0 keeps every one")
}

func (cfg Config) validateAudit() []error {
	var errs []error
	if cfg.AuditRetentionCount < 0 {
		errs = append(errs, errors.New("--audit-retention-count must not be negative"))
	}
	if cfg.AuditRetentionAge < 0 {
		errs = append(errs, errors.New("--audit-retention-age must not be negative"))
	}
	return errs
}

// auditPruneInterval is how often the audit log is pruned to the retention: the log may hold
// up to one interval's records beyond --audit-retention-count before they go.
const auditPruneInterval = time.Minute

// pruneAudit prunes the audit log of store to cfg's retention once now, before serving, and
// then every auditPruneInterval until ctx ends or stop is called; stop returns once pruning
// has ended. Without a retention it does nothing. In cluster mode every node prunes: the same
// range delete, whichever runs it first.
func pruneAudit(ctx context.Context, store keys.Service, cfg Config, logger *slog.Logger) (stop func()) {
	r := keys.AuditRetention{MaxCount: cfg.AuditRetentionCount, MaxAge: cfg.AuditRetentionAge}
	if r.MaxCount == 0 && r.MaxAge == 0 {
		return func() {}
	}
	prune := func(ctx context.Context) {
		n, err := store.PruneAudit(ctx, r)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Warn("pruning the audit log", "err", err)
		case n > 0:
			logger.Info("pruned the audit log", "deleted", n, "retention_count", r.MaxCount, "retention_age", r.MaxAge.String())
		}
	}
	prune(ctx)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(auditPruneInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				prune(ctx)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
