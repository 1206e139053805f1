package dovecottest

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxHashedUsers is the number of users above which passwords are stored as
// {PLAIN}: each SHA512-CRYPT hash costs one doveadm process.
const maxHashedUsers = 20

// ensureMailUser returns uid and gid of MailUser, creating it as a system
// user when missing (the project's machines are rebuilt from scratch, so the
// package must install what it needs).
func ensureMailUser() (uid, gid int, err error) {
	u, err := user.Lookup(MailUser)
	if err != nil {
		if os.Geteuid() != 0 {
			return 0, 0, fmt.Errorf("system user %s missing and not root to create it: %w", MailUser, err)
		}
		out, cerr := exec.Command("useradd", "--system", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "--user-group", MailUser).CombinedOutput()
		// A parallel test process may have created it first: look again
		// before reporting the useradd failure.
		if u, err = user.Lookup(MailUser); err != nil {
			return 0, 0, fmt.Errorf("create system user %s: %v: %s", MailUser, cerr, strings.TrimSpace(string(out)))
		}
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("uid of %s: %w", MailUser, err)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("gid of %s: %w", MailUser, err)
	}
	return uid, gid, nil
}

func lookupGroupID(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("group %s (from Debian package %s): %w", name, DebianPackage, err)
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("gid of %s: %w", name, err)
	}
	return id, nil
}

func (s *Server) passwdPath() string       { return filepath.Join(s.Dir, "passwd") }
func (s *Server) masterPasswdPath() string { return filepath.Join(s.Dir, "master-users") }

// writeInitialUsers hashes the configured users (in parallel: one doveadm
// process each) and writes both passwd files.
func (s *Server) writeInitialUsers(ctx context.Context) error {
	plain := s.opts.PlainPasswords || len(s.opts.Users) > maxHashedUsers
	type result struct {
		user, entry string
		err         error
	}
	results := make([]result, 0, len(s.opts.Users))
	for u, pw := range s.opts.Users {
		if err := validUserName(u); err != nil {
			return err
		}
		results = append(results, result{user: u, entry: pw})
	}
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func(r *result) {
			defer wg.Done()
			r.entry, r.err = passwordEntry(ctx, r.entry, plain)
		}(&results[i])
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range results {
		if r.err != nil {
			return fmt.Errorf("password of %s: %w", r.user, r.err)
		}
		s.users[r.user] = r.entry
	}
	if err := s.writePasswdLocked(); err != nil {
		return err
	}
	master := map[string]string{}
	if s.opts.MasterUser != "" {
		if err := validUserName(s.opts.MasterUser); err != nil {
			return err
		}
		entry, err := passwordEntry(ctx, s.opts.MasterPassword, s.opts.PlainPasswords)
		if err != nil {
			return fmt.Errorf("password of master user: %w", err)
		}
		master[s.opts.MasterUser] = entry
	}
	if s.opts.TokenPasswords {
		if err := s.writePasswdFile(s.tokensPath(), nil, time.Time{}); err != nil {
			return err
		}
	}
	// Always written so a config edited to use it never points at nothing.
	return s.writePasswdFile(s.masterPasswdPath(), master, time.Time{})
}

// AddUser adds user (or changes its password); see AddUsers.
func (s *Server) AddUser(user, password string) error {
	return s.AddUsers(map[string]string{user: password})
}

// AddUsers adds users (login name to password) or changes their passwords,
// with one rewrite of the passwd file (replaced atomically). Dovecot's
// passwd-file driver stats the file at most once per second, so AddUsers
// returns only once the second of the rewrite is over: a login after it
// returns sees the new passwords.
func (s *Server) AddUsers(users map[string]string) error {
	entries := make(map[string]string, len(users))
	for u, pw := range users {
		if err := validUserName(u); err != nil {
			return fmt.Errorf("add user: %w", err)
		}
		entry, err := passwordEntry(context.Background(), pw, s.opts.PlainPasswords || len(users) > maxHashedUsers)
		if err != nil {
			return fmt.Errorf("add user %s: %w", u, err)
		}
		entries[u] = entry
	}
	s.mu.Lock()
	for u, e := range entries {
		s.users[u] = e
	}
	err := s.writePasswdLocked()
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("add users: %w", err)
	}
	// The auth process may have read the old file earlier in this second.
	next := time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)
	time.Sleep(time.Until(next))
	return nil
}

// hasUser reports whether user is in the passwd file.
func (s *Server) hasUser(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.users[user]
	return ok
}

func (s *Server) writePasswdLocked() error {
	// Dovecot notices a changed passwd-file by mtime (whole seconds) and
	// size only: a rewrite within the same second with the same size would go
	// unseen, so every version gets a later mtime than the one before.
	stamp := time.Now().Truncate(time.Second)
	if !stamp.After(s.passwdStamp) {
		stamp = s.passwdStamp.Add(time.Second)
	}
	if err := s.writePasswdFile(s.passwdPath(), s.users, stamp); err != nil {
		return err
	}
	s.passwdStamp = stamp
	return nil
}

// writePasswdFile writes a passwd-file atomically, readable by the auth
// process (root:dovecot 0640).
func (s *Server) writePasswdFile(path string, entries map[string]string, mtime time.Time) error {
	names := make([]string, 0, len(entries))
	for u := range entries {
		names = append(names, u)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, u := range names {
		// uid, gid and home come from the userdb's default_fields.
		fmt.Fprintf(&b, "%s:%s::::::\n", u, entries[u])
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chown(tmp.Name(), 0, s.dovecotGID); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o640); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(tmp.Name(), mtime, mtime); err != nil {
			return fmt.Errorf("set mtime of %s: %w", path, err)
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// passwordEntry returns the passwd-file password field for password.
func passwordEntry(ctx context.Context, password string, plain bool) (string, error) {
	if plain {
		// passwd-file has no escaping: passwords that would break the line
		// format are stored base64-encoded, which Dovecot decodes itself.
		if strings.ContainsAny(password, ":\n\r") || strings.HasPrefix(password, "{") {
			return "{PLAIN.BASE64}" + base64.StdEncoding.EncodeToString([]byte(password)), nil
		}
		return "{PLAIN}" + password, nil
	}
	cmd := exec.CommandContext(ctx, "doveadm", "pw", "-s", "SHA512-CRYPT")
	// The password goes via stdin (doveadm asks twice) so it does not show
	// up in ps output.
	cmd.Stdin = strings.NewReader(password + "\n" + password + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("doveadm pw: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	hash := strings.TrimSpace(stdout.String())
	if !strings.HasPrefix(hash, "{SHA512-CRYPT}") {
		return "", fmt.Errorf("doveadm pw: unexpected output %q", hash)
	}
	return hash, nil
}

func validUserName(u string) error {
	if u == "" || strings.ContainsAny(u, ":\n\r*/ \t") || strings.HasPrefix(u, ".") {
		return fmt.Errorf("user name %q not usable in a passwd-file (no ':', '*', '/', spaces, leading '.')", u)
	}
	return nil
}
