package dovecottest

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mailferry/mailferry/shared/foldermap"
)

// Message is one message to seed.
type Message struct {
	// Body is the complete RFC 5322 message, stored verbatim. Use CRLF line
	// endings to get byte-identical FETCH results: Dovecot serves a file
	// with bare LF line endings with CRLF.
	Body []byte
	// Flags are IMAP system flags (\Seen \Answered \Flagged \Deleted
	// \Draft) and keywords ($Label1, Work). \Recent is ignored: it cannot be
	// stored.
	Flags []string
	// Date is the INTERNALDATE (stored as the file's mtime, whole seconds).
	// Zero means now.
	Date time.Time
}

// maxKeywords is the number of keywords a Maildir folder can hold: they are
// the letters a..z in file names.
const maxKeywords = 26

// systemFlagLetter maps an IMAP system flag (lower case) to its Maildir
// info letter.
func systemFlagLetter(flag string) (byte, bool) {
	switch flag {
	case `\draft`:
		return 'D', true
	case `\flagged`:
		return 'F', true
	case `\answered`:
		return 'R', true
	case `\seen`:
		return 'S', true
	case `\deleted`:
		return 'T', true
	}
	return 0, false
}

// Seed writes msgs into folder of user directly as Maildir files, creating
// the folder if needed. folder uses the namespace's separator ("Archive/2010"
// or "Archive.2010"); "INBOX" is the inbox. It works on a running instance:
// Dovecot notices the new files in cur/ on its next sync of the folder, and
// assigns UIDs in the order of msgs.
func (s *Server) Seed(user, folder string, msgs []Message) error {
	if err := s.seed(user, folder, msgs); err != nil {
		return fmt.Errorf("seed %s %q: %w", user, folder, err)
	}
	return nil
}

func (s *Server) seed(user, folder string, msgs []Message) error {
	if !s.hasUser(user) {
		return fmt.Errorf("unknown user %s", user)
	}
	dir, err := s.MaildirPath(user, folder)
	if err != nil {
		return err
	}
	if err := s.mkMaildir(dir); err != nil {
		return err
	}
	// Keyword indexes live in one file per folder: serialize writers.
	s.mu.Lock()
	defer s.mu.Unlock()

	type prepared struct {
		letters  string
		keywords []string
		date     time.Time
	}
	prep := make([]prepared, len(msgs))
	var keywords []string
	for i, m := range msgs {
		sys, kws, err := splitFlags(m.Flags)
		if err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		prep[i] = prepared{letters: sys, keywords: kws, date: m.Date}
		if prep[i].date.IsZero() {
			prep[i].date = time.Now()
		}
		keywords = append(keywords, kws...)
	}
	kwIndex, err := s.ensureKeywords(dir, keywords)
	if err != nil {
		return err
	}
	for i := range prep {
		letters := []byte(prep[i].letters)
		for _, kw := range prep[i].keywords {
			letters = append(letters, byte('a'+kwIndex[kw]))
		}
		prep[i].letters = canonicalInfo(letters)
	}

	// Dovecot orders new files by the seconds, then the M number of their
	// names before assigning UIDs: one timestamp for the whole call and an
	// increasing M keep the order of msgs. The random part keeps names unique
	// when a restarted Server seeds the same folder within the same second.
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("random: %w", err)
	}
	stamp := time.Now().Unix()
	pid := os.Getpid()
	tmpDir := filepath.Join(dir, "tmp")
	curDir := filepath.Join(dir, "cur")
	for i, m := range msgs {
		base := fmt.Sprintf("%d.M%dP%dR%s.mailferry,S=%d", stamp, s.seq.Add(1), pid, hex.EncodeToString(rnd[:]), len(m.Body))
		tmp := filepath.Join(tmpDir, base)
		if err := os.WriteFile(tmp, m.Body, 0o600); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if err := os.Chown(tmp, s.mailUID, s.mailGID); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if err := os.Chtimes(tmp, prep[i].date, prep[i].date); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if err := os.Rename(tmp, filepath.Join(curDir, base+":2,"+prep[i].letters)); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	return nil
}

// splitFlags turns IMAP flags into Maildir system letters and keywords.
func splitFlags(flags []string) (letters string, keywords []string, err error) {
	var b []byte
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			lf := strings.ToLower(f)
			if lf == `\recent` {
				continue
			}
			l, ok := systemFlagLetter(lf)
			if !ok {
				return "", nil, fmt.Errorf("unknown system flag %q", f)
			}
			b = append(b, l)
			continue
		}
		if !validKeyword(f) {
			return "", nil, fmt.Errorf("invalid keyword %q", f)
		}
		keywords = append(keywords, f)
	}
	return string(b), keywords, nil
}

// validKeyword reports whether kw is an IMAP atom usable as a keyword.
func validKeyword(kw string) bool {
	if kw == "" {
		return false
	}
	for i := 0; i < len(kw); i++ {
		c := kw[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// canonicalInfo sorts and deduplicates info letters: Maildir readers expect
// them in ASCII order.
func canonicalInfo(letters []byte) string {
	sort.Slice(letters, func(i, j int) bool { return letters[i] < letters[j] })
	out := letters[:0]
	for i, c := range letters {
		if i > 0 && letters[i-1] == c {
			continue
		}
		out = append(out, c)
	}
	return string(out)
}

// ensureKeywords makes sure all keywords have an index in the folder's
// dovecot-keywords file ("<index> <name>" per line; index i is letter
// 'a'+i) and returns the name-to-index map.
func (s *Server) ensureKeywords(dir string, keywords []string) (map[string]int, error) {
	path := filepath.Join(dir, "dovecot-keywords")
	index := map[string]int{}
	names := make([]string, maxKeywords)
	var oldMtime time.Time
	if fi, err := os.Stat(path); err == nil {
		oldMtime = fi.ModTime()
	}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			num, name, ok := strings.Cut(sc.Text(), " ")
			n, err := strconv.Atoi(num)
			if !ok || err != nil || n < 0 || n >= maxKeywords || name == "" {
				continue
			}
			index[name] = n
			names[n] = name
		}
		err := sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read keywords: %w", err)
	}
	changed := false
	for _, kw := range keywords {
		if _, ok := index[kw]; ok {
			continue
		}
		free := -1
		for i, n := range names {
			if n == "" {
				free = i
				break
			}
		}
		if free < 0 {
			return nil, fmt.Errorf("keyword %q: a Maildir folder holds at most %d keywords", kw, maxKeywords)
		}
		names[free] = kw
		index[kw] = free
		changed = true
	}
	if !changed {
		return index, nil
	}
	var b strings.Builder
	for i, n := range names {
		if n != "" {
			fmt.Fprintf(&b, "%d %s\n", i, n)
		}
	}
	tmp := filepath.Join(dir, "tmp", "dovecot-keywords.mailferry")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return nil, fmt.Errorf("write keywords: %w", err)
	}
	if err := os.Chown(tmp, s.mailUID, s.mailGID); err != nil {
		return nil, fmt.Errorf("write keywords: %w", err)
	}
	// Dovecot re-reads dovecot-keywords only when its mtime (whole seconds)
	// changed: a rewrite within the second Dovecot last read it would leave
	// the new letters showing as "unknown-N" keywords.
	mtime := time.Now().Truncate(time.Second)
	if !mtime.After(oldMtime.Truncate(time.Second)) {
		mtime = oldMtime.Truncate(time.Second).Add(time.Second)
	}
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		return nil, fmt.Errorf("write keywords: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("write keywords: %w", err)
	}
	return index, nil
}

// mkMaildir creates dir with cur/new/tmp, and any missing parents below the
// user's home, owned by the mail user like Dovecot would.
func (s *Server) mkMaildir(dir string) error {
	mailRoot := filepath.Join(s.Dir, "mail")
	rel, err := filepath.Rel(mailRoot, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("maildir %s outside %s", dir, mailRoot)
	}
	p := mailRoot
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		p = filepath.Join(p, c)
		if err := s.mkdirOwned(p); err != nil {
			return err
		}
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := s.mkdirOwned(filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	if s.Separator == '.' && strings.HasPrefix(filepath.Base(dir), ".") {
		// Dovecot marks Maildir++ subfolders like this (the Maildir++ spec's
		// hint for delivery agents); LAYOUT=fs folders have no such file.
		marker := filepath.Join(dir, "maildirfolder")
		if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(marker, nil, 0o600); err != nil {
				return fmt.Errorf("create %s: %w", marker, err)
			}
			if err := os.Chown(marker, s.mailUID, s.mailGID); err != nil {
				return fmt.Errorf("chown %s: %w", marker, err)
			}
		}
	}
	return nil
}

func (s *Server) mkdirOwned(p string) error {
	err := os.Mkdir(p, 0o700)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	if err := os.Chown(p, s.mailUID, s.mailGID); err != nil {
		return fmt.Errorf("chown %s: %w", p, err)
	}
	return nil
}

// Home returns the home directory of user (DIR/mail/<domain>/<local part>).
func (s *Server) Home(user string) string {
	local, domain, _ := strings.Cut(user, "@")
	return filepath.Join(s.Dir, "mail", domain, local)
}

// MaildirPath returns the directory that holds folder of user on disk.
//
// Dovecot 2.3 stores names in modified UTF-7 ("Entwürfe" is "Entw&APw-rfe",
// "&" is "&-"). INBOX is the Maildir root itself in both layouts. With
// LAYOUT=fs ('/') each level is a directory named by its mUTF-7 name, and
// children of INBOX live below a directory "INBOX" beside the root's cur/;
// with Maildir++ ('.') a folder is the directory "." + its full mUTF-7 name
// with levels joined by '.' (".INBOX.kid" for INBOX's children).
func (s *Server) MaildirPath(user, folder string) (string, error) {
	root := filepath.Join(s.Home(user), "Maildir")
	sep := string(s.Separator)
	if folder == "" || !utf8.ValidString(folder) {
		return "", fmt.Errorf("invalid folder name %q", folder)
	}
	if p := s.opts.Prefix; p != "" && !strings.EqualFold(folder, "INBOX") {
		rest, ok := strings.CutPrefix(folder, p)
		if !ok {
			return "", fmt.Errorf("folder name %q is not under the namespace prefix %q", folder, p)
		}
		folder = rest
	}
	levels := strings.Split(folder, sep)
	for _, l := range levels {
		if l == "" || l == "." || l == ".." || strings.ContainsAny(l, "/\x00\r\n") {
			return "", fmt.Errorf("invalid folder name %q (level %q)", folder, l)
		}
	}
	if s.Separator == '/' {
		for _, l := range levels {
			// Every LAYOUT=fs level is a directory beside cur/new/tmp of its
			// parent, and Dovecot hides dot-directories from listings.
			if l == "cur" || l == "new" || l == "tmp" || strings.HasPrefix(l, ".") {
				return "", fmt.Errorf("folder name %q: level %q clashes with Maildir files in LAYOUT=fs", folder, l)
			}
		}
	}
	if strings.EqualFold(levels[0], "INBOX") {
		levels[0] = "INBOX"
	}
	if len(levels) == 1 && levels[0] == "INBOX" {
		return root, nil
	}
	if s.Separator == '.' {
		return filepath.Join(root, "."+foldermap.EncodeUTF7(strings.Join(levels, "."))), nil
	}
	parts := []string{root}
	for _, l := range levels {
		parts = append(parts, foldermap.EncodeUTF7(l))
	}
	return filepath.Join(parts...), nil
}
