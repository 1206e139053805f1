package imapdial

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/foldermap"
)

// xlistScript is a MailEnable-era server (Dovecot does not implement
// XLIST, so a scripted one stands in): it greets with caps, takes any
// LOGIN, answers XLIST with xlist (or refuses it when xlist is empty),
// answers LIST with two folders, and records the commands it got.
func xlistScript(caps string, xlist []string, seen *[]string, mu *sync.Mutex) func(p *peer) error {
	return func(p *peer) error {
		if err := p.send("* OK [CAPABILITY " + caps + "] legacy ready"); err != nil {
			return err
		}
		for {
			l, err := p.read()
			if err != nil {
				return err
			}
			tag, cmd, _ := strings.Cut(l, " ")
			verb, _, _ := strings.Cut(cmd, " ")
			mu.Lock()
			*seen = append(*seen, strings.ToUpper(verb))
			mu.Unlock()
			switch strings.ToUpper(verb) {
			case "CAPABILITY":
				err = p.send("* CAPABILITY "+caps, tag+" OK done")
			case "LOGIN":
				err = p.send(tag + " OK logged in")
			case "XLIST":
				if xlist == nil {
					err = p.send(tag + " BAD unknown command")
					break
				}
				for _, x := range xlist {
					if _, err = p.conn.Write([]byte(x)); err != nil {
						return err
					}
				}
				err = p.send(tag + " OK XLIST completed")
			case "LIST":
				err = p.send(`* LIST (\HasNoChildren) "/" "Sent Items"`, `* LIST (\HasNoChildren) "/" INBOX`, tag+" OK LIST completed")
			case "LOGOUT":
				return p.send("* BYE bye", tag+" OK done")
			default:
				err = p.send(tag + " BAD unexpected " + verb)
			}
			if err != nil {
				return err
			}
		}
	}
}

// A server with XLIST but no SPECIAL-USE says its folders' roles in XLIST
// answers, whatever form a name takes (quoted, literal, atom, modified
// UTF-7), and the connection is a working client afterwards. A server with
// SPECIAL-USE, or without XLIST, is never sent XLIST; one that refuses it
// gives no roles and no error.
func TestDialRolesLearnsFolderRolesFromXListOnlyWhereSpecialUseIsMissing(t *testing.T) {
	answer := []string{
		"* XLIST (\\HasNoChildren \\Inbox) \"/\" \"Posteingang\"\r\n",
		"* XLIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n",
		"* XLIST (\\HasNoChildren \\Trash) \"/\" {13}\r\nDeleted Items\r\n",
		"* XLIST (\\HasNoChildren \\Drafts) \"/\" Drafts\r\n",
		"* XLIST (\\HasNoChildren \\Spam) \"/\" \"Junk E-mail\"\r\n",
		"* XLIST (\\HasNoChildren \\AllMail) \"/\" \"[Gmail]/All Mail\"\r\n",
		"* XLIST (\\HasNoChildren \\Starred) \"/\" Starred\r\n",
		"* XLIST (\\HasNoChildren \\Important) NIL Important\r\n",
		"* XLIST (\\HasChildren \\NoSelect) \"/\" \"Archive\"\r\n",
		"* XLIST (\\HasNoChildren \\sent) \"\\\\\" \"Gesendete Objekte &AOQ-\"\r\n",
		"* XLIST (\\HasNoChildren) \"/\" \"Quote \\\"in\\\" name\"\r\n",
		"* LIST (\\HasNoChildren \\Archive) \"/\" Archiv\r\n", // as Dovecot answers
		"* 3 EXISTS\r\n",
	}
	want := Roles{
		"Sent Items":          imap.MailboxAttrSent,
		"Deleted Items":       imap.MailboxAttrTrash,
		"Drafts":              imap.MailboxAttrDrafts,
		"Junk E-mail":         imap.MailboxAttrJunk,
		"[Gmail]/All Mail":    imap.MailboxAttrAll,
		"Gesendete Objekte ä": imap.MailboxAttrSent,
		"Archiv":              imap.MailboxAttrArchive,
	}
	for _, tc := range []struct {
		name      string
		caps      string
		xlist     []string
		want      Roles
		wantXList bool
	}{
		{name: "MailEnable 4.x-9.x: XLIST without SPECIAL-USE", caps: "IMAP4rev1 IMAP4 CHILDREN IDLE XLIST AUTH=LOGIN", xlist: answer, want: want, wantXList: true},
		{name: "MailEnable 10.x: SPECIAL-USE wins", caps: "IMAP4rev1 IMAP4 CHILDREN IDLE XLIST UIDPLUS SPECIAL-USE AUTH=LOGIN", xlist: answer},
		{name: "no XLIST", caps: "IMAP4rev1 IMAP4 CHILDREN IDLE AUTH=LOGIN", xlist: answer},
		{name: "XLIST advertised but refused", caps: "IMAP4rev1 XLIST AUTH=LOGIN", wantXList: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var seen []string
			addr := fakeServer(t, nil, xlistScript(tc.caps, tc.xlist, &seen, &mu))
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			s := config.IMAP{Address: addr, TLS: config.TLSNone, DialTimeout: config.Duration(bound), CommandTimeout: config.Duration(bound)}
			c, roles, err := DialRoles(ctx, s, Credentials{User: "u", Password: "pw"}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if !maps.Equal(roles, tc.want) {
				t.Errorf("roles %v, want %v", roles, tc.want)
			}
			list, err := c.List("", "*", nil).Collect()
			if err != nil || len(list) != 2 {
				t.Fatalf("LIST after XLIST: %v %v", list, err)
			}
			if got := roles.Add(list[0].Mailbox, list[0].Attrs); tc.want != nil && !slices.Contains(got, imap.MailboxAttrSent) {
				t.Errorf("Add(%q) = %v, want \\Sent added", list[0].Mailbox, got)
			}
			_ = c.Logout().Wait()
			mu.Lock()
			defer mu.Unlock()
			if slices.Contains(seen, "XLIST") != tc.wantXList {
				t.Errorf("commands %v: XLIST sent %v, want %v", seen, !tc.wantXList, tc.wantXList)
			}
		})
	}
}

// An XLIST answer line never panics the parser, and any UTF-8 name sent
// in modified UTF-7, quoted or as a literal, reads back as itself.
func FuzzParseXList(f *testing.F) {
	f.Add(`(\HasNoChildren \Sent) "/" "Sent Items"`, "Gesendete Objekte ä", false)
	f.Add(`(\Trash) "/" {13}`, "Deleted Items", true)
	f.Add(`() NIL INBOX`, `Quote "in" \name`, false)
	f.Add(`(\Spam) "\\" {99999999999}`, "", true)
	f.Fuzz(func(t *testing.T, raw, name string, literal bool) {
		_, _, _ = parseXList(raw, bufio.NewReader(strings.NewReader(raw+"\r\n")))
		if !utf8.ValidString(name) || name == "" {
			return
		}
		enc := foldermap.EncodeUTF7(name)
		line, rest := `(\HasNoChildren \Sent) "/" `+string(AppendQuoted(nil, enc)), ""
		if literal {
			line, rest = fmt.Sprintf(`(\HasNoChildren \Sent) "/" {%d}`, len(enc)), enc+"\r\n"
		}
		attrs, got, err := parseXList(line, bufio.NewReader(strings.NewReader(rest)))
		if err != nil || got != name || xlistRole(attrs) != imap.MailboxAttrSent {
			t.Fatalf("%q (sent as %q %q): got %q, %v, %v", name, line, rest, got, attrs, err)
		}
	})
}
