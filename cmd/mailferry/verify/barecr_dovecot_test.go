package verify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

// TestVerifyNamesAMessageWhoseBareCRDovecotDroppedAsAltered appends
// messages with bare CRs to a real Dovecot as the loader would, from a
// source that keeps every byte: Dovecot drops the CR that ends a message
// (and keeps one inside a line), so that copy has other bytes. Without the
// loader's ledger, verify must still recognise it, by its loose form, as
// the message altered and name it, not report one missing and one extra.
func TestVerifyNamesAMessageWhoseBareCRDovecotDroppedAsAltered(t *testing.T) {
	const user = "carol@example.test"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := dovecottest.StartT(t, dovecottest.Options{Users: map[string]string{user: "pw"}, PlainPasswords: true})
	src := imaptest.NewUser(t, user, "pw")
	srcAddr := imaptest.Serve(t, src, imap.CapSet{imap.CapIMAP4rev1: {}}, nil)

	msg := func(subject, body string) string {
		return "From: c@old.example\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@old.example>\r\n\r\n" + body
	}
	at := time.Date(2016, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name, body string
		altered    bool
	}{
		{"ends-with-cr", "the last byte is a CR\r", true},
		{"ends-with-crs", "the last bytes are CRs\r\n\r\r", true},
		{"bare-cr-inside", "a bare\rCR inside a line\r\n", false},
		{"crcrlf-and-last-cr", "CRCRLF\r\r\nthen a last CR\r", true},
	}
	c, err := imapclient.DialInsecure(srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	for i, tt := range tests {
		b := msg(tt.name, tt.body)
		appendTo(t, src, "INBOX", b, at.Add(time.Duration(i)*time.Second))
		cmd := c.Append("INBOX", int64(len(b)), &imap.AppendOptions{Time: at.Add(time.Duration(i) * time.Second)})
		if _, err := cmd.Write([]byte(b)); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}

	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf("source: {address: %q, tls: none, auth: user}\ntarget: {address: %q, tls: none, auth: user}\n", srcAddr, srv.Addr)), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := Mailbox(ctx, cfg, job.Mailbox{SourceUser: user, TargetUser: user, SourcePasswordFile: pw, TargetPasswordFile: pw})
	if r.Error != "" || len(r.Folders) != 1 {
		t.Fatalf("report %+v", r)
	}
	got := map[string]Diff{}
	for _, d := range r.Folders[0].Differences {
		if _, dup := got[d.Subject]; dup || d.Kind != KindAltered {
			t.Errorf("difference %+v: want each message altered at most once", d)
		}
		got[d.Subject] = d
	}
	for i, tt := range tests {
		d, ok := got[tt.name]
		if ok != tt.altered {
			t.Errorf("%s: altered %v, want %v (differences %+v)", tt.name, ok, tt.altered, r.Folders[0].Differences)
			continue
		}
		if ok && (d.UID != uint32(i+1) || d.TargetUID == 0 || d.MessageID != "<"+tt.name+"@old.example>" || d.Size != int64(len(msg(tt.name, tt.body))) ||
			!strings.Contains(d.Got, "bare CRs dropped")) {
			t.Errorf("%s: %+v, want source uid %d named, with its copy and the rewrite", tt.name, d, i+1)
		}
	}
	if r.OK {
		t.Error("an altered message verifies OK; it is still a difference")
	}
}
