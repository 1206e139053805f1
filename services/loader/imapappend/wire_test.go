package imapappend

import (
	"bufio"
	"slices"
	"strings"
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

func TestParseResponseSplitsStatusCodeAndText(t *testing.T) {
	for _, tc := range []struct {
		line                  string
		kind                  respKind
		tag, word, code, args string
		text                  string
	}{
		{line: "A7 OK [APPENDUID 38505 3955] APPEND completed", kind: respTagged, tag: "A7", word: "OK", code: "APPENDUID", args: "38505 3955", text: "APPEND completed"},
		{line: "A1 no [OVERQUOTA] Quota exceeded (mailbox for user is full)", kind: respTagged, tag: "A1", word: "NO", code: "OVERQUOTA", text: "Quota exceeded (mailbox for user is full)"},
		{line: "A2 BAD Error in IMAP command", kind: respTagged, tag: "A2", word: "BAD", text: "Error in IMAP command"},
		{line: "A3 OK", kind: respTagged, tag: "A3", word: "OK"},
		{line: `* OK [ALERT] "quoted ]" text`, kind: respUntagged, tag: "*", word: "OK", code: "ALERT", text: `"quoted ]" text`},
		{line: `* NO [BADCHARSET ("a]b" x)] nope`, kind: respUntagged, tag: "*", word: "NO", code: "BADCHARSET", args: `("a]b" x)`, text: "nope"},
		{line: "* CAPABILITY IMAP4rev1 LITERAL+", kind: respUntagged, tag: "*", word: "CAPABILITY", args: "IMAP4rev1 LITERAL+"},
		{line: "* 12 EXISTS", kind: respUntagged, tag: "*", word: "EXISTS"},
		{line: "+ Ready for literal data", kind: respContinue, text: "Ready for literal data"},
		{line: "+", kind: respContinue},
	} {
		r, err := parseResponse(tc.line)
		if err != nil {
			t.Errorf("parseResponse(%q): %v", tc.line, err)
			continue
		}
		if r.kind != tc.kind || r.tag != tc.tag || r.word != tc.word || r.code != tc.code || r.codeArgs != tc.args || r.text != tc.text || r.line != tc.line {
			t.Errorf("parseResponse(%q) = %+v", tc.line, *r)
		}
	}
	for _, bad := range []string{"A1", "A1 MAYBE fine", ""} {
		if _, err := parseResponse(bad); err == nil {
			t.Errorf("parseResponse(%q) accepted a malformed line", bad)
		}
	}
}

func TestReadResponseSkipsLiteralsInData(t *testing.T) {
	in := "* 1 FETCH (BODY[] {5}\r\nab{3} X {2}\r\nzz)\r\n* 2 FETCH (X {0}\r\n)\r\nA1 OK {5}\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	var words []string
	for {
		r, err := readResponse(br)
		if err != nil {
			t.Fatalf("readResponse: %v (after %v)", err, words)
		}
		words = append(words, r.word)
		if r.kind == respTagged {
			// A tagged status never carries a literal: "{5}" is text.
			if r.text != "{5}" {
				t.Errorf("tagged text %q", r.text)
			}
			break
		}
	}
	if !slices.Equal(words, []string{"FETCH", "FETCH", "OK"}) {
		t.Errorf("responses %v", words)
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

func TestQuotingEscapesAndFallsBackToLiterals(t *testing.T) {
	for _, tc := range []struct {
		in       string
		quoted   string
		canQuote bool
	}{
		{in: "INBOX", quoted: `"INBOX"`, canQuote: true},
		{in: `a"b\c`, quoted: `"a\"b\\c"`, canQuote: true},
		{in: "Entw&APw-rfe", quoted: `"Entw&APw-rfe"`, canQuote: true},
		{in: "pä", canQuote: false},
		{in: "a\r\nb", canQuote: false},
	} {
		if got := quotable(tc.in); got != tc.canQuote {
			t.Errorf("quotable(%q) = %v", tc.in, got)
		}
		if tc.canQuote {
			if got := string(appendQuoted(nil, tc.in)); got != tc.quoted {
				t.Errorf("appendQuoted(%q) = %s, want %s", tc.in, got, tc.quoted)
			}
		} else if p := astring(tc.in); !p.literal {
			t.Errorf("astring(%q) is not a literal", tc.in)
		}
	}
}

func TestHasMatchesValuedCapabilities(t *testing.T) {
	c := &Client{}
	c.setCaps("IMAP4rev1 literal+ APPENDLIMIT=35651584 AUTH=PLAIN")
	for _, tc := range []struct {
		capa string
		want bool
	}{
		{"LITERAL+", true},
		{"APPENDLIMIT", true},
		{"AUTH=PLAIN", true},
		{"AUTH=LOGIN", false},
		{"MULTIAPPEND", false},
		{"APPEND", false},
	} {
		if got := c.Has(tc.capa); got != tc.want {
			t.Errorf("Has(%q) = %v", tc.capa, got)
		}
	}
	if c.AppendLimit() != 35651584 {
		t.Errorf("AppendLimit() = %d", c.AppendLimit())
	}
}
