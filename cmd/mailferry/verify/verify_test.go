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
	tests := []struct {
		name      string
		want, got map[string][]fingerprint
		kinds     []string
	}{
		{"equal", map[string][]fingerprint{"a": {fp(1, `\Seen`, 10)}}, map[string][]fingerprint{"a": {fp(7, `\Seen`, 10)}}, nil},
		{"missing copy of a duplicate", map[string][]fingerprint{"a": {fp(1, "", 10), fp(2, "", 10)}}, map[string][]fingerprint{"a": {fp(7, "", 10)}}, []string{"missing"}},
		{"extra copy", map[string][]fingerprint{"a": {fp(1, "", 10)}}, map[string][]fingerprint{"a": {fp(7, "", 10), fp(8, "", 10)}}, []string{"extra"}},
		{"flags differ", map[string][]fingerprint{"a": {fp(1, `\Seen`, 10)}}, map[string][]fingerprint{"a": {fp(7, "", 10)}}, []string{"flags"}},
		{"date differs", map[string][]fingerprint{"a": {fp(1, "", 10)}}, map[string][]fingerprint{"a": {fp(7, "", 11)}}, []string{"date"}},
		{"duplicates with different flags pair exactly", map[string][]fingerprint{"a": {fp(1, "", 10), fp(2, `\Seen`, 10)}}, map[string][]fingerprint{"a": {fp(8, `\Seen`, 10), fp(9, "", 10)}}, nil},
		{"different content", map[string][]fingerprint{"a": {fp(1, "", 10)}}, map[string][]fingerprint{"b": {fp(7, "", 10)}}, []string{"missing", "extra"}},
		{"line endings altered by the target", map[string][]fingerprint{"a": {lfp(1, "n")}}, map[string][]fingerprint{"b": {lfp(7, "n")}}, []string{"altered"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := diff(tt.want, tt.got)
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
