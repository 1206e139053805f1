package loader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/record"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

// The tests here load into a real Dovecot 2.3 (and, where an answer
// sequence Dovecot never gives is needed, into Dovecot behind a stand-in
// that answers like Cyrus IMAP), with targets that alter some messages'
// bytes and refuse others in the same batch.

// rig is a loader on an embedded nats-server appending to addr; the test
// plays the extractor. Its helpers have names of their own so the file
// does not depend on loader_test.go's fixture.
type rig struct {
	t    *testing.T
	ctx  context.Context
	b    *broker.Broker
	cfg  *config.Config
	svc  *Service
	addr string // what the loader dials
	real string // the Dovecot behind it
	pw   string
	pass int
	msgs []rigMsg // everything published, for replays
}

// rigMsg is one source message.
type rigMsg struct {
	uid  uint32
	body []byte
}

const rigPassword = "target-pw"

// startRigDovecot starts the target: tgtUser with a plain password and a
// size limit (quota_max_mail_size, answered NO [LIMIT]).
func startRigDovecot(t *testing.T, maxMailSize int64) *dovecottest.Server {
	t.Helper()
	return dovecottest.StartT(t, dovecottest.Options{
		Separator:      '.',
		Users:          map[string]string{tgtUser: rigPassword},
		PlainPasswords: true,
		MaxMailSize:    maxMailSize,
	})
}

// newRig makes a loader appending to addr (Dovecot at real, or a stand-in
// in front of it) in batches of batch messages.
func newRig(t *testing.T, addr, real string, batch int) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	pw := filepath.Join(dir, "target.pw")
	if err := os.WriteFile(pw, []byte(rigPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("nats: {data_dir: %s}\nsource: {auth: user, tls: none}\ntarget: {address: %q, tls: none, auth: user}\nloader: {batch_messages: %d}\n",
		filepath.Join(dir, "nats"), addr, batch)
	cfg, b := imaptest.Broker(t, ctx, yaml, dir)
	r := &rig{t: t, ctx: ctx, b: b, cfg: cfg, addr: addr, real: real, pw: pw}
	r.svc = &Service{Config: cfg, Settings: settingsT(t, cfg), Broker: b, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel), IdleFlush: 20 * time.Millisecond}
	return r
}

func (r *rig) job() *job.Job {
	return &job.Job{Mailbox: job.Mailbox{SourceUser: srcUser, TargetUser: tgtUser, TargetPasswordFile: r.pw}, Pass: fmt.Sprintf("pass%d", r.pass)}
}

// publish publishes a pass of INBOX holding msgs, in order.
func (r *rig) publish(msgs []rigMsg) *job.Job {
	r.t.Helper()
	r.pass++
	j := r.job()
	r.send(record.ListingMsg(&record.Listing{Mailbox: srcUser, TargetUser: tgtUser, Pass: j.Pass,
		Folders: []record.Folder{{Name: "INBOX", Delim: "/", Subscribed: true}}}))
	r.send(record.FolderMsg(&record.Folder{Mailbox: srcUser, TargetUser: tgtUser, Pass: j.Pass, Name: "INBOX", Delim: "/", UIDValidity: 7}))
	var prev uint32
	for _, m := range msgs {
		rec := &record.Message{Mailbox: srcUser, TargetUser: tgtUser, Pass: j.Pass, Folder: "INBOX", Delim: "/",
			UIDValidity: 7, UID: m.uid, PrevUID: prev, Flags: []string{`\Seen`},
			InternalDate: time.Date(2015, 6, 7, 8, 9, int(m.uid%60), 0, time.UTC), Size: int64(len(m.body)), SHA256: sum(m.body)}
		n, err := record.MessageMsg(rec, m.body)
		if err == nil {
			n.Header.Set(nats.MsgIdHdr, fmt.Sprintf("%s.%s", rec.ID(), j.Pass))
		}
		r.send(n, err)
		prev = m.uid
	}
	r.send(record.EndMsg(&record.End{Mailbox: srcUser, TargetUser: tgtUser, Pass: j.Pass}))
	r.msgs = append(r.msgs, msgs...)
	return j
}

func (r *rig) send(m *nats.Msg, err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.b.JS.PublishMsg(r.ctx, m); err != nil {
		r.t.Fatal(err)
	}
}

// stored is a target message.
type stored struct {
	uid  uint32
	body []byte
}

// target reads a target folder straight from Dovecot, in UID order.
func (r *rig) target(folder string) []stored {
	r.t.Helper()
	c, err := imapclient.DialInsecure(r.real, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(tgtUser, rigPassword).Wait(); err != nil {
		r.t.Fatal(err)
	}
	sel, err := c.Select(folder, nil).Wait()
	if err != nil {
		r.t.Fatalf("select %q: %v", folder, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	set := imap.SeqSet{}
	set.AddRange(1, 0)
	sec := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		r.t.Fatal(err)
	}
	out := make([]stored, 0, len(bufs))
	for _, b := range bufs {
		out = append(out, stored{uid: uint32(b.UID), body: b.FindBodySection(sec)})
	}
	return out
}

// ledgerItems reads every mapping item the ledger holds for the mailbox,
// by source UID, as raw JSON fields (so the test reads what is stored,
// whatever the Go types say).
func (r *rig) ledgerItems() map[uint32]map[string]any {
	r.t.Helper()
	out := map[uint32]map[string]any{}
	keys, err := r.b.Ledger.ListKeysFiltered(r.ctx, "map.>")
	if err != nil {
		r.t.Fatal(err)
	}
	defer keys.Stop()
	for key := range keys.Keys() {
		e, err := r.b.Ledger.Get(r.ctx, key)
		if err != nil {
			r.t.Fatal(err)
		}
		var m struct {
			How   string           `json:"how"`
			Items []map[string]any `json:"items"`
		}
		if err := json.Unmarshal(e.Value(), &m); err != nil {
			r.t.Fatal(err)
		}
		for _, it := range m.Items {
			it["how"] = m.How
			uid := uint32(it["uid"].(float64))
			prev, ok := out[uid]
			switch {
			case ok && prev["how"] == howAppended && m.How == howAppended:
				r.t.Errorf("source uid %d is in the ledger as appended twice: %v and %v", uid, prev, it)
			case ok && m.How == howPresent:
				// A later pass found it there: the entry that says
				// where it went is the one to read.
			default:
				out[uid] = it
			}
		}
	}
	return out
}

// seqOfUID finds the mail-stream sequence of the first record of uid.
func (r *rig) seqOfUID(uid uint32) uint64 {
	r.t.Helper()
	return mailSeqOfUID(r.t, r.ctx, r.b, uid)
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// rfcMsg builds a CRLF message whose body is text.
func rfcMsg(subject, text string) []byte {
	return []byte("From: Sender <s@old.example>\r\nTo: alice@old.example\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@old.example>\r\n\r\n" + text + "\r\n")
}

// checkOnce fails unless the target folder holds, for every source
// message but the refused ones, exactly one copy: its own bytes or, for
// the altered ones, the bytes the target made of them. It returns the
// target UID of each source UID.
func (r *rig) checkOnce(folder string, src []rigMsg, refused map[uint32]bool, alter func([]byte) []byte) map[uint32]uint32 {
	r.t.Helper()
	got := r.target(folder)
	uids := map[uint32]uint32{}
	want := 0
	for _, m := range src {
		if refused[m.uid] {
			continue
		}
		want++
		stored := alter(m.body)
		n := 0
		for _, g := range got {
			if bytes.Equal(g.body, stored) {
				n++
				uids[m.uid] = g.uid
			}
		}
		if n != 1 {
			r.t.Errorf("source uid %d is %d times in the target, want once", m.uid, n)
		}
	}
	if len(got) != want {
		r.t.Errorf("target %q holds %d messages, want %d", folder, len(got), want)
	}
	return uids
}

// dovecotNUL is what Dovecot stores of a message with NUL bytes: each
// NUL becomes 0x80, the size stays.
func dovecotNUL(b []byte) []byte { return bytes.ReplaceAll(b, []byte{0}, []byte{0x80}) }

func TestPartlyRefusedBatchWithAnAlteredMessageAppendsNothingTwice(t *testing.T) {
	const limit = 20_000
	srv := startRigDovecot(t, limit)
	r := newRig(t, srv.Addr, srv.Addr, 20)
	big := rfcMsg("big", strings.Repeat("0123456789abcdef ", 2*limit/17))
	msgs := []rigMsg{
		{uid: 1, body: rfcMsg("one", "first")},
		{uid: 2, body: rfcMsg("two", "second")},
		{uid: 3, body: rfcMsg("nul", "a NUL \x00 inside")},
		{uid: 4, body: rfcMsg("three", "third")},
		{uid: 5, body: big},
		{uid: 6, body: rfcMsg("four", "fourth")},
		{uid: 7, body: rfcMsg("nul after", "another \x00 NUL")},
		{uid: 8, body: rfcMsg("five", "fifth")},
	}
	// One batch: MULTIAPPEND refused as a whole for the big message, then
	// pipelined: OK [APPENDUID] for the NUL message (stored altered) and
	// NO [LIMIT] for the big one.
	res, err := r.svc.Load(r.ctx, r.publish(msgs))
	if err != nil {
		t.Fatal(err)
	}
	if res.Appended != 7 || res.Dead != 1 {
		t.Errorf("appended %d, dead %d; want 7 and 1", res.Appended, res.Dead)
	}
	uids := r.checkOnce("INBOX", msgs, map[uint32]bool{5: true}, dovecotNUL)

	items := r.ledgerItems()
	for _, uid := range []uint32{3, 7} {
		it := items[uid]
		src := msgs[uid-1].body
		if it["how"] != howAppended || uint32(numberOf(it["target_uid"])) != uids[uid] {
			t.Errorf("ledger of uid %d: %v; want appended at target uid %d", uid, it, uids[uid])
		}
		if it["sha256"] != sum(src) || it["stored_sha256"] != sum(dovecotNUL(src)) {
			t.Errorf("ledger of uid %d: %v; want sha256 %s and stored_sha256 %s (altered)", uid, it, sum(src), sum(dovecotNUL(src)))
		}
	}
	for _, uid := range []uint32{1, 2, 4, 6, 8} {
		if it := items[uid]; it["stored_sha256"] != nil {
			t.Errorf("ledger of unaltered uid %d says altered: %v", uid, it)
		}
	}
	if it := items[5]; it["how"] != howDead {
		t.Errorf("ledger of the refused uid 5: %v, want dead", it)
	}

	// A replay of the whole folder finds everything there, the altered
	// copies included.
	rj := r.job()
	rj.Pass, rj.Replay = "replay", &job.Replay{FromSeq: r.seqOfUID(1), UntilSeq: r.seqOfUID(8)}
	res, err = r.svc.Load(r.ctx, rj)
	if err != nil {
		t.Fatal(err)
	}
	if res.Appended != 0 {
		t.Errorf("a replay of the loaded folder appended %d, want 0", res.Appended)
	}
	r.checkOnce("INBOX", msgs, map[uint32]bool{5: true}, dovecotNUL)
	// Finding them there again does not erase where they went.
	for uid, it := range r.ledgerItems() {
		if uid != 5 && (it["how"] != howAppended || uint32(numberOf(it["target_uid"])) != uids[uid]) {
			t.Errorf("after the replay the ledger of uid %d says %v, want appended at target uid %d", uid, it, uids[uid])
		}
	}
	if it := r.ledgerItems()[3]; it["stored_sha256"] != sum(dovecotNUL(msgs[2].body)) {
		t.Errorf("after the replay the ledger of uid 3 says %v, want the altered copy's hash kept", it)
	}
}

func numberOf(v any) float64 {
	f, _ := v.(float64)
	return f
}

// TestCrashAfterAppendingAnAlteredMessageAppendsItOnce: the process dies
// after the target answered but before the answer was recorded, so the
// next session has only content to go by. The copy Dovecot made of a
// message with a NUL byte must still be recognised (its loose form, in
// the intent), not appended a second time.
func TestCrashAfterAppendingAnAlteredMessageAppendsItOnce(t *testing.T) {
	srv := startRigDovecot(t, 0)
	r := newRig(t, srv.Addr, srv.Addr, 20)
	msgs := []rigMsg{
		{uid: 1, body: rfcMsg("one", "first")},
		{uid: 2, body: rfcMsg("nul", "a NUL \x00 inside")},
		{uid: 3, body: rfcMsg("three", "third")},
	}
	j := r.publish(msgs)
	crashed := false
	r.svc.crashAt = func(p string) error {
		if p == pointAppended && !crashed {
			crashed = true
			return errors.New("simulated crash after the append")
		}
		return nil
	}
	if _, err := r.svc.Load(r.ctx, j); err == nil || !strings.Contains(err.Error(), "simulated crash") {
		t.Fatalf("Load with a crash: %v", err)
	}
	if _, err := r.svc.Load(r.ctx, j); err != nil {
		t.Fatal(err)
	}
	uids := r.checkOnce("INBOX", msgs, nil, dovecotNUL)
	it := r.ledgerItems()[2]
	if uint32(numberOf(it["target_uid"])) != uids[2] || it["stored_sha256"] != sum(dovecotNUL(msgs[1].body)) {
		t.Errorf("ledger of the altered message: %v; want target uid %d and the stored copy's hash", it, uids[2])
	}
}

// TestLostAnswerWithAnAlteredMessageAppendsItOnce: Dovecot stores the
// batch but the connection breaks before its answer arrives, so the fate
// of every message is open and content matching decides; the altered
// copy must be found.
func TestLostAnswerWithAnAlteredMessageAppendsItOnce(t *testing.T) {
	for _, multi := range []bool{true, false} {
		t.Run(fmt.Sprintf("multiappend=%v", multi), func(t *testing.T) {
			srv := startRigDovecot(t, 0)
			in := startStandIn(t, srv.Addr, false, 1)
			r := newRig(t, in.Addr(), srv.Addr, 20)
			r.svc.Settings.MultiAppend = &multi
			msgs := []rigMsg{
				{uid: 1, body: rfcMsg("one", "first")},
				{uid: 2, body: rfcMsg("nul", "a NUL \x00 inside")},
				{uid: 3, body: rfcMsg("three", "third")},
				{uid: 4, body: rfcMsg("four", "fourth")},
			}
			res, err := r.svc.Load(r.ctx, r.publish(msgs))
			if err != nil {
				t.Fatal(err)
			}
			in.mu.Lock()
			lost := in.hangUps == 0
			in.mu.Unlock()
			if !lost {
				t.Fatal("no answer was lost")
			}
			if res.Appended != 4 {
				t.Errorf("appended %d, want 4", res.Appended)
			}
			uids := r.checkOnce("INBOX", msgs, nil, dovecotNUL)
			if it := r.ledgerItems()[2]; uint32(numberOf(it["target_uid"])) != uids[2] || it["stored_sha256"] != sum(dovecotNUL(msgs[1].body)) {
				t.Errorf("ledger of the altered message: %v; want target uid %d and the stored copy's hash", it, uids[2])
			}
		})
	}
}
