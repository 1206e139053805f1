package imapdial

import (
	"bufio"
	"slices"
	"strings"
	"testing"
)

func TestParseResponseSplitsStatusCodeAndText(t *testing.T) {
	for _, tc := range []struct {
		line                  string
		kind                  RespKind
		tag, word, code, args string
		text                  string
	}{
		{line: "A7 OK [APPENDUID 38505 3955] APPEND completed", kind: Tagged, tag: "A7", word: "OK", code: "APPENDUID", args: "38505 3955", text: "APPEND completed"},
		{line: "A1 no [OVERQUOTA] Quota exceeded (mailbox for user is full)", kind: Tagged, tag: "A1", word: "NO", code: "OVERQUOTA", text: "Quota exceeded (mailbox for user is full)"},
		{line: "A2 BAD Error in IMAP command", kind: Tagged, tag: "A2", word: "BAD", text: "Error in IMAP command"},
		{line: "A3 OK", kind: Tagged, tag: "A3", word: "OK"},
		{line: `* OK [ALERT] "quoted ]" text`, kind: Untagged, tag: "*", word: "OK", code: "ALERT", text: `"quoted ]" text`},
		{line: `* NO [BADCHARSET ("a]b" x)] nope`, kind: Untagged, tag: "*", word: "NO", code: "BADCHARSET", args: `("a]b" x)`, text: "nope"},
		{line: "* CAPABILITY IMAP4rev1 LITERAL+", kind: Untagged, tag: "*", word: "CAPABILITY", args: "IMAP4rev1 LITERAL+"},
		{line: "* 12 EXISTS", kind: Untagged, tag: "*", word: "EXISTS"},
		{line: "+ Ready for literal data", kind: Continue, text: "Ready for literal data"},
		{line: "+", kind: Continue},
	} {
		r, err := parseResponse(tc.line)
		if err != nil {
			t.Errorf("parseResponse(%q): %v", tc.line, err)
			continue
		}
		if r.Kind != tc.kind || r.Tag != tc.tag || r.Word != tc.word || r.Code != tc.code || r.CodeArgs != tc.args || r.Text != tc.text || r.Line != tc.line {
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
		r, err := ReadResponse(br)
		if err != nil {
			t.Fatalf("ReadResponse: %v (after %v)", err, words)
		}
		words = append(words, r.Word)
		if r.Kind == Tagged {
			// A tagged status never carries a literal: "{5}" is text.
			if r.Text != "{5}" {
				t.Errorf("tagged text %q", r.Text)
			}
			break
		}
	}
	if !slices.Equal(words, []string{"FETCH", "FETCH", "OK"}) {
		t.Errorf("responses %v", words)
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
		if got := Quotable(tc.in); got != tc.canQuote {
			t.Errorf("Quotable(%q) = %v", tc.in, got)
		}
		if tc.canQuote {
			if got := string(AppendQuoted(nil, tc.in)); got != tc.quoted {
				t.Errorf("AppendQuoted(%q) = %s, want %s", tc.in, got, tc.quoted)
			}
		} else if p := astring(tc.in); !p.literal {
			t.Errorf("astring(%q) is not a literal", tc.in)
		}
	}
}

func TestHasMatchesValuedCapabilities(t *testing.T) {
	c := &Conn{}
	c.SetCaps("IMAP4rev1 literal+ APPENDLIMIT=35651584 AUTH=PLAIN")
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
