// Package foldermap maps mailbox names of the source IMAP server (MailEnable)
// onto mailbox names of the target IMAP server.
//
// The loader uses it to decide where each source folder is written and the
// verifier uses the very same Mapper to find where a source folder landed, so
// every rule here must be deterministic: the same source list, target list
// and Options always yield the same names, whatever the input order.
//
// Names handled by the Mapper are UTF-8 (go-imap converts modified UTF-7 on
// the wire). EncodeUTF7 and DecodeUTF7 convert names that are stored, logged
// or received raw.
package foldermap

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
)

// inbox is the one mailbox name IMAP treats case-insensitively (RFC 3501
// 5.1); it is always written in this canonical spelling.
const inbox = "INBOX"

// defaultSubstitute replaces characters and levels the target cannot take.
const defaultSubstitute = "_"

// Errors returned by New; test with errors.Is.
var (
	// ErrInvalidDelimiter reports a target hierarchy delimiter the mapping
	// cannot work with.
	ErrInvalidDelimiter = errors.New("foldermap: invalid target delimiter")
	// ErrInvalidSubstitute reports an Options.Substitute that would itself
	// produce an invalid name.
	ErrInvalidSubstitute = errors.New("foldermap: invalid substitute")
	// ErrInvalidTable reports an Options.Table entry that cannot be applied.
	ErrInvalidTable = errors.New("foldermap: invalid mapping table entry")
)

// Folder is one mailbox as returned by LIST (see imap.ListData).
type Folder struct {
	// Name is the UTF-8 mailbox name, levels separated by Delim.
	Name string
	// Delim is the hierarchy delimiter; 0 (NIL) means a flat namespace, so
	// Name is a single level.
	Delim rune
	// Attrs are the LIST attributes; special-use ones (RFC 6154) drive the
	// special-use mapping.
	Attrs []imap.MailboxAttr
	// Prefix is the source's personal namespace prefix (NAMESPACE, RFC
	// 2342), such as "INBOX.", or "" when the server has none. A Name
	// under it is mapped as if the prefix were not there: "INBOX.Sent
	// Items" is the top-level "Sent Items". INBOX itself is not under it.
	Prefix string
}

// Target describes the target account as LISTed before loading.
type Target struct {
	// Delim is the target hierarchy delimiter; it must not be 0 because a
	// flat target cannot hold the source hierarchy.
	Delim rune
	// Folders is the target's LIST result. Only folders carrying a
	// special-use attribute matter (or, on a target that lists none, the
	// existing top-level folders with a well-known name); their Delim is
	// ignored.
	Folders []Folder
	// Special names target folders by role, as the provider says outside
	// IMAP (OpenSRS's per-user spam folder): used when the LIST carries no
	// special-use attribute, before the well-known names.
	Special map[imap.MailboxAttr]string
	// Prefix is the target's personal namespace prefix (NAMESPACE), such
	// as "INBOX.", or "": it is put before every mapped top-level name
	// except INBOX, and left out when Folders are matched by their
	// well-known names. Options.Table's targets are taken as written.
	Prefix string
}

// Options tune the mapping.
type Options struct {
	// Substitute replaces every character or level that is invalid on the
	// target; "" means "_". It must be valid as a level on its own.
	Substitute string
	// Table maps an exact source name (UTF-8, source delimiter) to a target
	// name (UTF-8, target delimiter). It overrides every other rule and also
	// applies to the children of the source name: with "Old/Projects" →
	// "Projects", "Old/Projects/X" becomes "Projects" + delim + "X".
	Table map[string]string
}

// Result is the mapping of one source folder.
type Result struct {
	// Source is the source name as listed.
	Source string
	// Target is the UTF-8 target name, levels separated by the target
	// delimiter.
	Target string
	// Renamed is true when Target differs from Source with only the
	// delimiter translated (and INBOX spelled canonically).
	Renamed bool
	// Merged is true when other listed source folders intentionally share
	// Target (special-use or table merges, or children of merged folders).
	// Only MapAll sets it.
	Merged bool
	// Reason explains, "; "-separated, every rule that shaped Target. It is
	// non-empty whenever Renamed or Merged is true.
	Reason string
	// SpecialUse is the special-use role detected on the source folder
	// (attribute or well-known top-level name), even when the target has no
	// folder with that role, so the loader may create one with that role.
	SpecialUse imap.MailboxAttr
}

// Mapper maps source folder names to target folder names. It is immutable
// after New and safe for concurrent use.
type Mapper struct {
	delim   rune
	prefix  string
	sub     string
	table   map[string]string
	special map[imap.MailboxAttr]string
	// specialWhy says, per role of special, how the target folder was
	// found, for Result.Reason.
	specialWhy map[imap.MailboxAttr]string
}

// New validates t and opts and returns a Mapper.
func New(t Target, opts Options) (*Mapper, error) {
	if err := checkDelim(t.Delim); err != nil {
		return nil, err
	}
	m := &Mapper{delim: t.Delim, prefix: t.Prefix, sub: opts.Substitute}
	if m.sub == "" {
		m.sub = defaultSubstitute
	}
	if err := m.checkSubstitute(); err != nil {
		return nil, err
	}
	table, err := m.checkTable(opts.Table)
	if err != nil {
		return nil, err
	}
	m.table = table
	m.special, m.specialWhy = specialFolders(t)
	return m, nil
}

// checkDelim rejects delimiters that would clash with IMAP syntax, modified
// UTF-7, LIST wildcards or the " (n)" collision suffix.
func checkDelim(d rune) error {
	switch {
	case d == 0:
		return fmt.Errorf("%w: flat (NIL) target namespace cannot hold a hierarchy", ErrInvalidDelimiter)
	case d <= ' ' || d >= utf8.RuneSelf:
		return fmt.Errorf("%w: %q is not printable ASCII", ErrInvalidDelimiter, d)
	case unicode.IsLetter(d) || unicode.IsDigit(d) || strings.ContainsRune(`&*%()"`, d):
		return fmt.Errorf("%w: %q clashes with names, wildcards or suffixes", ErrInvalidDelimiter, d)
	}
	return nil
}

// checkSubstitute ensures that substituting can never produce a name that
// needs substituting again.
func (m *Mapper) checkSubstitute() error {
	s := m.sub
	switch {
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidSubstitute, s)
	case strings.ContainsRune(s, m.delim):
		return fmt.Errorf("%w: %q contains the target delimiter %q", ErrInvalidSubstitute, s, m.delim)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: %q contains a control character", ErrInvalidSubstitute, s)
	case strings.Trim(s, ".") == "":
		return fmt.Errorf("%w: %q would form a reserved level", ErrInvalidSubstitute, s)
	case s[0] == '#' || s[0] == '~':
		return fmt.Errorf("%w: %q starts with a namespace prefix", ErrInvalidSubstitute, s)
	}
	return nil
}

// checkTable copies the table, validating keys and normalising values, so
// later changes to the caller's map cannot change the mapping.
func (m *Mapper) checkTable(in map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for src, dst := range in {
		if src == "" || !utf8.ValidString(src) {
			return nil, fmt.Errorf("%w: source %q must be non-empty UTF-8", ErrInvalidTable, src)
		}
		norm, err := m.checkTargetName(dst)
		if err != nil {
			return nil, fmt.Errorf("%w: %q → %q: %w", ErrInvalidTable, src, dst, err)
		}
		out[src] = norm
	}
	return out, nil
}

// checkTargetName validates a user-written target name and returns it with
// INBOX spelled canonically.
func (m *Mapper) checkTargetName(name string) (string, error) {
	levels := strings.Split(name, string(m.delim))
	for i, lv := range levels {
		clean, why := m.cleanLevel(lv, i == 0)
		if len(why) > 0 || clean != lv {
			return "", fmt.Errorf("level %d invalid: %s", i+1, strings.Join(why, "; "))
		}
	}
	return m.natural(levels), nil
}

// natural is the target name a source name gets with no rule applied: only
// the delimiter translated and INBOX canonical. Renamed compares against it.
func (m *Mapper) natural(levels []string) string {
	if strings.EqualFold(levels[0], inbox) {
		levels = append([]string{inbox}, levels[1:]...)
	}
	return strings.Join(levels, string(m.delim))
}

// specialFolders indexes the target's special-use folders, with how each
// was found. When several carry the same role, the smallest name wins so
// the choice is stable. A target whose LIST carries no special-use
// attribute (no SPECIAL-USE, or a server that does not say) gets the
// roles t.Special names, then those of its existing top-level folders with
// a well-known name (Sent, Trash, Drafts, Spam/Junk ...): a hosted
// provider makes those for every mailbox, and a copy must land in them,
// not beside them ("Sent Items" next to "Sent").
func specialFolders(t Target) (map[imap.MailboxAttr]string, map[imap.MailboxAttr]string) {
	sorted := slices.Clone(t.Folders)
	slices.SortFunc(sorted, func(a, b Folder) int { return strings.Compare(a.Name, b.Name) })
	out, why := map[imap.MailboxAttr]string{}, map[imap.MailboxAttr]string{}
	for _, f := range sorted {
		for _, a := range f.Attrs {
			role := canonicalRole(a)
			if _, seen := out[role]; role != "" && !seen {
				out[role] = f.Name
				why[role] = fmt.Sprintf("special-use %s mapped onto target folder %q", role, f.Name)
			}
		}
	}
	if len(out) > 0 {
		return out, why
	}
	for role, name := range t.Special {
		if role = canonicalRole(role); role != "" && name != "" {
			out[role] = name
			why[role] = fmt.Sprintf("%s mapped onto target folder %q, which the provider names for it", role, name)
		}
	}
	for _, f := range sorted {
		name, _ := underPrefix(f.Name, t.Prefix, t.Delim)
		if len(splitName(name, t.Delim)) != 1 || slices.Contains(f.Attrs, imap.MailboxAttrNonExistent) || slices.Contains(f.Attrs, imap.MailboxAttrNoSelect) {
			continue
		}
		if role := roleByName(name); role != "" && out[role] == "" {
			out[role] = f.Name
			why[role] = fmt.Sprintf("%s mapped onto the target's existing folder %q by its name (the target lists no special-use attributes)", role, f.Name)
		}
	}
	return out, why
}

// underPrefix returns name without the namespace prefix and true when
// name is under it (the delimiter after a prefix that lacks it is taken
// too); else name and false. INBOX and the prefix's own folder are never
// under it. The prefix is compared exactly, but for an "INBOX" it starts
// with, which IMAP compares case-insensitively.
func underPrefix(name, prefix string, delim rune) (string, bool) {
	if prefix == "" || len(name) <= len(prefix) {
		return name, false
	}
	head, rest := name[:len(prefix)], name[len(prefix):]
	folded := len(prefix) >= len(inbox) && strings.EqualFold(prefix[:len(inbox)], inbox) &&
		strings.EqualFold(head[:len(inbox)], inbox) && head[len(inbox):] == prefix[len(inbox):]
	if head != prefix && !folded {
		return name, false
	}
	if d := string(delim); delim != 0 && !strings.HasSuffix(prefix, d) {
		if !strings.HasPrefix(rest, d) {
			return name, false
		}
		rest = rest[len(d):]
	}
	if rest == "" {
		return name, false
	}
	return rest, true
}

// canonicalRole returns the special-use constant a matches, or "". LIST
// attributes are case-insensitive, so servers may send "\sent".
func canonicalRole(a imap.MailboxAttr) imap.MailboxAttr {
	for _, role := range roles() {
		if strings.EqualFold(string(a), string(role)) {
			return role
		}
	}
	return ""
}

// roles lists the special-use roles that are mapped, in the priority used
// when one folder carries several of them.
func roles() []imap.MailboxAttr {
	return []imap.MailboxAttr{
		imap.MailboxAttrSent, imap.MailboxAttrDrafts, imap.MailboxAttrTrash,
		imap.MailboxAttrJunk, imap.MailboxAttrArchive, imap.MailboxAttrAll,
		imap.MailboxAttrFlagged,
	}
}

// roleByName recognises the well-known folder names legacy servers and
// clients (Outlook, Apple Mail, Thunderbird) use without SPECIAL-USE.
func roleByName(name string) imap.MailboxAttr {
	switch strings.ToLower(name) {
	case "sent items", "sent messages", "sent":
		return imap.MailboxAttrSent
	case "deleted items", "deleted messages", "trash":
		return imap.MailboxAttrTrash
	case "junk e-mail", "junk", "spam":
		return imap.MailboxAttrJunk
	case "drafts":
		return imap.MailboxAttrDrafts
	case "archive":
		return imap.MailboxAttrArchive
	}
	return ""
}

// sourceRole detects a folder's role: attributes first because they are
// authoritative, then the well-known name, which only counts at top level.
func sourceRole(attrs []imap.MailboxAttr, levels []string) imap.MailboxAttr {
	best := -1
	all := roles()
	for _, a := range attrs {
		if i := slices.Index(all, canonicalRole(a)); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	if best >= 0 {
		return all[best]
	}
	if len(levels) == 1 {
		return roleByName(levels[0])
	}
	return ""
}
