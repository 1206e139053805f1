package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/extractor"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

type literal struct {
	*bytes.Reader
	n int64
}

func (l literal) Size() int64 { return l.n }

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestVerifyNamesTheMessageATargetAlteredInAPartlyRefusedBatch runs the
// extractor, the loader and verify on a batch that a real Dovecot partly
// refuses (one message over quota_max_mail_size: the MULTIAPPEND is
// refused whole, then that one message alone) while storing another
// altered (its NUL byte becomes 0x80, same size). The source is an
// in-memory server, which keeps NUL bytes as they are (Dovecot would hand
// out 0x80 already). Nothing may be appended twice, and verify must name
// the altered message as altered, with both hashes, not as missing and
// extra.
func TestVerifyNamesTheMessageATargetAlteredInAPartlyRefusedBatch(t *testing.T) {
	const (
		srcUser = "alice@old.example"
		tgtUser = "alice@new.example"
		limit   = 20_000
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := dovecottest.StartT(t, dovecottest.Options{Separator: '.', Users: map[string]string{tgtUser: "tgt-pw"}, PlainPasswords: true, MaxMailSize: limit})

	u := imaptest.NewUser(t, srcUser, "src-pw")
	msg := func(subject, text string) []byte {
		return []byte("From: a@old.example\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@old.example>\r\n\r\n" + text + "\r\n")
	}
	nul := msg("nul", "a NUL \x00 in the body")
	big := msg("big", strings.Repeat("0123456789abcdef ", 2*limit/17))
	bodies := [][]byte{msg("one", "1"), msg("two", "2"), nul, big, msg("three", "3")}
	for i, b := range bodies {
		if _, err := u.Append("INBOX", literal{bytes.NewReader(b), int64(len(b))}, &imap.AppendOptions{
			Flags: []imap.Flag{imap.FlagSeen}, Time: time.Date(2016, 1, 2, 3, 4, i, 0, time.UTC)}); err != nil {
			t.Fatal(err)
		}
	}
	srcAddr := imaptest.Serve(t, u, imap.CapSet{imap.CapIMAP4rev1: {}}, nil)

	dir := t.TempDir()
	srcPW, tgtPW := filepath.Join(dir, "src.pw"), filepath.Join(dir, "tgt.pw")
	for p, pw := range map[string]string{srcPW: "src-pw", tgtPW: "tgt-pw"} {
		if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	yaml := fmt.Sprintf("nats: {data_dir: %s}\nsource: {address: %q, tls: none, auth: user}\ntarget: {address: %q, tls: none, auth: user}\nloader: {batch_messages: 20}\n",
		filepath.Join(dir, "nats"), srcAddr, srv.Addr)
	cfg, b := imaptest.Broker(t, ctx, yaml, dir)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	mb := job.Mailbox{SourceUser: srcUser, TargetUser: tgtUser, SourcePasswordFile: srcPW, TargetPasswordFile: tgtPW}
	j := &job.Job{Mailbox: mb, Pass: "p1"}
	es, err := extractor.LoadSettings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := loader.LoadSettings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&extractor.Service{Config: cfg, Settings: es, Broker: b, Log: log}).Extract(ctx, j); err != nil {
		t.Fatal(err)
	}
	res, err := (&loader.Service{Config: cfg, Settings: ls, Broker: b, Log: log, IdleFlush: 20 * time.Millisecond}).Load(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	if res.Appended != 4 || res.Dead != 1 {
		t.Errorf("appended %d, dead-lettered %d; want 4 and 1", res.Appended, res.Dead)
	}

	r := Mailbox(ctx, cfg, mb, WithLedger(b.Ledger))
	if r.Error != "" || len(r.Folders) != 1 {
		t.Fatalf("report %+v", r)
	}
	f := r.Folders[0]
	if f.SourceMessages != 5 || f.TargetMessages != 4 {
		t.Errorf("source %d, target %d messages; want 5 and 4 (nothing appended twice, the big one refused)", f.SourceMessages, f.TargetMessages)
	}
	var kinds []string
	for _, d := range f.Differences {
		kinds = append(kinds, d.Kind)
		switch d.Kind {
		case "altered":
			altered := bytes.ReplaceAll(nul, []byte{0}, []byte{0x80})
			if d.UID != 3 || d.SHA256 != sha(nul) || d.StoredSHA256 != sha(altered) || d.TargetUID == 0 || !strings.Contains(d.Got, "as the loader recorded") {
				t.Errorf("altered %+v: want source uid 3, sha256 %s, stored %s, as recorded", d, sha(nul), sha(altered))
			}
		case "missing":
			if d.UID != 4 || d.SHA256 != sha(big) {
				t.Errorf("missing %+v: want source uid 4, the refused one", d)
			}
		}
	}
	slices.Sort(kinds)
	if !slices.Equal(kinds, []string{"altered", "missing"}) {
		t.Errorf("differences %+v, want one altered and one missing", f.Differences)
	}
	var text strings.Builder
	(&Report{Mailboxes: []MailboxReport{r}}).WriteText(&text)
	if !strings.Contains(text.String(), "altered INBOX uid 3") {
		t.Errorf("text report does not name the altered message:\n%s", text.String())
	}

	// Without the ledger the copy is still recognised, by its loose
	// form: NUL turned into 0x80 is a rewrite Dovecot is known for.
	kinds = nil
	for _, d := range Mailbox(ctx, cfg, mb).Folders[0].Differences {
		kinds = append(kinds, d.Kind)
		if d.Kind == "altered" && (d.UID != 3 || !strings.Contains(d.Got, "NUL or 8-bit header bytes rewritten")) {
			t.Errorf("without the ledger: altered %+v, want uid 3 with the rewrite named", d)
		}
	}
	slices.Sort(kinds)
	if !slices.Equal(kinds, []string{"altered", "missing"}) {
		t.Errorf("without the ledger: differences %v, want altered and missing", kinds)
	}
}
