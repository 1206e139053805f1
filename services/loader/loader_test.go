package loader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	"github.com/mailferry/mailferry/shared/mailscan"
	"github.com/mailferry/mailferry/shared/record"
	"github.com/mailferry/mailferry/shared/subject"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

const (
	srcUser = "alice@old.example"
	tgtUser = "alice@new.example"
)

// fixture is a loader on an embedded nats-server appending to an in-memory
// IMAP server; the test plays the extractor by publishing records.
type fixture struct {
	t    *testing.T
	ctx  context.Context
	b    *broker.Broker
	cfg  *config.Config
	svc  *Service
	addr string
	pw   string
	pass int
	// epoch numbers the folders published (record.Folder.Epoch).
	epoch uint32
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	u := imaptest.NewUser(t, tgtUser, "target-pw")
	return newFixtureOn(t, imaptest.Serve(t, u, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapLiteralPlus: {}, imap.CapUIDPlus: {}}, nil))
}

// newFixtureOn is a fixture whose target is addr, where tgtUser's
// password is "target-pw".
func newFixtureOn(t *testing.T, addr string) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	pw := filepath.Join(dir, "target.pw")
	if err := os.WriteFile(pw, []byte("target-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("nats: {data_dir: %s}\nsource: {auth: user, tls: none}\ntarget: {address: %q, tls: none, auth: user}\nloader: {batch_messages: 4}\n",
		filepath.Join(dir, "nats"), addr)
	cfg, b := imaptest.Broker(t, ctx, yaml, dir)
	f := &fixture{t: t, ctx: ctx, b: b, cfg: cfg, addr: addr, pw: pw}
	f.svc = &Service{Config: cfg, Settings: settingsT(t, cfg), Broker: b, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), IdleFlush: 20 * time.Millisecond}
	return f
}

// msg is a source message as the test extractor publishes it.
type msg struct {
	folder string
	uid    uint32
	body   string
	flags  []string
	date   time.Time
}

func (f *fixture) job() *job.Job {
	return &job.Job{Mailbox: job.Mailbox{SourceUser: srcUser, TargetUser: tgtUser, TargetPasswordFile: f.pw}, Pass: fmt.Sprintf("pass%d", f.pass)}
}

// publishPass publishes a whole extraction pass: listing, folder records,
// messages in order, end record. msgIDSuffix makes ids differ so the
// broker's duplicate window does not drop a deliberate republication.
func (f *fixture) publishPass(msgs []msg, msgIDSuffix string) *job.Job {
	f.t.Helper()
	j := f.publishUnfinished(msgs, msgIDSuffix)
	end := &record.End{Mailbox: srcUser, TargetUser: tgtUser, Pass: j.Pass}
	for _, m := range msgs {
		if !slices.ContainsFunc(end.Folders, func(s record.FolderSummary) bool { return s.Name == m.folder }) {
			end.Folders = append(end.Folders, record.FolderSummary{Name: m.folder, UIDValidity: 7, Epoch: f.epoch})
		}
	}
	f.publish(record.EndMsg(end))
	return j
}

// publishUnfinished publishes a pass without its end record, as an
// extractor does until it has read the whole mailbox.
func (f *fixture) publishUnfinished(msgs []msg, msgIDSuffix string) *job.Job {
	f.t.Helper()
	f.pass++
	j := f.job()
	var folders []string
	for _, m := range msgs {
		if !slices.Contains(folders, m.folder) {
			folders = append(folders, m.folder)
		}
	}
	l := &record.Listing{Mailbox: srcUser, TargetUser: tgtUser, Pass: j.Pass}
	for _, name := range folders {
		l.Folders = append(l.Folders, record.Folder{Name: name, Delim: "/", Subscribed: true})
	}
	f.publish(record.ListingMsg(l))
	for _, name := range folders {
		f.publish(record.FolderMsg(&record.Folder{Mailbox: srcUser, TargetUser: tgtUser, Pass: j.Pass, Name: name, Delim: "/", UIDValidity: 7, Epoch: f.epoch}))
		for _, m := range msgs {
			if m.folder != name {
				continue
			}
			sum := sha256.Sum256([]byte(m.body))
			rec := &record.Message{Mailbox: srcUser, TargetUser: tgtUser, Pass: j.Pass, Folder: m.folder, Delim: "/",
				UIDValidity: 7, Epoch: f.epoch, UID: m.uid, PrevUID: f.prevOf(msgs, m), Flags: m.flags, InternalDate: m.date, Size: int64(len(m.body)), SHA256: hex.EncodeToString(sum[:])}
			body := []byte(m.body)
			if len(body) > 100_000 {
				rec.Object = fmt.Sprintf("obj-%d-%s", m.uid, msgIDSuffix)
				if _, err := f.b.Bodies.PutBytes(f.ctx, rec.Object, body); err != nil {
					f.t.Fatal(err)
				}
				body = nil
			}
			n, err := record.MessageMsg(rec, body)
			if err == nil && msgIDSuffix != "" {
				n.Header.Set(nats.MsgIdHdr, rec.ID()+msgIDSuffix)
			}
			f.publish(n, err)
		}
	}
	return j
}

// prevOf is the UID before m in its folder in source order (UIDs sorted),
// 0 for the first: what the extractor puts in PrevUID.
func (f *fixture) prevOf(msgs []msg, m msg) uint32 {
	var prev uint32
	for _, o := range msgs {
		if o.folder == m.folder && o.uid < m.uid && o.uid > prev {
			prev = o.uid
		}
	}
	return prev
}

func (f *fixture) publish(m *nats.Msg, err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.b.JS.PublishMsg(f.ctx, m); err != nil {
		f.t.Fatal(err)
	}
}

// target returns a target folder's messages in UID order.
func (f *fixture) target(folder string) []msg {
	f.t.Helper()
	c, err := imapclient.DialInsecure(f.addr, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(tgtUser, "target-pw").Wait(); err != nil {
		f.t.Fatal(err)
	}
	sel, err := c.Select(folder, nil).Wait()
	if err != nil {
		f.t.Fatalf("select %q: %v", folder, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	set := imap.SeqSet{}
	set.AddRange(1, 0)
	bufs, err := c.Fetch(set, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		f.t.Fatal(err)
	}
	var out []msg
	for _, b := range bufs {
		flags := mailscan.NormalizeFlags(b.Flags)
		out = append(out, msg{folder: folder, uid: uint32(b.UID), body: string(b.FindBodySection(&imap.FetchItemBodySection{Peek: true})), flags: flags, date: b.InternalDate})
	}
	return out
}

func toFlags(in []string) []imap.Flag {
	out := make([]imap.Flag, 0, len(in))
	for _, f := range in {
		out = append(out, imap.Flag(f))
	}
	return out
}

func corpusOf(n int, folder string) []msg {
	var out []msg
	for i := range n {
		body := fmt.Sprintf("From: a@b\r\nSubject: %d\r\n\r\nbody %d\r\n", i, i)
		if i%5 == 4 {
			body = "From: a@b\r\nSubject: same\r\n\r\nidentical, no Message-ID\r\n"
		}
		out = append(out, msg{folder: folder, uid: uint32(10 + 3*i), body: body, flags: []string{`\Seen`, "$Label1"}[:i%3%2+i%2],
			date: time.Date(2011, 3, 4, 5, 6, i%60, 0, time.UTC)})
	}
	return out
}

// checkTarget fails unless folder holds exactly want, in order, with
// bytes, flags and dates.
func (f *fixture) checkTarget(folder string, want []msg) {
	f.t.Helper()
	got := f.target(folder)
	if len(got) != len(want) {
		f.t.Fatalf("target %q holds %d messages, want %d", folder, len(got), len(want))
	}
	for i := range want {
		var w []string
		for _, fl := range want[i].flags {
			w = append(w, string(fl))
		}
		w = mailscan.NormalizeFlags(toFlags(w))
		if got[i].body != want[i].body || !slices.Equal(got[i].flags, w) || !got[i].date.Equal(want[i].date) {
			f.t.Errorf("message %d: got %q %v %v, want %q %v %v", i, got[i].body, got[i].flags, got[i].date, want[i].body, w, want[i].date)
		}
	}
}

func TestLoadAppendsEveryMessageOnceInSourceOrder(t *testing.T) {
	f := newFixture(t)
	inbox := corpusOf(11, "INBOX")
	nested := corpusOf(6, "Archive/2010")
	big := strings.Repeat("x", 300_000)
	nested = append(nested, msg{folder: "Archive/2010", uid: 999, body: "Subject: big\r\n\r\n" + big, date: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)})
	j := f.publishPass(append(inbox, nested...), "")
	res, err := f.svc.Load(f.ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	if res.Appended != int64(len(inbox)+len(nested)) {
		t.Errorf("appended %d, want %d", res.Appended, len(inbox)+len(nested))
	}
	f.checkTarget("INBOX", inbox)
	f.checkTarget("Archive/2010", nested)
}

func TestLoadAfterCrashAppendsNeitherTwiceNorNever(t *testing.T) {
	for _, point := range []string{pointIntentSaved, pointAppended} {
		t.Run(point, func(t *testing.T) {
			f := newFixture(t)
			want := corpusOf(10, "INBOX")
			j := f.publishPass(want, "")
			crashes := 0
			f.svc.crashAt = func(p string) error {
				if p == point && crashes < 2 {
					crashes++
					return errors.New("simulated crash at " + p)
				}
				return nil
			}
			for range 2 {
				if _, err := f.svc.Load(f.ctx, j); err == nil || !strings.Contains(err.Error(), "simulated crash") {
					t.Fatalf("Load with a crash: err = %v", err)
				}
			}
			if _, err := f.svc.Load(f.ctx, j); err != nil {
				t.Fatal(err)
			}
			f.checkTarget("INBOX", want)
			f.checkRunningTotal("INBOX", want)
		})
	}
}

// checkRunningTotal fails unless the ledger's entry of folder counts
// want once, messages and bytes: the running total `mailferry status`
// reads.
func (f *fixture) checkRunningTotal(folder string, want []msg) {
	f.t.Helper()
	st, err := loadEntry[FolderState](f.ctx, f.b.Ledger, FolderKey(srcUser, folder, 7, 0))
	if err != nil {
		f.t.Fatal(err)
	}
	var size int64
	for _, m := range want {
		size += int64(len(m.body))
	}
	if st.V.Loaded != int64(len(want)) || st.V.LoadedBytes != size {
		f.t.Errorf("ledger of %s counts %d loaded, %d bytes; want %d messages, %d bytes",
			folder, st.V.Loaded, st.V.LoadedBytes, len(want), size)
	}
}

func TestLoadSecondPassAppendsNothing(t *testing.T) {
	f := newFixture(t)
	want := corpusOf(9, "INBOX")
	if _, err := f.svc.Load(f.ctx, f.publishPass(want, "")); err != nil {
		t.Fatal(err)
	}
	// The same messages published again after the broker's duplicate
	// window (other ids), as a re-run extractor without checkpoints would.
	res, err := f.svc.Load(f.ctx, f.publishPass(want, "-again"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Appended != 0 || res.Skipped != int64(len(want)) {
		t.Errorf("second pass appended %d, skipped %d; want 0, %d", res.Appended, res.Skipped, len(want))
	}
	f.checkTarget("INBOX", want)
	f.checkRunningTotal("INBOX", want)
}

func TestLoadWithLostLedgerMatchesWhatTheTargetHolds(t *testing.T) {
	f := newFixture(t)
	want := corpusOf(8, "INBOX")
	if _, err := f.svc.Load(f.ctx, f.publishPass(want, "")); err != nil {
		t.Fatal(err)
	}
	st, err := f.b.JS.Stream(f.ctx, "KV_"+broker.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(f.ctx); err != nil {
		t.Fatal(err)
	}
	more := append(slices.Clone(want), msg{folder: "INBOX", uid: 500, body: "Subject: new\r\n\r\nnew\r\n", date: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})
	res, err := f.svc.Load(f.ctx, f.publishPass(more, "-lost"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Appended != 1 {
		t.Errorf("appended %d after losing the ledger, want 1 (the new message)", res.Appended)
	}
	f.checkTarget("INBOX", more)
}

func TestSettleMovesTheWatermarkOnlyAlongTheChainOfPredecessors(t *testing.T) {
	d := func(uid, prev uint32) DoneItem { return DoneItem{UID: uid, Prev: prev} }
	tests := []struct {
		name     string
		st       FolderState
		wantLast uint32
		wantDone []DoneItem
	}{
		{"chain closes", FolderState{LastUID: 3, Done: []DoneItem{d(7, 5), d(5, 3)}}, 7, nil},
		{"gap stays open", FolderState{LastUID: 3, Done: []DoneItem{d(5, 3), d(9, 7)}}, 5, []DoneItem{d(9, 7)}},
		{"record out of order waits for its predecessor", FolderState{LastUID: 10, Done: []DoneItem{d(16, 13)}}, 10, []DoneItem{d(16, 13)}},
		{"already below the watermark", FolderState{LastUID: 9, Done: []DoneItem{d(4, 2)}}, 9, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.st
			settle(&st)
			if st.LastUID != tt.wantLast || !slices.Equal(st.Done, tt.wantDone) {
				t.Errorf("settle = last %d done %v, want %d %v", st.LastUID, st.Done, tt.wantLast, tt.wantDone)
			}
		})
	}
}

func TestLoadWithLedgerRolledBackToAnOlderRevisionAppendsNothingTwice(t *testing.T) {
	f := newFixture(t)
	want := corpusOf(10, "INBOX")
	j := f.publishPass(want, "")
	first, err := f.svc.Load(f.ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	// As if the last writes of the ledger were lost: the folder entry
	// and the stream position go back to after the first batch.
	older := FolderState{Target: "INBOX", LastUID: want[3].uid, LastTargetUID: 4}
	fk := FolderKey(srcUser, "INBOX", 7, 0)
	e, err := loadEntry[FolderState](f.ctx, f.b.Ledger, fk)
	if err != nil {
		t.Fatal(err)
	}
	older.TargetUIDValidity = e.V.TargetUIDValidity
	e.V = older
	if err := e.save(f.ctx, f.b.Ledger); err != nil {
		t.Fatal(err)
	}
	if err := f.b.Ledger.Delete(f.ctx, MailboxKey(srcUser)); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.Load(f.ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	if again := res.Appended - first.Appended; again != 0 {
		t.Errorf("appended %d messages again after the ledger lost its last writes", again)
	}
	f.checkTarget("INBOX", want)
}

func TestShutdownSettlesTheBatchInHandAndLosesNothing(t *testing.T) {
	f := newFixture(t)
	want := corpusOf(400, "INBOX")
	j := f.publishPass(want, "")
	if err := job.Publish(f.ctx, f.b.JS, j); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for len(f.target("INBOX")) < 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	start := time.Now()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the loader did not stop within its grace period")
	}
	t.Logf("stopped in %v with %d of %d messages loaded", time.Since(start), len(f.target("INBOX")), len(want))
	st, err := loadEntry[FolderState](f.ctx, f.b.Ledger, FolderKey(srcUser, "INBOX", 7, 0))
	if err != nil {
		t.Fatal(err)
	}
	if st.V.Pending != nil {
		t.Errorf("shutdown left an unsettled append: %+v", st.V.Pending)
	}
	if got := len(f.target("INBOX")); int64(got) != st.V.Appended {
		t.Errorf("target holds %d messages, ledger says %d appended", got, st.V.Appended)
	}
	if _, err := f.svc.Load(f.ctx, j); err != nil {
		t.Fatal(err)
	}
	f.checkTarget("INBOX", want)
}

func TestLeaseHolderStopsWritingBeforeANewcomerMayTakeOver(t *testing.T) {
	f := newFixture(t)
	const ttl = 400 * time.Millisecond
	l, err := acquire(f.ctx, f.b.Ledger, srcUser, "other", ttl)
	if err != nil {
		t.Fatal(err)
	}
	// Someone else's write makes renewals fail, as after a takeover.
	e, err := loadEntry[Lease](f.ctx, f.b.Ledger, LeaseKey(srcUser))
	if err != nil {
		t.Fatal(err)
	}
	e.V.Owner = "intruder"
	if err := e.save(f.ctx, f.b.Ledger); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = l.hold(f.ctx, func(ctx context.Context) error {
		<-ctx.Done() // an append that would run for ever
		return ctx.Err()
	})
	took := time.Since(start)
	if !errors.Is(err, errLeaseLost) {
		t.Fatalf("hold after losing the lease: err = %v, want lease lost", err)
	}
	if took > ttl-margin(ttl) {
		t.Errorf("the holder kept writing for %v, past its write deadline (ttl %v, margin %v)", took, ttl, margin(ttl))
	}
	if _, err := acquire(f.ctx, f.b.Ledger, srcUser, "other", ttl); !errors.Is(err, errBusy) {
		t.Errorf("a newcomer took the lease before it expired plus the margin: %v", err)
	}
}

func TestRecordsArrivingOutOfUIDOrderAreAllLoaded(t *testing.T) {
	f := newFixture(t)
	all := corpusOf(6, "INBOX")
	// A publish that failed and was sent again lands after later ones.
	order := []msg{all[0], all[2], all[1], all[3], all[5], all[4]}
	j := f.publishPass(order, "")
	res, err := f.svc.Load(f.ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	if res.Appended != 6 {
		t.Errorf("appended %d of 6 records that arrived out of order", res.Appended)
	}
	if got := f.target("INBOX"); len(got) != 6 {
		t.Errorf("target holds %d messages, want 6", len(got))
	}
	st, err := loadEntry[FolderState](f.ctx, f.b.Ledger, FolderKey(srcUser, "INBOX", 7, 0))
	if err != nil {
		t.Fatal(err)
	}
	if st.V.LastUID != all[5].uid || st.V.Done != nil {
		t.Errorf("ledger watermark %d with %v still open, want %d and nothing open", st.V.LastUID, st.V.Done, all[5].uid)
	}
}

func TestIdenticalMessagesFromFoldersMergedIntoOneTargetAreAllKept(t *testing.T) {
	f := newFixture(t)
	f.svc.Settings.FolderMap = map[string]string{"Old": "INBOX"}
	same := "From: a@b\r\nSubject: twice\r\n\r\nsame bytes in two folders\r\n"
	date := time.Date(2012, 1, 1, 0, 0, 0, 0, time.UTC)
	msgs := []msg{
		{folder: "INBOX", uid: 1, body: same, date: date},
		{folder: "Old", uid: 1, body: same, date: date},
		{folder: "Old", uid: 2, body: "Subject: other\r\n\r\nother\r\n", date: date},
	}
	if _, err := f.svc.Load(f.ctx, f.publishPass(msgs, "")); err != nil {
		t.Fatal(err)
	}
	if got := f.target("INBOX"); len(got) != 3 {
		t.Errorf("merged target holds %d messages, want 3 (the identical one twice)", len(got))
	}
}

func TestRetryOfOneOfTwoIdenticalMessagesAppendsIt(t *testing.T) {
	f := newFixture(t)
	same := "From: a@b\r\nSubject: twin\r\n\r\nidentical\r\n"
	date := time.Date(2013, 1, 1, 0, 0, 0, 0, time.UTC)
	msgs := []msg{{folder: "INBOX", uid: 1, body: same, date: date}, {folder: "INBOX", uid: 2, body: same, date: date}}
	j := f.publishPass(msgs, "")
	// The first copy arrives; the second is as if the target had refused it.
	f.svc.Settings.BatchMessages = 1
	f.svc.crashAt = func(p string) error {
		if p == pointIntentSaved && len(f.target("INBOX")) == 1 {
			return errors.New("stop before the second copy")
		}
		return nil
	}
	if _, err := f.svc.Load(f.ctx, j); err == nil {
		t.Fatal("Load did not stop before the second copy")
	}
	f.svc.crashAt = nil
	seq := f.seqOf(2)
	ack, err := f.b.JS.Publish(f.ctx, subject.Dead(srcUser), []byte(`{"id":"twin"}`))
	if err != nil {
		t.Fatal(err)
	}
	rj := *j
	rj.Pass, rj.Retry = "retry", []job.RetryItem{{MailSeq: seq, DeadSeq: ack.Sequence}}
	res, err := f.svc.RetryDead(f.ctx, &rj)
	if err != nil {
		t.Fatal(err)
	}
	if res.Appended != 1 || len(f.target("INBOX")) != 2 {
		t.Errorf("retry appended %d, target holds %d; want the second identical copy appended", res.Appended, len(f.target("INBOX")))
	}
}

func TestPartialReplayDoesNotMarkEarlierMailDone(t *testing.T) {
	f := newFixture(t)
	want := corpusOf(8, "INBOX")
	j := f.publishPass(want, "")
	batches := 0
	f.svc.crashAt = func(p string) error {
		if p == pointIntentSaved {
			if batches++; batches == 2 {
				return errors.New("crash in the second batch")
			}
		}
		return nil
	}
	if _, err := f.svc.Load(f.ctx, j); err == nil {
		t.Fatal("Load did not crash")
	}
	f.svc.crashAt = nil
	// Replay only the last message.
	last := f.seqOf(want[7].uid)
	rj := *j
	rj.Pass, rj.Replay = "replay", &job.Replay{FromSeq: last, UntilSeq: last}
	if _, err := f.svc.Load(f.ctx, &rj); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Load(f.ctx, j); err != nil {
		t.Fatal(err)
	}
	if got := f.target("INBOX"); len(got) != len(want) {
		t.Errorf("target holds %d messages after a partial replay and the resumed load, want %d", len(got), len(want))
	}
}

// seqOf finds the stream sequence of the INBOX record with uid.
func (f *fixture) seqOf(uid uint32) uint64 {
	f.t.Helper()
	return mailSeqOfUID(f.t, f.ctx, f.b, uid)
}

// mailSeqOfUID finds the mail-stream sequence of the first message record
// of uid.
func mailSeqOfUID(t testing.TB, ctx context.Context, b *broker.Broker, uid uint32) uint64 {
	t.Helper()
	st, err := b.JS.Stream(ctx, broker.StreamMail)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		d, err := record.Decode(raw.Header, raw.Data)
		if err == nil && d.Message != nil && d.Message.UID == uid {
			return seq
		}
	}
	t.Fatalf("no record of uid %d", uid)
	return 0
}

func TestAJobDeliveredAgainAfterItsPassWasLoadedEndsAtOnce(t *testing.T) {
	f := newFixture(t)
	j := f.publishPass(corpusOf(3, "INBOX"), "")
	if _, err := f.svc.Load(f.ctx, j); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
	defer cancel()
	if _, err := f.svc.Load(ctx, j); err != nil {
		t.Fatalf("second Load of a loaded pass: %v", err)
	}
	if got := len(f.target("INBOX")); got != 3 {
		t.Errorf("target holds %d messages, want 3", got)
	}
}

func TestPartialReplayRestoresALostSecondCopyOfAnIdenticalMessage(t *testing.T) {
	f := newFixture(t)
	same := "From: a@b\r\nSubject: twin\r\n\r\nidentical\r\n"
	date := time.Date(2014, 1, 1, 0, 0, 0, 0, time.UTC)
	j := f.publishPass([]msg{{folder: "INBOX", uid: 1, body: same, date: date}, {folder: "INBOX", uid: 2, body: same, date: date}}, "")
	if _, err := f.svc.Load(f.ctx, j); err != nil {
		t.Fatal(err)
	}
	f.expungeTarget("INBOX", 2)
	second := f.seqOf(2)
	rj := *j
	rj.Pass, rj.Replay = "replay-second", &job.Replay{FromSeq: second, UntilSeq: second}
	if _, err := f.svc.Load(f.ctx, &rj); err != nil {
		t.Fatal(err)
	}
	if got := len(f.target("INBOX")); got != 2 {
		t.Errorf("after replaying the lost second copy the target holds %d, want 2", got)
	}
	// Replaying both again finds both there.
	rj.Pass, rj.Replay = "replay-both", &job.Replay{FromSeq: f.seqOf(1), UntilSeq: second}
	res, err := f.svc.Load(f.ctx, &rj)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(f.target("INBOX")); got != 2 || res.Appended != 0 {
		t.Errorf("a replay of a complete folder appended %d, target holds %d; want 0 and 2", res.Appended, got)
	}
	// The replays dealt with both again: the running total still
	// counts each once.
	f.checkRunningTotal("INBOX", []msg{{body: same}, {body: same}})
}

// expungeTarget removes a message from a target folder by UID.
func (f *fixture) expungeTarget(folder string, uid imap.UID) {
	f.t.Helper()
	c, err := imapclient.DialInsecure(f.addr, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(tgtUser, "target-pw").Wait(); err != nil {
		f.t.Fatal(err)
	}
	if _, err := c.Select(folder, nil).Wait(); err != nil {
		f.t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		f.t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		f.t.Fatal(err)
	}
}

func TestAFolderRenumberedUnderANewEpochIsMatchedByContentAndOnlyItsNewMailAppended(t *testing.T) {
	f := newFixture(t)
	want := corpusOf(10, "INBOX") // two pairs with the same content
	if _, err := f.svc.Load(f.ctx, f.publishPass(want, "")); err != nil {
		t.Fatal(err)
	}
	// The extractor found the folder renumbered: every message again
	// under epoch 1, at other UIDs in another order, and new mail at a
	// UID below the old watermark. Same message ids but for the epoch:
	// the broker's duplicate window must not drop any.
	var again []msg
	for i, m := range want {
		m.uid = uint32(200 - 7*i)
		again = append(again, m)
	}
	fresh := msg{folder: "INBOX", uid: 3, body: "Subject: new\r\n\r\nnew\r\n", flags: []string{`\Seen`}, date: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
	again = append(again, fresh)
	slices.SortFunc(again, func(a, b msg) int { return int(a.uid) - int(b.uid) })
	f.epoch = 1
	res, err := f.svc.Load(f.ctx, f.publishPass(again, ""))
	if err != nil {
		t.Fatal(err)
	}
	if res.Appended != 1 || res.Skipped != int64(len(want)) {
		t.Errorf("renumbered pass appended %d, found %d present; want 1, %d", res.Appended, res.Skipped, len(want))
	}
	f.checkTarget("INBOX", append(slices.Clone(want), fresh))
	if _, err := f.b.Ledger.Get(f.ctx, "fld."+subject.Key(srcUser)+".INBOX.7-e1"); err != nil {
		t.Errorf("no ledger entry for the renumbered folder: %v", err)
	}
	landed, err := Landed(f.ctx, f.b.Ledger, srcUser)
	if err != nil {
		t.Fatal(err)
	}
	var older, current []uint32
	for _, l := range landed {
		if l.Renumbered {
			older = append(older, l.UID)
		} else {
			current = append(current, l.UID)
		}
	}
	if len(older) != len(want) || len(current) != 1 || current[0] != fresh.uid {
		t.Errorf("landings: %v under the old numbering, %v under the new; want the %d first ones old, the new message current", older, current, len(want))
	}
}

func TestARenumberedFolderWhoseLoadCrashedAfterAnAppendResumesMatchingByContent(t *testing.T) {
	f := newFixture(t)
	want := corpusOf(10, "INBOX")
	if _, err := f.svc.Load(f.ctx, f.publishPass(want, "")); err != nil {
		t.Fatal(err)
	}
	// New mail first in the new numbering: the first batch appends it,
	// and the loader dies right after the append.
	fresh := msg{folder: "INBOX", uid: 1, body: "Subject: new\r\n\r\nnew\r\n", date: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
	again := []msg{fresh}
	for i, m := range want {
		m.uid = uint32(2 + i)
		again = append(again, m)
	}
	f.epoch = 1
	j := f.publishPass(again, "")
	crashed := false
	f.svc.crashAt = func(p string) error {
		if p == pointAppended && !crashed {
			crashed = true
			return errors.New("simulated crash at " + p)
		}
		return nil
	}
	if _, err := f.svc.Load(f.ctx, j); err == nil || !strings.Contains(err.Error(), "simulated crash") {
		t.Fatalf("Load with a crash: err = %v", err)
	}
	if !f.matching("INBOX", 1) {
		t.Error("the renumbered folder's entry does not say it is loaded by content")
	}
	if _, err := f.svc.Load(f.ctx, j); err != nil {
		t.Fatal(err)
	}
	f.checkTarget("INBOX", append(slices.Clone(want), fresh))
	if f.matching("INBOX", 1) {
		t.Error("the folder is still loaded by content after the end of a pass that extracted it whole")
	}
}

// matching reads FolderState.Matching of folder under UIDVALIDITY 7.
func (f *fixture) matching(folder string, epoch uint32) bool {
	f.t.Helper()
	st, err := loadEntry[FolderState](f.ctx, f.b.Ledger, FolderKey(srcUser, folder, 7, epoch))
	if err != nil {
		f.t.Fatal(err)
	}
	return st.V.Matching
}
