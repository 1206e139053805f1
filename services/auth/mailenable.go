package auth

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/passhash"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/mailenable"
	"github.com/mailferry/mailferry/shared/subject"
)

// PasswordDir is where, beside the mailboxes file, ImportMailEnable keeps
// each source password (a file per mailbox, mode 0600; the directory
// 0700).
const PasswordDir = "source-passwords"

// MailEnableResult is what ImportMailEnable did.
type MailEnableResult struct {
	// Mailboxes is how many rows the mailboxes file has now, Passwords
	// how many of them have a source password stored.
	Mailboxes int `json:"mailboxes"`
	Passwords int `json:"passwords"`
	// NeedSignIn are the target addresses whose AUTH.TAB line has no
	// usable password: their mailboxes wait for their user to prove one
	// at sign-in.
	NeedSignIn []string             `json:"need_sign_in"`
	Accounts   account.ImportResult `json:"accounts"`
}

// ImportMailEnable turns MailEnable's accounts into what a migration
// needs: the mailboxes file cfg names (source mailbox@postoffice, target
// mailbox@domain, each usable password in a file of its own), and the
// auth accounts (email-only; the legacy password, where AUTH.TAB holds
// it, as a SHA512-CRYPT hash, so the user's current password proves who
// they are at sign-in). Running it again rewrites both to match AUTH.TAB.
func ImportMailEnable(ctx context.Context, cfg *config.Config, b *broker.Broker, accounts []mailenable.Account, offices mailenable.PostOffices) (*MailEnableResult, error) {
	if cfg.Mailboxes.File == "" {
		return nil, errors.New("mailboxes.file is not set: it names the file this import writes")
	}
	if err := checkTargets(accounts, offices); err != nil {
		return nil, err
	}
	dir := filepath.Dir(cfg.Mailboxes.File)
	pwDir := filepath.Join(dir, PasswordDir)
	if err := os.MkdirAll(pwDir, 0o700); err != nil {
		return nil, fmt.Errorf("source password directory: %w", err)
	}
	if err := os.Chmod(pwDir, 0o700); err != nil {
		return nil, fmt.Errorf("source password directory: %w", err)
	}
	store, err := Accounts(ctx, cfg, b)
	if err != nil {
		return nil, err
	}
	res := &MailEnableResult{}
	var boxes, users bytes.Buffer
	bw, uw := csv.NewWriter(&boxes), csv.NewWriter(&users)
	_ = bw.Write([]string{"source_user", "target_user", "source_password_file"})
	_ = uw.Write(account.Columns)
	written := map[string]bool{}
	for _, acc := range accounts {
		source := acc.Login()
		target := acc.Mailbox + "@" + offices.Domain(acc.PostOffice)
		pwFile, hash := "", ""
		path := filepath.Join(pwDir, subject.Key(source)+".pw")
		if acc.Usable {
			if err := writeSecret(path, acc.Password+"\n"); err != nil {
				return nil, fmt.Errorf("source password of %s: %w", source, err)
			}
			pwFile = filepath.Join(PasswordDir, filepath.Base(path))
			written[filepath.Base(path)] = true
			if hash, err = legacyHash(ctx, store, target, acc.Password); err != nil {
				return nil, err
			}
			res.Passwords++
		} else {
			// A password the file no longer holds must not be used.
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("source password of %s: %w", source, err)
			}
			res.NeedSignIn = append(res.NeedSignIn, target)
		}
		_ = bw.Write([]string{source, target, pwFile})
		_ = uw.Write([]string{target, account.RoleEmailOnly, hash})
		res.Mailboxes++
	}
	bw.Flush()
	uw.Flush()
	if err := writeSecret(cfg.Mailboxes.File, boxes.String()); err != nil {
		return nil, fmt.Errorf("mailboxes file: %w", err)
	}
	if err := removeStale(pwDir, written); err != nil {
		return nil, err
	}
	if res.Accounts, err = Import(ctx, cfg, b, &users); err != nil {
		return nil, fmt.Errorf("auth accounts: %w", err)
	}
	sort.Strings(res.NeedSignIn)
	return res, nil
}

// checkTargets refuses the import before anything is written when an
// account has no usable target address (its post office is no mail
// domain and the map does not name one) or two accounts would move to one
// address: a failed import leaves the files of the last good one.
func checkTargets(accounts []mailenable.Account, offices mailenable.PostOffices) error {
	targets := map[string]string{}
	for _, acc := range accounts {
		source := acc.Login()
		target := acc.Mailbox + "@" + offices.Domain(acc.PostOffice)
		if _, err := account.NormalizeEmail(target); err != nil || !strings.Contains(offices.Domain(acc.PostOffice), ".") {
			return fmt.Errorf("AUTH.TAB line %d: post office %q is no mail domain: name its domain in -postoffice-map (%q example.com)", acc.Line, acc.PostOffice, acc.PostOffice)
		}
		if prev, dup := targets[strings.ToLower(target)]; dup {
			return fmt.Errorf("AUTH.TAB line %d: %s and %s would both move to %s: map their post offices apart", acc.Line, prev, source, target)
		}
		targets[strings.ToLower(target)] = source
	}
	return nil
}

// legacyHash is the legacy_hash to import for target's password: a new
// SHA512-CRYPT hash, or "" (keep what is stored) when the account's hash
// already verifies the password, so that importing again changes nothing
// (a new hash would, with its new salt).
func legacyHash(ctx context.Context, store *account.Store, target, password string) (string, error) {
	email, err := account.NormalizeEmail(target)
	if err != nil {
		return "", fmt.Errorf("target %s: %w", target, err)
	}
	a, err := store.Get(ctx, email)
	switch {
	case errors.Is(err, account.ErrNotFound):
	case err != nil:
		return "", err
	case a.Hash != "":
		if ok, _ := passhash.Verify(password, a.Hash); ok {
			return "", nil
		}
	}
	h, err := passhash.Generate(password, passhash.SHA512Crypt, passhash.Argon2Params{})
	if err != nil {
		return "", fmt.Errorf("legacy hash of %s: %w", target, err)
	}
	return h, nil
}

// removeStale removes the password files of pwDir this import did not
// write: mailboxes AUTH.TAB no longer lists, whose passwords must not lie
// about after their rows left the mailboxes file.
func removeStale(pwDir string, written map[string]bool) error {
	old, err := filepath.Glob(filepath.Join(pwDir, "*.pw"))
	if err != nil {
		return err
	}
	for _, p := range old {
		if !written[filepath.Base(p)] {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("source password no longer listed: %w", err)
			}
		}
	}
	return nil
}

// writeSecret replaces path with content, mode 0600, atomically: a
// reader sees the old file or the new one, never half of it.
func writeSecret(path, content string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".import-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
