package legacyimap

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// FuzzServerAnswers feeds arbitrary server output to the response reader
// and the LOGIN verdict: no input may panic them, make a line longer than
// maxLine or turn anything but a tagged OK into a success.
func FuzzServerAnswers(f *testing.F) {
	for _, seed := range []string{
		"* OK [CAPABILITY IMAP4rev1 ID LITERAL+ STARTTLS] ready\r\n",
		"* ID (\"name\" {7}\r\nDovecot)\r\nL1 OK ID completed\r\n",
		"L3 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
		"L3 NO [UNAVAILABLE] Temporary authentication failure.\r\n",
		"+ OK\r\nL3 OK [CAPABILITY IMAP4rev1] Logged in\r\n",
		"* BYE bye\r\n",
		"* X {99999999999}\r\n",
		"* X {-1}\r\n{3+}\r\nabc\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &session{r: bufio.NewReaderSize(bytes.NewReader(data), 4096)}
		for {
			l, err := s.readLine()
			if err != nil {
				return
			}
			if len(l) > 2*maxLine+2 { // quoting may double a literal's bytes
				t.Fatalf("line of %d bytes", len(l))
			}
			if ok, err := verdict("L3", l); ok && (err != nil || !strings.HasPrefix(strings.ToUpper(strings.TrimPrefix(l, "L3 ")), "OK")) {
				t.Fatalf("verdict(%q) = success", l)
			}
		}
	})
}
