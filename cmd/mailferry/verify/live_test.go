package verify

import (
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/services/loader"
)

func TestSplitNewAtSourceTakesOnlyMissingMailFromAfterThePassStarted(t *testing.T) {
	started := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	d := func(kind string, uid uint32, at time.Time) Diff { return Diff{Kind: kind, UID: uid, arrived: at} }
	ds := []Diff{
		d(KindMissing, 1, started.Add(time.Minute)),
		d(KindMissing, 2, started.Add(-time.Minute)),
		d(KindMissing, 3, started),
		d(KindExtra, 4, started.Add(time.Minute)),
		d(KindFlags, 5, started.Add(time.Minute)),
	}
	tests := []struct {
		name         string
		t            time.Time
		diffs, fresh []uint32
	}{
		{"no time: all differences", time.Time{}, []uint32{1, 2, 3, 4, 5}, nil},
		{"after the start: new at source", started, []uint32{2, 3, 4, 5}, []uint32{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diffs, fresh := splitNewAtSource(ds, tt.t)
			if got := uids(diffs); !slices.Equal(got, tt.diffs) {
				t.Errorf("differences %v, want %v", got, tt.diffs)
			}
			if got := uids(fresh); !slices.Equal(got, tt.fresh) {
				t.Errorf("new at source %v, want %v", got, tt.fresh)
			}
			for _, f := range fresh {
				if f.Kind != KindNewAtSource || f.Got != f.arrived.Format(time.RFC3339) {
					t.Errorf("new at source %+v, want the kind and the arrival", f)
				}
			}
		})
	}
}

func TestSplitDeletedTakesOnlyRecordedCopiesOfMessagesTheSourceNoLongerHolds(t *testing.T) {
	copyOf := map[uint32]loader.Landing{
		10: {Folder: "INBOX", UIDValidity: 5, UID: 1, TargetUID: 10},
		11: {Folder: "INBOX", UIDValidity: 5, UID: 2, TargetUID: 11},
		12: {Folder: "Work", UIDValidity: 6, UID: 1, TargetUID: 12},
	}
	present := map[copyKey]bool{{"INBOX", 2}: true, {"INBOX", 1}: false, {"Work", 9}: true}
	ds := []Diff{
		{Kind: KindExtra, UID: 10}, // copy of INBOX 1, gone
		{Kind: KindExtra, UID: 11}, // copy of INBOX 2, still there
		{Kind: KindExtra, UID: 12}, // copy of Work 1, gone
		{Kind: KindExtra, UID: 13}, // no record
		{Kind: KindMissing, UID: 10},
	}
	diffs, deleted := splitDeleted(ds, copyOf, present)
	if got := uids(deleted); !slices.Equal(got, []uint32{10, 12}) {
		t.Errorf("deleted at source %v, want 10 and 12", got)
	}
	if got := uids(diffs); !slices.Equal(got, []uint32{11, 13, 10}) {
		t.Errorf("differences %v, want 11, 13 and the missing 10", got)
	}
	for _, d := range deleted {
		if d.Kind != KindDeletedAtSource || d.Got == "" {
			t.Errorf("deleted at source %+v, want the kind and the source named", d)
		}
	}
}

func TestPermitsFollowsPermanentFlags(t *testing.T) {
	tests := []struct {
		name      string
		permanent []imap.Flag
		flag      imap.Flag
		want      bool
	}{
		{"none reported: try", nil, "work", true},
		{"wildcard: any keyword", []imap.Flag{`\Seen`, imap.FlagWildcard}, "work", true},
		{"wildcard: not an unlisted system flag", []imap.Flag{`\Seen`, imap.FlagWildcard}, `\Flagged`, false},
		{"listed system flag, any case", []imap.Flag{`\Seen`}, `\SEEN`, true},
		{"listed keyword", []imap.Flag{`\Seen`, "$Forwarded"}, "$forwarded", true},
		{"unlisted keyword without wildcard", []imap.Flag{`\Seen`, `\Deleted`}, "work", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := permits(tt.permanent)(tt.flag); got != tt.want {
				t.Errorf("permits(%v)(%s) = %v, want %v", tt.permanent, tt.flag, got, tt.want)
			}
		})
	}
}

func TestPairedDifferencesNameTheTargetCopy(t *testing.T) {
	want := map[string][]fingerprint{"a": {{folder: "INBOX", uid: 1, flags: `\Seen`, date: 10}}}
	got := map[string][]fingerprint{"a": {{folder: "INBOX", uid: 7, date: 11}}}
	for _, d := range diff(want, got, nil) {
		if d.UID != 1 || d.TargetUID != 7 {
			t.Errorf("%s difference %+v: want source uid 1 and its copy 7", d.Kind, d)
		}
	}
}

func TestMovedAtSourceTakesOnlyMissingMessagesWithTheContentOfACopyDeletedAtSource(t *testing.T) {
	folders := []FolderReport{
		{Target: "INBOX", DeletedAtSource: []Diff{{Kind: KindDeletedAtSource, UID: 9, SHA256: "stored", sourceSHA256: "a", sourceFolder: "INBOX"}}},
		{Target: "Archive", Differences: []Diff{
			{Kind: KindMissing, UID: 1, SHA256: "a"},
			{Kind: KindMissing, UID: 2, SHA256: "b"},
			{Kind: KindFlags, UID: 3, SHA256: "a"},
		}},
	}
	movedAtSource(folders)
	a := folders[1]
	if got := uids(a.NewAtSource); !slices.Equal(got, []uint32{1}) || a.NewAtSource[0].Kind != KindNewAtSource || a.NewAtSource[0].Got != `moved at the source from "INBOX" after the copy` {
		t.Errorf("new at source %+v, want uid 1, moved from INBOX", a.NewAtSource)
	}
	if got := uids(a.Differences); !slices.Equal(got, []uint32{2, 3}) {
		t.Errorf("differences %v, want 2 and 3", got)
	}
}

func uids(ds []Diff) []uint32 {
	var out []uint32
	for _, d := range ds {
		out = append(out, d.UID)
	}
	return out
}
