package imapappend

import (
	"slices"
	"testing"
	"time"
)

func TestParseUIDSetExpandsRangesAndLists(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []uint32
		wantErr bool
	}{
		{in: "5", want: []uint32{5}},
		{in: "5:9", want: []uint32{5, 6, 7, 8, 9}},
		{in: "9:5", want: []uint32{5, 6, 7, 8, 9}},
		{in: "5,6,8:9", want: []uint32{5, 6, 8, 9}},
		{in: "4294967295", want: []uint32{4294967295}},
		{in: "0", wantErr: true},
		{in: "5:", wantErr: true},
		{in: "a", wantErr: true},
		{in: "1:4294967295", wantErr: true},
		// More UIDs than the batch has messages: a server's answer must
		// not decide how much memory the client spends.
		{in: "1:11", wantErr: true},
		{in: "1:5,7:12", wantErr: true},
		{in: "1:10", want: []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	} {
		got, err := parseUIDSet(tc.in, 10)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("parseUIDSet(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestAppendMetaFormatsFlagsAndSpacePaddedDate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msg     Message
		want    string
		wantErr bool
	}{
		{name: "nothing", msg: Message{}, want: ""},
		{
			name: "single-digit day is space padded",
			msg:  Message{Flags: []string{`\Seen`, `$Label1`}, Date: time.Date(2006, 1, 2, 15, 4, 5, 0, time.FixedZone("", -7*3600))},
			want: `(\Seen $Label1) " 2-Jan-2006 15:04:05 -0700" `,
		},
		{
			name: "two-digit day and half-hour zone",
			msg:  Message{Date: time.Date(2021, 12, 24, 9, 0, 0, 0, time.FixedZone("", 5*3600+1800))},
			want: `"24-Dec-2021 09:00:00 +0530" `,
		},
		{name: "recent is dropped", msg: Message{Flags: []string{`\Recent`}}, want: ""},
		{name: "recent among others is dropped", msg: Message{Flags: []string{`\recent`, `\Flagged`}}, want: `(\Flagged) `},
		{name: "flag with space is refused", msg: Message{Flags: []string{"two words"}}, wantErr: true},
		{name: "wildcard flag is refused", msg: Message{Flags: []string{`\*`}}, wantErr: true},
		{name: "year 0 is refused", msg: Message{Date: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appendMeta(nil, &tc.msg)
			if (err != nil) != tc.wantErr || string(got) != tc.want {
				t.Errorf("appendMeta = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
