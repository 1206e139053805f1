package extractor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/record"
	"github.com/mailferry/mailferry/shared/subject"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

const user = "alice@old.example"

type fixture struct {
	t    *testing.T
	ctx  context.Context
	u    *imapmemserver.User
	b    *broker.Broker
	svc  *Service
	pw   string
	pass int
}

// ghostSession lists a folder that no longer exists when selected, as a
// folder deleted or renamed between LIST and EXAMINE would.
type ghostSession struct {
	*imapmemserver.UserSession
}

func (g ghostSession) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if err := g.UserSession.List(w, ref, patterns, options); err != nil {
		return err
	}
	return w.WriteList(&imap.ListData{Mailbox: "Ghost", Delim: '/'})
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, false)
}

func newFixtureWith(t *testing.T, ghost bool) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	u := imaptest.NewUser(t, user, "pw")
	var wrap func(*imapmemserver.UserSession) imapserver.Session
	if ghost {
		wrap = func(s *imapmemserver.UserSession) imapserver.Session { return ghostSession{s} }
	}
	addr := imaptest.Serve(t, u, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}}, wrap)
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("nats: {data_dir: %s}\nsource: {address: %q, tls: none, auth: user}\ntarget: {auth: user}\nextractor: {checkpoint_every: 3, large_message_bytes: 1000}\n",
		filepath.Join(dir, "nats"), addr)
	cfg, b := imaptest.Broker(t, ctx, yaml, dir)
	return &fixture{t: t, ctx: ctx, u: u, b: b, pw: pw,
		svc: &Service{Config: cfg, Settings: settingsT(t, cfg), Broker: b, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}}
}

type lit struct {
	*bytes.Reader
	n int64
}

func (l lit) Size() int64 { return l.n }

func (f *fixture) add(folder, body string, flags ...imap.Flag) {
	f.t.Helper()
	if _, err := f.u.Append(folder, lit{bytes.NewReader([]byte(body)), int64(len(body))}, &imap.AppendOptions{Flags: flags, Time: time.Date(2009, 2, 3, 4, 5, 6, 0, time.UTC)}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) extract() *record.End {
	f.t.Helper()
	f.pass++
	end, err := f.svc.Extract(f.ctx, &job.Job{Mailbox: job.Mailbox{SourceUser: user, TargetUser: user, SourcePasswordFile: f.pw}, Pass: fmt.Sprintf("p%d", f.pass)})
	if err != nil {
		f.t.Fatal(err)
	}
	return end
}

// records reads every mail record of the mailbox in stream order.
func (f *fixture) records() []*record.Decoded {
	f.t.Helper()
	cons, err := f.b.JS.OrderedConsumer(f.ctx, broker.StreamMail, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject.Mailbox(user)}})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*record.Decoded
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(200 * time.Millisecond))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			return out
		}
		if err != nil {
			f.t.Fatal(err)
		}
		d, err := record.Decode(m.Headers(), m.Data())
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, d)
	}
}

func (f *fixture) body(m *record.Decoded) []byte {
	f.t.Helper()
	if m.Message.Object == "" {
		return m.Body
	}
	r, err := f.b.Bodies.Get(f.ctx, m.Message.Object)
	if err != nil {
		f.t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

func messages(ds []*record.Decoded) []*record.Decoded {
	var out []*record.Decoded
	for _, d := range ds {
		if d.Message != nil {
			out = append(out, d)
		}
	}
	return out
}

func TestExtractPublishesEveryMessageInUIDOrderWithExactBytesFlagsAndDate(t *testing.T) {
	f := newFixture(t)
	if err := f.u.Create("Archive/2010", nil); err != nil {
		t.Fatal(err)
	}
	big := "Subject: big\r\n\r\n" + strings.Repeat("y", 5000) + "\r\n"
	f.add("INBOX", "Subject: one\r\n\r\nbare\nLF and \x00 NUL\r\n", imap.FlagSeen, "$Label1")
	f.add("INBOX", big)
	f.add("Archive/2010", "Subject: three\r\n\r\n3\r\n", imap.FlagFlagged)
	end := f.extract()
	if end.Messages != 3 || end.Bytes == 0 {
		t.Fatalf("end record = %+v", end)
	}
	ds := f.records()
	if ds[0].Listing == nil || len(ds[0].Listing.Folders) < 2 {
		t.Fatalf("first record is not a listing of the folders: %+v", ds[0])
	}
	if ds[len(ds)-1].End == nil {
		t.Fatal("last record is not the end record")
	}
	ms := messages(ds)
	if len(ms) != 3 {
		t.Fatalf("%d message records, want 3", len(ms))
	}
	wantBodies := map[string]string{"INBOX/1": "Subject: one\r\n\r\nbare\nLF and \x00 NUL\r\n", "INBOX/2": big, "Archive/2010/1": "Subject: three\r\n\r\n3\r\n"}
	for _, m := range ms {
		key := fmt.Sprintf("%s/%d", m.Message.Folder, m.Message.UID)
		b := f.body(m)
		if string(b) != wantBodies[key] {
			t.Errorf("%s: body %q", key, b)
		}
		sum := sha256.Sum256(b)
		if m.Message.SHA256 != hex.EncodeToString(sum[:]) || m.Message.Size != int64(len(b)) {
			t.Errorf("%s: sha256/size do not describe the body", key)
		}
		if !m.Message.InternalDate.Equal(time.Date(2009, 2, 3, 4, 5, 6, 0, time.UTC)) {
			t.Errorf("%s: date %v", key, m.Message.InternalDate)
		}
		for _, fl := range m.Message.Flags {
			if strings.EqualFold(fl, `\Recent`) {
				t.Errorf("%s: \\Recent copied", key)
			}
		}
	}
	prev := map[string]uint32{}
	for _, m := range ms {
		if m.Message.PrevUID != prev[m.Message.Folder] {
			t.Errorf("%s uid %d: prev uid %d, want %d (the message fetched before it)", m.Message.Folder, m.Message.UID, m.Message.PrevUID, prev[m.Message.Folder])
		}
		prev[m.Message.Folder] = m.Message.UID
		if m.Message.LinesSHA256 == "" {
			t.Errorf("%s uid %d: no line-ending-normalised hash", m.Message.Folder, m.Message.UID)
		}
	}
	byKey := map[string]*record.Message{}
	for _, m := range ms {
		byKey[fmt.Sprintf("%s/%d", m.Message.Folder, m.Message.UID)] = m.Message
	}
	if byKey["INBOX/2"].Object == "" || byKey["INBOX/1"].Object != "" {
		t.Error("bodies over large_message_bytes, and only those, must go to the object store")
	}
	if got := byKey["INBOX/1"].Flags; len(got) != 2 {
		t.Errorf("flags = %v, want \\Seen and $Label1", got)
	}
}

func TestExtractResumesFromCheckpointAndPublishesOnlyNewMail(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.add("INBOX", fmt.Sprintf("Subject: %d\r\n\r\n%d\r\n", i, i))
	}
	f.extract()
	f.add("INBOX", "Subject: new\r\n\r\nnew\r\n")
	end := f.extract()
	if end.Messages != 1 {
		t.Errorf("second pass extracted %d messages, want only the new one", end.Messages)
	}
	ms := messages(f.records())
	if len(ms) != 6 || ms[5].Message.UID != 6 {
		t.Errorf("stream holds %d messages (last uid %d), want 6 ending with uid 6", len(ms), ms[len(ms)-1].Message.UID)
	}
}

func TestExtractStartsOverWhenUIDValidityChanges(t *testing.T) {
	f := newFixture(t)
	if err := f.u.Create("Work", nil); err != nil {
		t.Fatal(err)
	}
	f.add("Work", "Subject: a\r\n\r\na\r\n")
	f.extract()
	if err := f.u.Delete("Work"); err != nil {
		t.Fatal(err)
	}
	if err := f.u.Create("Work", nil); err != nil {
		t.Fatal(err)
	}
	f.add("Work", "Subject: a\r\n\r\na\r\n")
	end := f.extract()
	if end.Messages != 1 {
		t.Errorf("after a UIDVALIDITY change extracted %d messages, want the folder again (1)", end.Messages)
	}
}

func TestExtractFailsClearlyOnBadPassword(t *testing.T) {
	f := newFixture(t)
	if err := os.WriteFile(f.pw, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.Extract(f.ctx, &job.Job{Mailbox: job.Mailbox{SourceUser: user, TargetUser: user, SourcePasswordFile: f.pw}, Pass: "p"})
	if err == nil || !strings.Contains(err.Error(), "log in") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("err = %v, want a login error that does not show the password", err)
	}
}

func TestCheckpointOfOneFolderNeverCarriesAnotherFoldersUIDs(t *testing.T) {
	f := newFixture(t)
	if err := f.u.Create("Big", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 9 {
		f.add("Big", fmt.Sprintf("Subject: big %d\r\n\r\n%d\r\n", i, i))
	}
	// INBOX, empty, is extracted after Big.
	f.extract()
	for _, folder := range []string{"INBOX", "Big"} {
		e, err := f.b.Checkpoints.Get(f.ctx, CheckpointKey(user, folder))
		if err != nil {
			t.Fatal(err)
		}
		var cp Checkpoint
		if err := json.Unmarshal(e.Value(), &cp); err != nil {
			t.Fatal(err)
		}
		want := map[string]uint32{"INBOX": 0, "Big": 9}[folder]
		if cp.LastUID != want {
			t.Errorf("checkpoint of %s = uid %d, want %d", folder, cp.LastUID, want)
		}
	}
	// New mail in the folder with the lower UIDs is still found.
	f.add("INBOX", "Subject: two\r\n\r\n2\r\n")
	if end := f.extract(); end.Messages != 1 {
		t.Errorf("second pass extracted %d messages, want the new one", end.Messages)
	}
}

func TestAFolderGoneSinceListIsReportedAndTheRestExtracted(t *testing.T) {
	f := newFixtureWith(t, true)
	f.add("INBOX", "Subject: kept\r\n\r\nkept\r\n")
	end := f.extract()
	if end.Messages != 1 {
		t.Errorf("extracted %d messages, want INBOX's one", end.Messages)
	}
	if len(end.Problems) != 1 || !strings.Contains(end.Problems[0], `"Ghost"`) {
		t.Errorf("problems = %q, want the vanished folder named", end.Problems)
	}
}
