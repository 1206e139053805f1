package dovecottest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Renumber gives the messages of a user's folder new UIDs (newUID: old
// UID to new) under the same UIDVALIDITY and sets its next UID, as
// MailEnable does when it rebuilds a folder's _index.xml. It rewrites the
// folder's dovecot-uidlist ("3 V<uidvalidity> N<next uid> G<guid>", then
// "<uid> <fields> :<file name>" per message) and removes the index files
// from which Dovecot would otherwise keep the old UIDs. Every message
// still on disk needs a new UID; no session may have the folder open. It
// returns the folder's UIDVALIDITY.
func (s *Server) Renumber(user, folder string, newUID map[uint32]uint32, next uint32) (uint32, error) {
	dir, err := s.MaildirPath(user, folder)
	if err != nil {
		return 0, err
	}
	path := filepath.Join(dir, "dovecot-uidlist")
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("renumber %q: %w", folder, err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	head := strings.Fields(lines[0])
	if len(head) < 3 || head[0] != "3" || !strings.HasPrefix(head[1], "V") || !strings.HasPrefix(head[2], "N") {
		return 0, fmt.Errorf("renumber %q: %s: unexpected header %q", folder, path, lines[0])
	}
	head[2] = fmt.Sprintf("N%d", next)
	uidv, err := strconv.ParseUint(head[1][1:], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("renumber %q: %s: header %q: %w", folder, path, lines[0], err)
	}
	type entry struct {
		uid  uint32
		rest string
	}
	var entries []entry
	for _, l := range lines[1:] {
		u, rest, _ := strings.Cut(l, " ")
		old, err := strconv.ParseUint(u, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("renumber %q: %s: line %q", folder, path, l)
		}
		if _, name, _ := strings.Cut(rest, ":"); !onDisk(dir, name) {
			continue // expunged: Dovecot drops the line at its next rewrite
		}
		nu, ok := newUID[uint32(old)]
		if !ok {
			return 0, fmt.Errorf("renumber %q: no new UID for uid %d", folder, old)
		}
		entries = append(entries, entry{nu, rest})
	}
	if len(entries) != len(newUID) {
		return 0, fmt.Errorf("renumber %q: %s lists %d messages, want %d", folder, path, len(entries), len(newUID))
	}
	slices.SortFunc(entries, func(a, b entry) int { return int(a.uid) - int(b.uid) })
	out := []string{strings.Join(head, " ")}
	for _, e := range entries {
		out = append(out, fmt.Sprintf("%d %s", e.uid, e.rest))
	}
	// Written in place: the file keeps its owner (the mail user).
	if err := os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("renumber %q: %w", folder, err)
	}
	for _, pattern := range []string{filepath.Join(dir, "dovecot.index*"), filepath.Join(s.Home(user), "Maildir", "dovecot.list.index*")} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return 0, fmt.Errorf("renumber %q: %w", folder, err)
			}
		}
	}
	return uint32(uidv), nil
}

// onDisk reports whether the Maildir dir holds the message whose file
// name starts with base.
func onDisk(dir, base string) bool {
	for _, sub := range []string{"cur", "new"} {
		if files, _ := filepath.Glob(filepath.Join(dir, sub, base+"*")); len(files) > 0 {
			return true
		}
	}
	return false
}
