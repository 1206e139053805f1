package foldermap

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// A hosted provider (OpenSRS) makes Sent, Trash, Drafts and Spam for every
// mailbox and may list them without special-use attributes: the legacy
// roles land in those folders, not beside them, and the mapping says why.
func TestRolesLandInTheTargetsWellKnownFoldersWhenItListsNoSpecialUse(t *testing.T) {
	provider := []Folder{{Name: "INBOX"}, {Name: "Sent"}, {Name: "Trash"}, {Name: "Drafts"}, {Name: "Spam"}, {Name: "Projects"}}
	src := []Folder{
		{Name: "Sent Items", Delim: '/', Attrs: []imap.MailboxAttr{imap.MailboxAttrSent}},
		{Name: "Deleted Items", Delim: '/'},
		{Name: "Junk E-mail", Delim: '/'},
		{Name: "Drafts", Delim: '/'},
		{Name: "Sent Items/2019", Delim: '/'},
		{Name: "Archive", Delim: '/'},
	}
	tests := []struct {
		name string
		tg   Target
		want map[string]outcome
	}{
		{
			name: "by the target's names",
			tg:   Target{Delim: '.', Folders: provider},
			want: map[string]outcome{
				"Sent Items":      {target: "Sent", renamed: true, reason: `existing folder "Sent" by its name`},
				"Sent Items/2019": {target: "Sent.2019", renamed: true},
				"Deleted Items":   {target: "Trash", renamed: true, reason: `existing folder "Trash"`},
				"Junk E-mail":     {target: "Spam", renamed: true, reason: `existing folder "Spam"`},
				"Drafts":          {target: "Drafts"},
				// No Archive at the target: created under its own name.
				"Archive": {target: "Archive"},
			},
		},
		{
			name: "the provider's spam folder before the names",
			tg:   Target{Delim: '.', Folders: append(provider, Folder{Name: "Junk Mail"}), Special: map[imap.MailboxAttr]string{imap.MailboxAttrJunk: "Junk Mail"}},
			want: map[string]outcome{
				"Junk E-mail": {target: "Junk Mail", renamed: true, reason: "which the provider names for it"},
				"Sent Items":  {target: "Sent", renamed: true},
			},
		},
		{
			name: "attributes when the target has them: names are not guessed",
			tg: Target{Delim: '.', Folders: []Folder{{Name: "Sent"}, {Name: "Gesendet", Attrs: []imap.MailboxAttr{imap.MailboxAttrSent}}, {Name: "Trash"}},
				Special: map[imap.MailboxAttr]string{imap.MailboxAttrJunk: "Junk Mail"}},
			want: map[string]outcome{
				"Sent Items":    {target: "Gesendet", renamed: true, reason: `special-use \Sent mapped onto target folder "Gesendet"`},
				"Deleted Items": {target: "Deleted Items"},
				"Junk E-mail":   {target: "Junk E-mail"},
			},
		},
		{
			name: "only existing top-level folders count",
			tg:   Target{Delim: '.', Folders: []Folder{{Name: "Old.Sent"}, {Name: "Trash", Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}}}},
			want: map[string]outcome{
				"Sent Items":    {target: "Sent Items"},
				"Deleted Items": {target: "Deleted Items"},
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
			for _, r := range m.MapAll(src) {
				got[r.Source] = r
			}
			for source, w := range tt.want {
				r := got[source]
				if r.Target != w.target || r.Renamed != w.renamed {
					t.Errorf("%s -> %q (renamed %v), want %q (renamed %v); reason %q", source, r.Target, r.Renamed, w.target, w.renamed, r.Reason)
				}
				if w.reason != "" && !strings.Contains(r.Reason, w.reason) {
					t.Errorf("%s: reason %q, want it to say %q", source, r.Reason, w.reason)
				}
			}
		})
	}
}
