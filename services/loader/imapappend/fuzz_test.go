package imapappend

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/shared/imapdial"
)

// maxFuzzMessages is the batch size the fuzz targets pretend to expect
// in an APPENDUID: a uid-set naming more UIDs is refused.
const maxFuzzMessages = 1000

// FuzzReadResponse feeds arbitrary server output to the response reader
// and checks what the append client relies on: no panic, no unbounded
// work, and every parsed response consistent with the line it came from.
// The seed corpus (f.Add and testdata/fuzz/FuzzReadResponse) runs on
// every `go test`; `go test -fuzz FuzzReadResponse` explores further.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"* OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS MULTIAPPEND APPENDLIMIT=35651584] Dovecot ready.\r\n",
		"A7 OK [APPENDUID 38505 3955] APPEND completed\r\n",
		"A8 OK [APPENDUID 38505 3956:3969] Append completed (0.010 + 0.000 secs).\r\n",
		"A9 OK [APPENDUID 1700000000 10,12:14,20] done\r\n",
		"A1 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n",
		"A2 NO [LIMIT] Mail size is larger than the maximum size allowed by server configuration\r\n",
		"A3 NO Message contains NUL characters\r\n",
		"A4 BAD Error in IMAP command APPEND: Invalid arguments.\r\n",
		"+ OK\r\n+\r\n",
		"* 12 EXISTS\r\n* 1 RECENT\r\n* 1 FETCH (UID 5 BODY[] {5}\r\nab{3}\r\n)\r\nA1 OK done\r\n",
		`* OK [ALERT] "quoted ]" text` + "\r\n",
		`* NO [BADCHARSET ("a]b" x)] nope` + "\r\n",
		"* BYE Server shutting down.\r\n",
		"* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\nA1 OK [CAPABILITY IMAP4rev1 MULTIAPPEND] Logged in\r\n",
		"* LIST (\\HasNoChildren) \".\" {5}\r\nIN\"BX\r\n",
		"A1 OK [APPENDUID 1 1:4294967295] too many\r\n",
		"A1 OK [APPENDUID 1 1:16777215,1:16777215,1:16777215,1:16777215] too many\r\n",
		"A1 OK [APPENDUID 0 5] zero validity\r\n",
		"A1 OK [APPENDUID 5] no set\r\n",
		"A1 OK [APPENDUID 5 0] uid zero\r\n",
		"A1 OK [APPENDUID 5 3:] open range\r\n",
		"* 1 FETCH (BODY[] {99999999999}\r\n",
		"A1 OK [\r\n",
		"A1\r\n",
		"\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		// Every response consumes at least one byte, so the input
		// bounds the loop.
		for range len(data) + 1 {
			r, err := imapdial.ReadResponse(br)
			if err != nil {
				return
			}
			checkResponse(t, r)
		}
		t.Fatalf("more responses than input bytes in %q", data)
	})
}

func checkResponse(t *testing.T, r *imapdial.Response) {
	t.Helper()
	if strings.ContainsAny(r.Line, "\n") {
		t.Fatalf("line %q holds a line feed", r.Line)
	}
	switch r.Kind {
	case imapdial.Continue:
		if !strings.HasPrefix(r.Line, "+") {
			t.Fatalf("continuation %q does not start with +", r.Line)
		}
	case imapdial.Untagged:
		if r.Tag != "*" || !strings.HasPrefix(r.Line, "* ") {
			t.Fatalf("untagged response %q with tag %q", r.Line, r.Tag)
		}
	case imapdial.Tagged:
		if r.Tag == "" || strings.ContainsAny(r.Tag, " ") || !strings.HasPrefix(r.Line, r.Tag+" ") {
			t.Fatalf("tagged response %q with tag %q", r.Line, r.Tag)
		}
		switch r.Word {
		case "OK", "NO", "BAD":
		default:
			t.Fatalf("tagged response %q with status %q", r.Line, r.Word)
		}
		if se := r.Err(); se.Line != r.Line || se.Status != r.Word || se.Code != r.Code {
			t.Fatalf("server error %+v of %q", se, r.Line)
		}
	default:
		t.Fatalf("kind %d", r.Kind)
	}
	if r.Code != strings.ToUpper(r.Code) || strings.ContainsAny(r.Code, " ]") {
		t.Fatalf("code %q of %q", r.Code, r.Line)
	}
	if r.Code != "" && !strings.Contains(strings.ToUpper(r.Line), "["+r.Code) {
		t.Fatalf("code %q is not in %q", r.Code, r.Line)
	}
	if r.Code == "APPENDUID" {
		checkAppendUID(t, r.CodeArgs)
	}
}

// FuzzParseAppendUID checks the APPENDUID parser on its own: a valid
// answer names a non-zero UIDVALIDITY and at most the expected number of
// non-zero UIDs, whatever the server wrote.
func FuzzParseAppendUID(f *testing.F) {
	for _, s := range []string{
		"38505 3955", "38505 3956:3969", "1 10,12:14,20", "1 9:5", "1 4294967295",
		"1 1:4294967295", "1 1:16777215,1:16777215,1:16777215", "0 5", "5", "5 0", "5 3:", " 5  7 ", "5 1,,2", "5 a:b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, args string) {
		checkAppendUID(t, args)
	})
}

func checkAppendUID(t *testing.T, args string) {
	t.Helper()
	validity, uids, err := parseAppendUID(args, maxFuzzMessages)
	if err != nil {
		if validity != 0 || uids != nil {
			t.Fatalf("parseAppendUID(%q) = %d, %v with error %v", args, validity, uids, err)
		}
		return
	}
	if validity == 0 || len(uids) == 0 || len(uids) > maxFuzzMessages {
		t.Fatalf("parseAppendUID(%q) = %d, %d UIDs", args, validity, len(uids))
	}
	for _, u := range uids {
		if u == 0 {
			t.Fatalf("parseAppendUID(%q) names UID 0", args)
		}
	}
}
