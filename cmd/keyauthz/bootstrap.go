package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// bootstrapKeyFile is where the first admin key is written, mode 0600, inside the data folder.
const bootstrapKeyFile = "bootstrap.key"

// bootstrap runs on a store with no domain: it creates the bootstrap domain, an admin user and
// an admin key (scopes public, permissions admin), and writes the key to
// <data-dir>/bootstrap.key. It logs the file's path, never the key.
func bootstrap(ctx context.Context, store *keys.Store, cfg Config, logger *slog.Logger) error {
	domains, err := store.ListDomains(ctx)
	if err != nil {
		return err
	}
	if len(domains) > 0 {
		return nil
	}
	host, _ := keys.NormalizeHost(cfg.BootstrapDomain)
	d := &keys.Domain{Name: host, Domain: host, Description: "created by keyauthz on first start"}
	if err := store.CreateDomain(ctx, d); err != nil {
		return err
	}
	u := &keys.User{
		AuthorityID: d.ID, Name: "admin", Email: "admin@" + host,
		SysAdmin: true, Support: true,
	}
	if err := store.CreateUser(ctx, u); err != nil {
		return err
	}
	k := &keys.APIKey{
		Name: "bootstrap", Description: "admin key created on first start",
		Scopes: []string{"public"}, Permissions: keys.PermissionAdmin, UserID: u.ID,
	}
	plaintext, err := store.CreateKey(ctx, k)
	if err != nil {
		return err
	}
	path := filepath.Join(cfg.DataDir, bootstrapKeyFile)
	if err := writeSecretFile(path, string(plaintext)+"\n"); err != nil {
		return err
	}
	logger.Info("bootstrapped: created a domain, an admin user and an admin key; the key is in the file",
		"domain", host, "user_id", u.ID, "key_id", k.ID, "key_file", path)
	return nil
}

// writeSecretFile writes data to path with mode 0600 and syncs it, so that the key survives a
// crash right after start-up.
func writeSecretFile(path, data string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.WriteString(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}
