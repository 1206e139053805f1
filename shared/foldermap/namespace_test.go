package foldermap

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// prefixed is a source listing under the personal namespace "INBOX." as
// legacy servers of MailEnable's era (Courier, Dovecot with prefix) list it.
func prefixed(names ...string) []Folder {
	out := make([]Folder, len(names))
	for i, n := range names {
		out[i] = Folder{Name: n, Delim: '.', Prefix: "INBOX."}
	}
	return out
}

// A source's personal namespace prefix is not part of a folder's name:
// it is taken off (and said so), roles are recognised under it, INBOX
// stays INBOX, and a target's own prefix goes before every other name.
func TestNamespacePrefixesAreTakenOffTheSourceAndPutOnTheTarget(t *testing.T) {
	tests := []struct {
		name string
		tg   Target
		in   []Folder
		want map[string]outcome
	}{
		{
			name: "prefixed source onto a / target with special-use folders",
			tg:   Target{Delim: '/', Folders: []Folder{{Name: "Sent", Attrs: []imap.MailboxAttr{imap.MailboxAttrSent}}, {Name: "Drafts", Attrs: []imap.MailboxAttr{imap.MailboxAttrDrafts}}}},
			in:   prefixed("INBOX", "INBOX.Archive.2010", "INBOX.Sent Items", "INBOX.Drafts", "INBOX.Sent Items.2019"),
			want: map[string]outcome{
				"INBOX":                 {target: "INBOX"},
				"INBOX.Archive.2010":    {target: "Archive/2010", renamed: true, reason: `source namespace prefix "INBOX." removed`},
				"INBOX.Sent Items":      {target: "Sent", renamed: true, reason: `source namespace prefix "INBOX." removed; special-use \Sent mapped onto target folder "Sent"`},
				"INBOX.Drafts":          {target: "Drafts", renamed: true, reason: `source namespace prefix "INBOX." removed`},
				"INBOX.Sent Items.2019": {target: "Sent/2019", renamed: true, reason: `source namespace prefix "INBOX." removed`},
			},
		},
		{
			name: "prefixed source onto a . target: the same levels",
			tg:   Target{Delim: '.'},
			in:   prefixed("inbox", "INBOX.Archive.2010"),
			want: map[string]outcome{
				"inbox":              {target: "INBOX"},
				"INBOX.Archive.2010": {target: "Archive.2010", renamed: true, reason: `prefix "INBOX." removed`},
			},
		},
		{
			name: "prefixed source onto a prefixed target: nothing renamed",
			tg: Target{Delim: '.', Prefix: "INBOX.", Folders: []Folder{
				{Name: "INBOX"}, {Name: "INBOX.Sent", Attrs: []imap.MailboxAttr{imap.MailboxAttrSent}}, {Name: "INBOX.Drafts", Attrs: []imap.MailboxAttr{imap.MailboxAttrDrafts}},
			}},
			in: prefixed("INBOX", "INBOX.Archive.2010", "INBOX.Sent Items", "INBOX.Drafts"),
			want: map[string]outcome{
				"INBOX":              {target: "INBOX"},
				"INBOX.Archive.2010": {target: "INBOX.Archive.2010"},
				"INBOX.Sent Items":   {target: "INBOX.Sent", renamed: true, reason: `special-use \Sent mapped onto target folder "INBOX.Sent"`},
				"INBOX.Drafts":       {target: "INBOX.Drafts"},
			},
		},
		{
			name: "plain source onto a prefixed target listing no special-use",
			tg:   Target{Delim: '/', Prefix: "INBOX/", Folders: []Folder{{Name: "INBOX"}, {Name: "INBOX/Sent"}, {Name: "INBOX/Trash"}}},
			in:   folders('/', "INBOX", "Archive/2010", "Sent Items", "Deleted Items", "Drafts"),
			want: map[string]outcome{
				"INBOX":         {target: "INBOX"},
				"Archive/2010":  {target: "INBOX/Archive/2010", renamed: true, reason: `target namespace prefix "INBOX/" added`},
				"Sent Items":    {target: "INBOX/Sent", renamed: true, reason: `existing folder "INBOX/Sent" by its name`},
				"Deleted Items": {target: "INBOX/Trash", renamed: true},
				"Drafts":        {target: "INBOX/Drafts", renamed: true, reason: `target namespace prefix "INBOX/" added`},
			},
		},
		{
			name: "a folder named INBOX.foo on a server without a prefix is left alone",
			tg:   Target{Delim: '/'},
			in:   folders('.', "INBOX", "INBOX.foo", "INBOX.Sent Items"),
			want: map[string]outcome{
				"INBOX":            {target: "INBOX"},
				"INBOX.foo":        {target: "INBOX/foo"},
				"INBOX.Sent Items": {target: "INBOX/Sent Items"},
			},
		},
		{
			name: "names outside the prefix and the prefix's own folder are not under it",
			tg:   Target{Delim: '/'},
			in:   []Folder{{Name: "INBOX.", Delim: '.', Prefix: "INBOX."}, {Name: "Shared.x", Delim: '.', Prefix: "INBOX."}, {Name: "INBOXfoo", Delim: '.', Prefix: "INBOX"}, {Name: "INBOX.bar", Delim: '.', Prefix: "INBOX"}},
			want: map[string]outcome{
				"Shared.x":  {target: "Shared/x"},
				"INBOXfoo":  {target: "INBOXfoo"},
				"INBOX.bar": {target: "bar", renamed: true, reason: `prefix "INBOX" removed`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(tt.tg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]Result{}
			for _, r := range m.MapAll(tt.in) {
				got[r.Source] = r
			}
			for source, w := range tt.want {
				r, ok := got[source]
				if !ok {
					t.Fatalf("%s not mapped: %+v", source, got)
				}
				if r.Target != w.target || r.Renamed != w.renamed {
					t.Errorf("%s -> %q (renamed %v), want %q (renamed %v); reason %q", source, r.Target, r.Renamed, w.target, w.renamed, r.Reason)
				}
				if w.reason != "" && !strings.Contains(r.Reason, w.reason) {
					t.Errorf("%s: reason %q, want it to say %q", source, r.Reason, w.reason)
				}
				if r.Renamed && r.Reason == "" {
					t.Errorf("%s renamed without a reason", source)
				}
			}
			// Map alone agrees with MapAll where nothing collides.
			for _, f := range tt.in {
				if one := m.Map(f); one.Target != got[f.Name].Target {
					t.Errorf("Map(%s) = %q, MapAll %q", f.Name, one.Target, got[f.Name].Target)
				}
			}
		})
	}
}
