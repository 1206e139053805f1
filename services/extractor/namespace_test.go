package extractor

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

// prefixSession is a server whose personal namespace is "INBOX/", and
// counts the NAMESPACE commands it answers.
type prefixSession struct {
	*imapmemserver.UserSession
	asked *atomic.Int32
}

func (p prefixSession) Namespace() (*imap.NamespaceData, error) {
	p.asked.Add(1)
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "INBOX/", Delim: '/'}}}, nil
}

// The listing carries the source's personal namespace prefix, asked with
// NAMESPACE only where the server advertises it (MailEnable does not),
// and the roles XLIST gave as the folders' special-use attributes.
func TestTheListingCarriesTheNamespacePrefixAndXListRoles(t *testing.T) {
	for _, tc := range []struct {
		name       string
		caps       imap.CapSet
		wantPrefix string
		wantAsked  int32
	}{
		{name: "NAMESPACE advertised", caps: imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapNamespace: {}}, wantPrefix: "INBOX/", wantAsked: 1},
		{name: "no NAMESPACE, as MailEnable", caps: imap.CapSet{imap.CapIMAP4rev1: {}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			u := imaptest.NewUser(t, user, "pw")
			for _, f := range []string{"INBOX/Gesendet", "INBOX/Archive"} {
				if err := u.Create(f, nil); err != nil {
					t.Fatal(err)
				}
			}
			var asked atomic.Int32
			addr := imaptest.Serve(t, u, tc.caps, func(s *imapmemserver.UserSession) imapserver.Session { return prefixSession{s, &asked} })
			c, err := imapdial.Dial(ctx, config.IMAP{Address: addr, TLS: config.TLSNone}, imapdial.Credentials{User: user, Password: "pw"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			folders, err := listFolders(ctx, c, 10*time.Second, imapdial.Roles{"INBOX/Gesendet": imap.MailboxAttrSent, "Posteingang": imap.MailboxAttrSent})
			if err != nil {
				t.Fatal(err)
			}
			if len(folders) != 3 {
				t.Fatalf("listed %+v, want INBOX and two folders", folders)
			}
			for _, f := range folders {
				if f.Prefix != tc.wantPrefix {
					t.Errorf("%s: prefix %q, want %q", f.Name, f.Prefix, tc.wantPrefix)
				}
				if sent := slices.Contains(f.Attrs, string(imap.MailboxAttrSent)); sent != (f.Name == "INBOX/Gesendet") {
					t.Errorf("%s: attributes %v", f.Name, f.Attrs)
				}
			}
			if n := asked.Load(); n != tc.wantAsked {
				t.Errorf("NAMESPACE asked %d times, want %d", n, tc.wantAsked)
			}
		})
	}
}
