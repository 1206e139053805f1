package verify

import (
	"testing"
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
