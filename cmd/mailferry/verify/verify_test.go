package verify

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/services/loader"
)

func TestDiffPairsIdenticalCopiesAndNamesEachDifference(t *testing.T) {
	fp := func(uid uint32, flags string, date int64) fingerprint {
		return fingerprint{folder: "INBOX", uid: uid, flags: flags, date: date}
	}
	lfp := func(uid uint32, lines string) fingerprint {
		return fingerprint{folder: "INBOX", uid: uid, date: 10, lines: lines}
	}
	loosefp := func(uid uint32, lines, loose string) fingerprint {
		return fingerprint{folder: "INBOX", uid: uid, date: 10, lines: lines, loose: loose}
	}
	tests := []struct {
		name      string
		want, got map[string][]fingerprint
		kinds     []string
		copies    map[copyKey]recorded
	}{
		{"equal", map[string][]fingerprint{"a": {fp(1, `\Seen`, 10)}}, map[string][]fingerprint{"a": {fp(7, `\Seen`, 10)}}, nil, nil},
		{"missing copy of a duplicate", map[string][]fingerprint{"a": {fp(1, "", 10), fp(2, "", 10)}}, map[string][]fingerprint{"a": {fp(7, "", 10)}}, []string{"missing"}, nil},
		{"extra copy", map[string][]fingerprint{"a": {fp(1, "", 10)}}, map[string][]fingerprint{"a": {fp(7, "", 10), fp(8, "", 10)}}, []string{"extra"}, nil},
		{"flags differ", map[string][]fingerprint{"a": {fp(1, `\Seen`, 10)}}, map[string][]fingerprint{"a": {fp(7, "", 10)}}, []string{"flags"}, nil},
		{"date differs", map[string][]fingerprint{"a": {fp(1, "", 10)}}, map[string][]fingerprint{"a": {fp(7, "", 11)}}, []string{"date"}, nil},
		{"duplicates with different flags pair exactly", map[string][]fingerprint{"a": {fp(1, "", 10), fp(2, `\Seen`, 10)}}, map[string][]fingerprint{"a": {fp(8, `\Seen`, 10), fp(9, "", 10)}}, nil, nil},
		{"different content", map[string][]fingerprint{"a": {fp(1, "", 10)}}, map[string][]fingerprint{"b": {fp(7, "", 10)}}, []string{"missing", "extra"}, nil},
		{"line endings altered by the target", map[string][]fingerprint{"a": {lfp(1, "n")}}, map[string][]fingerprint{"b": {lfp(7, "n")}}, []string{"altered"}, nil},
		{"bytes altered, as the ledger recorded", map[string][]fingerprint{"a": {fp(1, "", 10)}}, map[string][]fingerprint{"b": {fp(7, "", 10)}}, []string{"altered"},
			map[copyKey]recorded{{"INBOX", 1}: {uid: 7, stored: "b"}}},
		{"bytes altered, the ledger naming only the uid", map[string][]fingerprint{"a": {fp(1, "", 10)}}, map[string][]fingerprint{"b": {fp(7, "", 10)}}, []string{"altered"},
			map[copyKey]recorded{{"INBOX", 1}: {uid: 7}}},
		{"altered copy with other flags", map[string][]fingerprint{"a": {fp(1, `\Seen`, 10)}}, map[string][]fingerprint{"b": {fp(7, "", 10)}}, []string{"altered", "flags"},
			map[copyKey]recorded{{"INBOX", 1}: {uid: 7, stored: "b"}}},
		{"ledger names another copy", map[string][]fingerprint{"a": {fp(1, "", 10)}}, map[string][]fingerprint{"b": {fp(7, "", 10)}}, []string{"missing", "extra"},
			map[copyKey]recorded{{"INBOX", 1}: {uid: 8, stored: "b"}}},
		{"NUL bytes rewritten by the target", map[string][]fingerprint{"a": {loosefp(1, "la", "x")}}, map[string][]fingerprint{"b": {loosefp(7, "lb", "x")}}, []string{"altered"}, nil},
		{"loose forms differ", map[string][]fingerprint{"a": {loosefp(1, "la", "x")}}, map[string][]fingerprint{"b": {loosefp(7, "lb", "y")}}, []string{"missing", "extra"}, nil},
		{"ledger pair wins over a line-ending look-alike", map[string][]fingerprint{"a": {lfp(1, "n")}, "c": {lfp(2, "n")}}, map[string][]fingerprint{"b": {lfp(7, "n")}, "d": {lfp(8, "n")}},
			[]string{"altered", "altered"}, map[copyKey]recorded{{"INBOX", 2}: {uid: 7, stored: "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := diff(tt.want, tt.got, tt.copies)
			if len(d) != len(tt.kinds) {
				t.Fatalf("diff = %+v, want kinds %v", d, tt.kinds)
			}
			for i, k := range tt.kinds {
				if d[i].Kind != k {
					t.Errorf("diff[%d] = %+v, want %s", i, d[i], k)
				}
			}
		})
	}
}

func TestCopiesRecordedBeforeARenumberingArePairedByContentOrTakenForDeleted(t *testing.T) {
	fp := func(uid uint32) fingerprint { return fingerprint{folder: "INBOX", uid: uid, date: 10} }
	old := func(uid, target uint32, sha, stored string) loader.Landing {
		return loader.Landing{Folder: "INBOX", UID: uid, TargetUID: target, SHA256: sha, StoredSHA256: stored, Renumbered: true}
	}
	tests := []struct {
		name       string
		want, got  map[string][]fingerprint
		renumbered []loader.Landing
		kinds      []string // after splitting off the deleted at source
		deleted    int
	}{
		{"copies equal to the source need nothing", map[string][]fingerprint{"a": {fp(1)}, "b": {fp(2)}}, map[string][]fingerprint{"a": {fp(7)}, "b": {fp(8)}},
			[]loader.Landing{old(5, 7, "a", ""), old(6, 8, "b", "")}, nil, 0},
		{"an altered copy pairs with the message of its source's content, whatever its UID now",
			map[string][]fingerprint{"a": {fp(1)}}, map[string][]fingerprint{"x": {fp(7)}},
			[]loader.Landing{old(5, 7, "a", "x")}, []string{"altered"}, 0},
		{"a copy whose message is gone is deleted at source", map[string][]fingerprint{"a": {fp(1)}}, map[string][]fingerprint{"a": {fp(7)}, "b": {fp(8)}},
			[]loader.Landing{old(2, 7, "a", ""), old(1, 8, "b", "")}, nil, 1},
		{"the surplus copy of two with the same content is deleted at source, the other pairs",
			map[string][]fingerprint{"a": {fp(1)}}, map[string][]fingerprint{"a": {fp(7), fp(8)}},
			[]loader.Landing{old(1, 7, "a", ""), old(2, 8, "a", "")}, nil, 1},
		{"an unrecorded extra copy stays extra", map[string][]fingerprint{"a": {fp(1)}}, map[string][]fingerprint{"a": {fp(7)}, "c": {fp(9)}},
			[]loader.Landing{old(1, 7, "a", "")}, []string{"extra"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			copies, copyOf := map[copyKey]recorded{}, map[uint32]loader.Landing{}
			ds := diff(tt.want, tt.got, copies)
			if bindRenumbered(ds, tt.want, tt.renumbered, copies, copyOf) {
				ds = diff(tt.want, tt.got, copies)
			}
			present := map[copyKey]bool{}
			for _, fps := range tt.want {
				for _, f := range fps {
					present[copyKey{f.folder, f.uid}] = true
				}
			}
			ds, deleted := splitDeleted(ds, copyOf, present)
			var kinds []string
			for _, d := range ds {
				kinds = append(kinds, d.Kind)
			}
			if fmt.Sprint(kinds) != fmt.Sprint(tt.kinds) || len(deleted) != tt.deleted {
				t.Errorf("differences %v, %d deleted at source; want %v, %d", kinds, len(deleted), tt.kinds, tt.deleted)
			}
			for _, d := range deleted {
				if !strings.Contains(d.Got, "renumbered") {
					t.Errorf("deleted at source explained as %q", d.Got)
				}
			}
		})
	}
}
