package foldermap

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// germanTarget is a target with '/' hierarchy whose special-use folders have
// names that differ from every well-known source name.
func germanTarget() Target {
	return Target{Delim: '/', Folders: []Folder{
		{Name: "INBOX"},
		{Name: "Gesendet", Attrs: []imap.MailboxAttr{imap.MailboxAttrSent, imap.MailboxAttrHasNoChildren}},
		{Name: "Papierkorb", Attrs: []imap.MailboxAttr{imap.MailboxAttrTrash}},
		{Name: "Spam", Attrs: []imap.MailboxAttr{imap.MailboxAttrJunk}},
		{Name: "Entwürfe", Attrs: []imap.MailboxAttr{imap.MailboxAttrDrafts}},
		{Name: "Archiv", Attrs: []imap.MailboxAttr{imap.MailboxAttrArchive}},
		{Name: "Alle", Attrs: []imap.MailboxAttr{imap.MailboxAttrAll}},
		{Name: "Markiert", Attrs: []imap.MailboxAttr{imap.MailboxAttrFlagged}},
	}}
}

func mustNew(t *testing.T, tg Target, opts Options) *Mapper {
	t.Helper()
	m, err := New(tg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// want is the expected mapping; reason is a substring Reason must contain
// ("" means Reason must be empty).
type want struct {
	target  string
	renamed bool
	reason  string
	role    imap.MailboxAttr
}

func check(t *testing.T, got Result, w want) {
	t.Helper()
	if got.Target != w.target || got.Renamed != w.renamed || got.SpecialUse != w.role {
		t.Errorf("%q → %q renamed=%v role=%q; want %q renamed=%v role=%q (reason %q)",
			got.Source, got.Target, got.Renamed, got.SpecialUse, w.target, w.renamed, w.role, got.Reason)
	}
	if (w.reason == "") != (got.Reason == "") || !strings.Contains(got.Reason, w.reason) {
		t.Errorf("%q: reason %q, want containing %q", got.Source, got.Reason, w.reason)
	}
}

func TestMapTranslatesDelimiters(t *testing.T) {
	tests := []struct {
		name     string
		src, dst rune
		sub      string
		in       string
		want     want
	}{
		{"slash to dot keeps nesting", '/', '.', "", "Projects/2024/Q1", want{target: "Projects.2024.Q1"}},
		{"dot to slash keeps nesting", '.', '/', "", "Projects.2024.Q1", want{target: "Projects/2024/Q1"}},
		{"same delimiter is identity", '/', '/', "", "a/b/c", want{target: "a/b/c"}},
		{"target delimiter in a level is substituted and reported", '/', '.', "", "Releases/v1.2",
			want{target: "Releases.v1_2", renamed: true, reason: `level "v1.2" contains target delimiter '.'`}},
		{"target delimiter in top level is substituted", '/', '.', "", "v1.2",
			want{target: "v1_2", renamed: true, reason: "target delimiter"}},
		{"custom substitute is used", '/', '.', "-", "v1.2.3", want{target: "v1-2-3", renamed: true, reason: `replaced with "-"`}},
		{"slash inside a dot-delimited level is substituted", '.', '/', "", "a/b.c", want{target: "a_b/c", renamed: true, reason: "target delimiter"}},
		{"flat source name is one level", 0, '/', "", "a/b.c", want{target: "a_b.c", renamed: true, reason: "target delimiter"}},
		{"flat source name without target delimiter is unchanged", 0, '/', "", "a.b", want{target: "a.b"}},
		{"umlauts are kept", '/', '.', "", "Entwürfe/Größe", want{target: "Entwürfe.Größe"}},
		{"CJK levels are kept", '/', '.', "", "日本語/メール", want{target: "日本語.メール"}},
		{"emoji including ZWJ sequences are kept", '/', '.', "", "📁 Fotos/👨‍👩‍👧 Familie", want{target: "📁 Fotos.👨‍👩‍👧 Familie"}},
		{"IMAP-special printable characters are kept", '/', '.', "", `R&D "quoted" * % \`, want{target: `R&D "quoted" * % \`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustNew(t, Target{Delim: tc.dst}, Options{Substitute: tc.sub})
			check(t, m.Map(Folder{Name: tc.in, Delim: tc.src}), tc.want)
		})
	}
}

func TestMapInvalidTargetNames(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want want
	}{
		{"empty middle level becomes substitute", "a//b", want{target: "a/_/b", renamed: true, reason: "empty level"}},
		{"trailing delimiter becomes substitute level", "a/", want{target: "a/_", renamed: true, reason: "empty level"}},
		{"leading delimiter becomes substitute level", "/a", want{target: "_/a", renamed: true, reason: "empty level"}},
		{"empty name becomes substitute", "", want{target: "_", renamed: true, reason: "empty level"}},
		{"top-level hash would be a namespace", "#shared", want{target: "_shared", renamed: true, reason: `must not start with "#"`}},
		{"top-level tilde would be a namespace", "~user/x", want{target: "_user/x", renamed: true, reason: `must not start with "~"`}},
		{"hash below top level is fine", "a/#b", want{target: "a/#b"}},
		{"dot level is reserved", "a/./b", want{target: "a/_/b", renamed: true, reason: `level "." is reserved`}},
		{"dot-dot level is reserved and stays distinct", "a/..", want{target: "a/__", renamed: true, reason: `level ".." is reserved`}},
		{"three dots are an ordinary name", "...", want{target: "..."}},
		{"tab is substituted", "a\tb", want{target: "a_b", renamed: true, reason: "control characters"}},
		{"DEL is substituted", "a\x7fb", want{target: "a_b", renamed: true, reason: "control characters"}},
		{"C1 control is substituted", "a\u0085b", want{target: "a_b", renamed: true, reason: "control characters"}},
		{"invalid UTF-8 is substituted", "a\xffb", want{target: "a_b", renamed: true, reason: "invalid UTF-8"}},
	}
	m := mustNew(t, Target{Delim: '/'}, Options{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check(t, m.Map(Folder{Name: tc.in, Delim: '/'}), tc.want)
		})
	}
}

func TestMapSpecialUseByName(t *testing.T) {
	tests := []struct {
		name string
		role imap.MailboxAttr
		dst  string
	}{
		{"Sent Items", imap.MailboxAttrSent, "Gesendet"},
		{"Sent Messages", imap.MailboxAttrSent, "Gesendet"},
		{"Sent", imap.MailboxAttrSent, "Gesendet"},
		{"Deleted Items", imap.MailboxAttrTrash, "Papierkorb"},
		{"Deleted Messages", imap.MailboxAttrTrash, "Papierkorb"},
		{"Trash", imap.MailboxAttrTrash, "Papierkorb"},
		{"Junk E-mail", imap.MailboxAttrJunk, "Spam"},
		{"Junk", imap.MailboxAttrJunk, "Spam"},
		{"Spam", imap.MailboxAttrJunk, "Spam"},
		{"Drafts", imap.MailboxAttrDrafts, "Entwürfe"},
		{"Archive", imap.MailboxAttrArchive, "Archiv"},
		{"SENT ITEMS", imap.MailboxAttrSent, "Gesendet"},
		{"junk e-mail", imap.MailboxAttrJunk, "Spam"},
	}
	withRoles := mustNew(t, germanTarget(), Options{})
	without := mustNew(t, Target{Delim: '/'}, Options{})
	for _, tc := range tests {
		t.Run(tc.name+" maps onto target special-use folder", func(t *testing.T) {
			got := withRoles.Map(Folder{Name: tc.name, Delim: '/'})
			check(t, got, want{target: tc.dst, renamed: tc.name != tc.dst, reason: "special-use " + string(tc.role), role: tc.role})
		})
		t.Run(tc.name+" keeps its name when target has no such folder", func(t *testing.T) {
			check(t, without.Map(Folder{Name: tc.name, Delim: '/'}), want{target: tc.name, role: tc.role})
		})
	}
}

func TestMapSpecialUseRules(t *testing.T) {
	sent := []imap.MailboxAttr{imap.MailboxAttrSent}
	tests := []struct {
		name string
		f    Folder
		want want
	}{
		{"well-known name below top level is ordinary", Folder{Name: "Projects/Sent Items", Delim: '/'},
			want{target: "Projects/Sent Items"}},
		{"children of a special-use folder follow it", Folder{Name: "Sent Items/2019", Delim: '/'},
			want{target: "Gesendet/2019", renamed: true, reason: "special-use"}},
		{"attribute maps any name", Folder{Name: "Postausgang erledigt", Delim: '/', Attrs: sent},
			want{target: "Gesendet", renamed: true, reason: "special-use", role: imap.MailboxAttrSent}},
		{"attribute is matched case-insensitively", Folder{Name: "Müll", Delim: '/', Attrs: []imap.MailboxAttr{"\\trash"}},
			want{target: "Papierkorb", renamed: true, reason: "special-use", role: imap.MailboxAttrTrash}},
		{"attribute counts below top level", Folder{Name: "INBOX/Sent", Delim: '/', Attrs: sent},
			want{target: "Gesendet", renamed: true, reason: "special-use", role: imap.MailboxAttrSent}},
		{"attribute beats well-known name", Folder{Name: "Trash", Delim: '/', Attrs: sent},
			want{target: "Gesendet", renamed: true, reason: "special-use", role: imap.MailboxAttrSent}},
		{"All attribute maps onto target All", Folder{Name: "All Mail", Delim: '/', Attrs: []imap.MailboxAttr{imap.MailboxAttrAll}},
			want{target: "Alle", renamed: true, reason: "special-use", role: imap.MailboxAttrAll}},
		{"Flagged attribute maps onto target Flagged", Folder{Name: "Starred", Delim: '/', Attrs: []imap.MailboxAttr{imap.MailboxAttrFlagged}},
			want{target: "Markiert", renamed: true, reason: "special-use", role: imap.MailboxAttrFlagged}},
		{"non-special attributes are ignored", Folder{Name: "Work", Delim: '/', Attrs: []imap.MailboxAttr{imap.MailboxAttrHasChildren}},
			want{target: "Work"}},
	}
	m := mustNew(t, germanTarget(), Options{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { check(t, m.Map(tc.f), tc.want) })
	}
}

func TestMapInbox(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want want
	}{
		{"INBOX maps to INBOX", "INBOX", want{target: "INBOX"}},
		{"INBOX is case-insensitive", "inbox", want{target: "INBOX"}},
		{"INBOX children keep their path", "Inbox/Kunden/A.G.", want{target: "INBOX.Kunden.A_G_", renamed: true, reason: "target delimiter"}},
		{"INBOX below top level is ordinary", "Archiv/inbox", want{target: "Archiv.inbox"}},
	}
	m := mustNew(t, Target{Delim: '.', Folders: []Folder{{Name: "INBOX", Attrs: []imap.MailboxAttr{imap.MailboxAttrSent}}}}, Options{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { check(t, m.Map(Folder{Name: tc.in, Delim: '/'}), tc.want) })
	}
}

func TestMapUserTable(t *testing.T) {
	table := map[string]string{
		"Sent Items":          "Altes Gesendet",
		"INBOX":               "Alter Posteingang",
		"Old/Projects":        "Projekte",
		"Old/Projects/Secret": "Geheim/Projekte",
		"Kunden":              "inbox/Kunden",
	}
	tests := []struct {
		name string
		in   string
		want want
	}{
		{"table overrides special-use", "Sent Items", want{target: "Altes Gesendet", renamed: true, reason: "user table", role: imap.MailboxAttrSent}},
		{"table overrides INBOX", "INBOX", want{target: "Alter Posteingang", renamed: true, reason: "user table"}},
		{"table prefix applies to children", "Old/Projects/X/Y", want{target: "Projekte/X/Y", renamed: true, reason: `user table maps "Old/Projects"`}},
		{"more specific table entry wins", "Old/Projects/Secret/Z", want{target: "Geheim/Projekte/Z", renamed: true, reason: `"Old/Projects/Secret"`}},
		{"table key is matched exactly", "old/projects/X", want{target: "old/projects/X"}},
		{"table prefix needs a delimiter boundary", "Old/ProjectsX", want{target: "Old/ProjectsX"}},
		{"table target INBOX is spelled canonically", "Kunden", want{target: "INBOX/Kunden", renamed: true, reason: "user table"}},
	}
	m := mustNew(t, germanTarget(), Options{Table: table})
	table["Sent Items"] = "changed after New"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { check(t, m.Map(Folder{Name: tc.in, Delim: '/'}), tc.want) })
	}
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	tests := []struct {
		name  string
		delim rune
		opts  Options
		err   error
	}{
		{"flat target", 0, Options{}, ErrInvalidDelimiter},
		{"letter delimiter", 'x', Options{}, ErrInvalidDelimiter},
		{"ampersand delimiter", '&', Options{}, ErrInvalidDelimiter},
		{"wildcard delimiter", '%', Options{}, ErrInvalidDelimiter},
		{"non-ASCII delimiter", '·', Options{}, ErrInvalidDelimiter},
		{"substitute containing delimiter", '.', Options{Substitute: "a.b"}, ErrInvalidSubstitute},
		{"substitute of dots", '/', Options{Substitute: ".."}, ErrInvalidSubstitute},
		{"substitute with control", '/', Options{Substitute: "\t"}, ErrInvalidSubstitute},
		{"substitute starting with hash", '/', Options{Substitute: "#"}, ErrInvalidSubstitute},
		{"empty table key", '/', Options{Table: map[string]string{"": "x"}}, ErrInvalidTable},
		{"table target with empty level", '.', Options{Table: map[string]string{"a": "x..y"}}, ErrInvalidTable},
		{"table target with trailing delimiter", '.', Options{Table: map[string]string{"a": "x."}}, ErrInvalidTable},
		{"empty table target", '.', Options{Table: map[string]string{"a": ""}}, ErrInvalidTable},
		{"table target namespace prefix", '/', Options{Table: map[string]string{"a": "#x"}}, ErrInvalidTable},
		{"table target dot level", '/', Options{Table: map[string]string{"a": "x/.."}}, ErrInvalidTable},
		{"table target control char", '/', Options{Table: map[string]string{"a": "x\ny"}}, ErrInvalidTable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Target{Delim: tc.delim}, tc.opts)
			if !errors.Is(err, tc.err) {
				t.Fatalf("New error = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestNewPicksSmallestTargetNameForDuplicateRole(t *testing.T) {
	sent := []imap.MailboxAttr{imap.MailboxAttrSent}
	m := mustNew(t, Target{Delim: '/', Folders: []Folder{{Name: "Sent", Attrs: sent}, {Name: "Gesendet", Attrs: sent}}}, Options{})
	check(t, m.Map(Folder{Name: "Sent Items", Delim: '/'}),
		want{target: "Gesendet", renamed: true, reason: "special-use", role: imap.MailboxAttrSent})
}
