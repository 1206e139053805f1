// Package dovecot is the target adapter for a Dovecot-based provider: it
// maintains the passwd-file passdb the target Dovecot reads. Each change
// rewrites the file atomically (a temporary file renamed over it) under
// an exclusive lock, keeps every line it does not manage, and gives the
// new file a modification time Dovecot cannot mistake for the old one's.
package dovecot

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/mailferry/mailferry/services/auth/authconfig"

	"github.com/mailferry/mailferry/services/auth/passhash"
)

// PasswdFile is the passdb of a Dovecot target.
type PasswdFile struct {
	// Path of the passwd-file the target's passdb (and userdb) reads.
	Path string
	// Scheme of new hashes, e.g. SHA512-CRYPT.
	Scheme string
	// Argon2 parameters when Scheme is ARGON2ID.
	Argon2 passhash.Argon2Params
}

// New returns the adapter the configuration describes.
func New(c authconfig.Auth) *PasswdFile {
	return &PasswdFile{
		Path:   c.Dovecot.PasswdFile,
		Scheme: c.Dovecot.Scheme,
		Argon2: passhash.Argon2Params{Time: uint32(c.Argon2.Time), MemoryKiB: uint32(c.Argon2.MemoryKiB), Threads: uint8(c.Argon2.Threads)},
	}
}

// Name is the provider's name in events.
func (p *PasswdFile) Name() string { return authconfig.ProviderDovecot }

// CreateMailboxes adds a line for each address not yet in the file, with
// the hash of a random secret that is thrown away: the mailbox exists,
// and nobody can log in until its user sets a password. Existing lines
// are left alone. errs[i] is the outcome for emails[i].
func (p *PasswdFile) CreateMailboxes(ctx context.Context, emails []string) []error {
	errs := make([]error, len(emails))
	placeholders := make(map[string]string, len(emails))
	var ok []string
	for i, e := range emails {
		if err := checkUser(e); err != nil {
			errs[i] = err
			continue
		}
		ok = append(ok, e)
		// SHA512-CRYPT whatever the scheme: thousands of bcrypt or argon2
		// hashes of secrets nobody will ever type would only cost time.
		h, err := passhash.Generate(rand.Text()+rand.Text(), passhash.SHA512Crypt, p.Argon2)
		if err != nil {
			fill(errs, err)
			return errs
		}
		placeholders[e] = h
	}
	if len(ok) == 0 {
		return errs
	}
	_, err := p.edit(ctx, func(f *file) bool {
		changed := false
		for _, e := range ok {
			if !f.has(e) {
				f.set(e, placeholders[e])
				changed = true
			}
		}
		return changed
	})
	if err != nil {
		fill(errs, fmt.Errorf("create mailboxes in %s: %w", p.Path, err))
	}
	return errs
}

// fill sets err for every entry without an error of its own.
func fill(errs []error, err error) {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
}

// checkUser refuses a user name the passwd-file would misread: a leading
// '#' makes the line a comment, ':' separates fields, a line break or
// other control character ends or garbles the line. The accounts are
// checked at import already; this guards the file itself.
func checkUser(user string) error {
	if user == "" || user[0] == '#' || strings.ContainsFunc(user, func(r rune) bool { return r == ':' || unicode.IsControl(r) || unicode.IsSpace(r) }) {
		return fmt.Errorf("user name %q cannot be a passwd-file entry", user)
	}
	return nil
}

// SetPassword stores a hash of password as user's credential (adding the
// user if missing) and returns once Dovecot will see it: its passwd-file
// driver looks at the file at most once a second.
func (p *PasswdFile) SetPassword(ctx context.Context, user, password string) error {
	if err := checkUser(user); err != nil {
		return err
	}
	h, err := passhash.Generate(password, p.Scheme, p.Argon2)
	if err != nil {
		return fmt.Errorf("set password of %s: %w", user, err)
	}
	written, err := p.edit(ctx, func(f *file) bool {
		f.set(user, h)
		return true
	})
	if err != nil {
		return fmt.Errorf("set password of %s in %s: %w", user, p.Path, err)
	}
	return sleepUntil(ctx, written.Truncate(time.Second).Add(time.Second+20*time.Millisecond))
}

func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
