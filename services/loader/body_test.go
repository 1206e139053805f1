package loader

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/subject"
)

// A large body the object store holds other than its record says (lost,
// altered, a chunk twice) is never appended: the append stops before the
// literal's last byte. Found so once, it is read again on a later
// attempt; unsound for the whole grace period, the message is
// dead-lettered with the reason and the rest of the mailbox is loaded.
func TestALargeBodyTheObjectStoreHoldsWrongIsDeadLetteredAndTheRestLoaded(t *testing.T) {
	big := func(c string) string { return "Subject: big\r\n\r\n" + strings.Repeat(c, 300_000) }
	for _, tc := range []struct {
		name string
		// spoil does to the stored body of UID 12 what a broker that
		// lost or altered data did.
		spoil func(f *fixture, name string)
	}{
		{"gone", func(f *fixture, name string) {
			if err := f.b.Bodies.Delete(f.ctx, name); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"other bytes of the same size", func(f *fixture, name string) {
			if _, err := f.b.Bodies.PutString(f.ctx, name, big("y")); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"a chunk stored twice", func(f *fixture, name string) {
			info, err := f.b.Bodies.GetInfo(f.ctx, name)
			if err != nil {
				f.t.Fatal(err)
			}
			if _, err := f.b.JS.Publish(f.ctx, "$O."+broker.StoreBodies+".C."+info.NUID, []byte(strings.Repeat("x", 128<<10))); err != nil {
				f.t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Dovecot: the in-memory server stores what it got of a
			// literal the client cut off.
			f := newFixtureOn(t, startRigDovecot(t, 0).Addr)
			date := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
			msgs := []msg{
				{folder: "INBOX", uid: 10, body: "Subject: small\r\n\r\nhello\r\n", date: date},
				{folder: "INBOX", uid: 11, body: big("a"), date: date},
				{folder: "INBOX", uid: 12, body: big("x"), date: date},
				{folder: "INBOX", uid: 13, body: big("b"), date: date},
				{folder: "INBOX", uid: 14, body: "Subject: small\r\n\r\nbye\r\n", date: date},
			}
			j := f.publishPass(msgs, "")
			tc.spoil(f, "obj-12-")
			// Found unsound once: read again later, not dead-lettered.
			if _, err := f.svc.Load(f.ctx, j); !errors.Is(err, errBodyCorrupt) {
				t.Fatalf("first load: %v, want errBodyCorrupt", err)
			}
			st, err := f.b.JS.Stream(f.ctx, broker.StreamDead)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.GetLastMsgForSubject(f.ctx, subject.Dead(srcUser)); !errors.Is(err, jetstream.ErrMsgNotFound) {
				t.Fatalf("dead-lettered at the first unsound read: %v", err)
			}
			// Unsound for the whole grace period: dead-lettered.
			grace := time.Duration(0)
			f.svc.unsoundGrace = &grace
			res, err := f.svc.Load(f.ctx, j)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if res.Appended != 4 || res.Dead != 1 {
				t.Errorf("appended %d, dead %d (over both loads); want 4 and 1", res.Appended, res.Dead)
			}
			f.checkTarget("INBOX", append(msgs[:2:2], msgs[3:]...))
			raw, err := st.GetLastMsgForSubject(f.ctx, subject.Dead(srcUser))
			if err != nil {
				t.Fatalf("no dead letter: %v", err)
			}
			var dl DeadLetter
			if err := json.Unmarshal(raw.Data, &dl); err != nil {
				t.Fatal(err)
			}
			if dl.UID != 12 || !strings.Contains(dl.Reason, "does not match its record") || !strings.Contains(dl.Reason, "obj-12-") {
				t.Errorf("dead letter: uid %d, reason %q; want uid 12 and the body's fault", dl.UID, dl.Reason)
			}
		})
	}
}
