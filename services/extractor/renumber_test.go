package extractor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/rs/zerolog"
)

// fakeFolder is a folder as renumbered sees it: sizes and hashes by UID.
type fakeFolder struct {
	size   map[uint32]int64
	sum    map[uint32]string
	hashed []uint32
}

func (f *fakeFolder) sizes(_ context.Context, uids []uint32) (map[uint32]int64, error) {
	out := map[uint32]int64{}
	for _, u := range uids {
		if s, ok := f.size[u]; ok {
			out[u] = s
		}
	}
	return out, nil
}

func (f *fakeFolder) sha256(_ context.Context, uid uint32) (string, error) {
	f.hashed = append(f.hashed, uid)
	return f.sum[uid], nil
}

func TestRenumberedTellsAChangedFolderFromOneThatOnlyLostOrGainedMail(t *testing.T) {
	cp := Checkpoint{UIDValidity: 7, LastUID: 30, UIDNext: 31, Anchors: []Anchor{{30, 300, "h30"}, {29, 290, "h29"}, {27, 270, "h27"}}}
	same := func() *fakeFolder {
		return &fakeFolder{size: map[uint32]int64{27: 270, 29: 290, 30: 300}, sum: map[uint32]string{27: "h27", 29: "h29", 30: "h30"}}
	}
	tests := []struct {
		name    string
		cp      Checkpoint
		uidNext uint32
		folder  func(*fakeFolder)
		want    string // a part of the reason, "" for unchanged
		hashed  []uint32
	}{
		{name: "same messages, new mail since", cp: cp, uidNext: 40, hashed: []uint32{30}},
		{name: "UIDNEXT went backwards", cp: cp, uidNext: 12, want: "UIDNEXT went backwards from 31 to 12"},
		{name: "UIDNEXT unknown now is not a change", cp: cp, uidNext: 0, hashed: []uint32{30}},
		{name: "another size at LastUID, body not read", cp: cp, uidNext: 31,
			folder: func(f *fakeFolder) { f.size[30] = 301 }, want: "uid 30 holds a message of 301 bytes"},
		{name: "same size, other hash at LastUID", cp: cp, uidNext: 31,
			folder: func(f *fakeFolder) { f.sum[30] = "other" }, want: "other SHA-256", hashed: []uint32{30}},
		{name: "LastUID expunged, the next anchor still there", cp: cp, uidNext: 31,
			folder: func(f *fakeFolder) { delete(f.size, 30) }, hashed: []uint32{29}},
		{name: "LastUID expunged, the next anchor another message", cp: cp, uidNext: 31,
			folder: func(f *fakeFolder) { delete(f.size, 30); f.sum[29] = "other" }, want: "uid 29", hashed: []uint32{29}},
		{name: "every anchor gone", cp: cp, uidNext: 31,
			folder: func(f *fakeFolder) { f.size = map[uint32]int64{1: 10} }, want: "none of the last checkpointed messages (uid 30, 29, 27)"},
		{name: "checkpoint from before anchors is taken at its word", cp: Checkpoint{UIDValidity: 7, LastUID: 30}, uidNext: 2,
			folder: func(f *fakeFolder) { f.size = nil }},
		{name: "nothing checkpointed yet", cp: Checkpoint{UIDValidity: 7}, uidNext: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := same()
			if tt.folder != nil {
				tt.folder(f)
			}
			got, err := renumbered(context.Background(), tt.cp, tt.uidNext, f)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("renumbered = %q, want %q", got, tt.want)
			}
			if fmt.Sprint(f.hashed) != fmt.Sprint(tt.hashed) {
				t.Errorf("bodies read to hash: uid %v, want %v", f.hashed, tt.hashed)
			}
		})
	}
}

func TestPublisherAnchorsAreTheNewestAcknowledgedMessagesOverTheOldCheckpoints(t *testing.T) {
	old := Checkpoint{LastUID: 5, Anchors: []Anchor{{UID: 5}, {UID: 4}, {UID: 2}}}
	tests := []struct {
		name     string
		acked    []uint32
		wantLast uint32
		wantUIDs string
	}{
		{name: "nothing new", wantLast: 5, wantUIDs: "[5 4 2]"},
		{name: "one new", acked: []uint32{9}, wantLast: 9, wantUIDs: "[9 5 4]"},
		{name: "many new", acked: []uint32{6, 7, 8, 9}, wantLast: 9, wantUIDs: "[9 8 7]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &publisher{}
			p.startFolder()
			for _, u := range tt.acked {
				p.acked = u
				p.anchors = append([]Anchor{{UID: u}}, p.anchors[:min(len(p.anchors), maxAnchors-1)]...)
			}
			last, anchors := p.lastAcked(old)
			var uids []uint32
			for _, a := range anchors {
				uids = append(uids, a.UID)
			}
			if last != tt.wantLast || fmt.Sprint(uids) != tt.wantUIDs {
				t.Errorf("lastAcked = %d %v, want %d %s", last, uids, tt.wantLast, tt.wantUIDs)
			}
		})
	}
}

// expunge deletes the messages at uids of folder on the fixture's server.
func (f *fixture) expunge(folder string, uids ...uint32) {
	f.t.Helper()
	c, err := imapclient.DialInsecure(f.svc.Config.Source.Address, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, "pw").Wait(); err != nil {
		f.t.Fatal(err)
	}
	if _, err := c.Select(folder, nil).Wait(); err != nil {
		f.t.Fatal(err)
	}
	set := imap.UIDSet{}
	for _, u := range uids {
		set.AddNum(imap.UID(u))
	}
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		f.t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) checkpoint(folder string) Checkpoint {
	f.t.Helper()
	e, err := f.b.Checkpoints.Get(f.ctx, CheckpointKey(user, folder))
	if err != nil {
		f.t.Fatal(err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		f.t.Fatal(err)
	}
	return cp
}

func TestAResumeAfterTheNewestMessageWasDeletedTakesOnlyTheNewMail(t *testing.T) {
	f := newFixture(t)
	var logs strings.Builder
	f.svc.Log = zerolog.New(&logs).Level(zerolog.WarnLevel)
	for i := range 4 {
		f.add("INBOX", fmt.Sprintf("Subject: %d\r\n\r\n%d\r\n", i, i))
	}
	f.extract()
	if cp := f.checkpoint("INBOX"); cp.LastUID != 4 || cp.UIDNext != 5 || len(cp.Anchors) != maxAnchors || cp.Anchors[0].UID != 4 || cp.Anchors[0].SHA256 == "" || cp.Anchors[0].Size == 0 {
		t.Fatalf("checkpoint = %+v, want uid 4, UIDNEXT 5 and the newest messages as anchors", cp)
	}
	f.expunge("INBOX", 4)
	f.add("INBOX", "Subject: new\r\n\r\nnew\r\n")
	end := f.extract()
	if end.Messages != 1 || end.Folders[len(end.Folders)-1].Epoch != 0 {
		t.Errorf("extracted %d messages (%+v), want the new one alone under epoch 0", end.Messages, end.Folders)
	}
	if strings.Contains(logs.String(), "renumbered") {
		t.Errorf("a deleted message was taken for a renumbering: %s", logs.String())
	}
}

func TestAFolderWhoseCheckpointedMessagesAreAllGoneIsExtractedAgainUnderANewEpoch(t *testing.T) {
	f := newFixture(t)
	var logs strings.Builder
	f.svc.Log = zerolog.New(&logs).Level(zerolog.WarnLevel)
	for i := range 4 {
		f.add("INBOX", fmt.Sprintf("Subject: %d\r\n\r\n%d\r\n", i, i))
	}
	f.extract()
	f.expunge("INBOX", 2, 3, 4)
	f.add("INBOX", "Subject: new\r\n\r\nnew\r\n")
	end := f.extract()
	if end.Messages != 2 || end.Folders[0].Epoch != 1 {
		t.Errorf("extracted %d messages (%+v), want the folder again (2) under epoch 1", end.Messages, end.Folders)
	}
	if !strings.Contains(logs.String(), `"why":"none of the last checkpointed messages (uid 4, 3, 2)`) || !strings.Contains(logs.String(), `"uidvalidity"`) {
		t.Errorf("no renumbering warning with its reason: %s", logs.String())
	}
	var ids []string
	for _, r := range f.records() {
		if r.Message != nil && r.Message.Epoch == 1 {
			ids = append(ids, r.Message.ID())
		}
	}
	if len(ids) != 2 || !strings.Contains(ids[0], "-e1.") {
		t.Errorf("epoch-1 records %q, want two with the epoch in their identity", ids)
	}
	if cp := f.checkpoint("INBOX"); cp.Epoch != 1 || cp.LastUID != 5 {
		t.Errorf("checkpoint = %+v, want epoch 1 at uid 5", cp)
	}
	// And the next pass resumes the new epoch, nothing again.
	if end := f.extract(); end.Messages != 0 || strings.Count(logs.String(), "renumbered") != 1 {
		t.Errorf("third pass extracted %d messages; warnings: %s", end.Messages, logs.String())
	}
}
