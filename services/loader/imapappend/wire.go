package imapappend

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// maxLineBytes bounds one response line, so a broken server cannot make
// the client buffer without end. Dovecot's longest lines (CAPABILITY) are
// well below 1 KiB.
const maxLineBytes = 1 << 20

// maxResponseLiteral bounds a literal inside a server response; such
// literals are discarded, never kept, but an absurd size means the stream
// is out of sync.
const maxResponseLiteral = 1 << 30

// dateTimeLayout is RFC 3501 date-time without the quotes: date-day-fixed
// is a space-padded day, hence "_2".
const dateTimeLayout = "_2-Jan-2006 15:04:05 -0700"

type respKind int

const (
	respTagged respKind = iota
	respUntagged
	respContinue
)

// response is one parsed server response. Only what an append client needs
// is parsed: the status, the response code and its arguments.
type response struct {
	kind respKind
	tag  string
	// word is the status (OK, NO, BAD, BYE, PREAUTH) or the data keyword
	// (CAPABILITY, EXISTS, ...) in upper case.
	word     string
	code     string // response code atom in upper case
	codeArgs string // the rest of the response code
	text     string // human-readable text
	line     string // the first line as sent, without CRLF
}

func (r *response) isStatus() bool {
	switch r.word {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		return true
	}
	return false
}

// serverError turns a NO or BAD response into an error.
func (r *response) serverError() *ServerError {
	return &ServerError{Status: r.word, Code: r.code, Text: r.text, Line: r.line}
}

// readLine reads one line without its CRLF.
func readLine(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > maxLineBytes {
			return "", fmt.Errorf("response line longer than %d bytes", maxLineBytes)
		}
		if err == nil {
			if buf == nil {
				return string(trimEOL(chunk)), nil
			}
			buf = append(buf, chunk...)
			return string(trimEOL(buf)), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		buf = append(buf, chunk...)
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// readResponse reads one whole response. Literals can only occur in data
// responses (say an untagged FETCH); they are skipped, because nothing an
// append client needs is in them.
func readResponse(br *bufio.Reader) (*response, error) {
	line, err := readLine(br)
	if err != nil {
		return nil, err
	}
	r, err := parseResponse(line)
	if err != nil {
		return nil, err
	}
	if r.kind != respUntagged || r.isStatus() {
		return r, nil
	}
	for rest := line; ; {
		n, ok := literalSuffix(rest)
		if !ok {
			return r, nil
		}
		if n > maxResponseLiteral {
			return nil, fmt.Errorf("response literal of %d bytes", n)
		}
		if _, err := io.CopyN(io.Discard, br, n); err != nil {
			return nil, fmt.Errorf("skip response literal: %w", err)
		}
		if rest, err = readLine(br); err != nil {
			return nil, err
		}
	}
}

// literalSuffix reports the size of a literal announced at the end of line.
func literalSuffix(line string) (int64, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(line[i+1:len(line)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// parseResponse parses the first line of a response.
func parseResponse(line string) (*response, error) {
	r := &response{line: line}
	switch {
	case strings.HasPrefix(line, "+"):
		r.kind = respContinue
		r.text = strings.TrimPrefix(line[1:], " ")
		return r, nil
	case strings.HasPrefix(line, "* "):
		r.kind = respUntagged
		r.tag = "*"
		word, rest, _ := strings.Cut(line[2:], " ")
		if isNumber(word) {
			// "* 23 EXISTS", "* 5 FETCH (...)": message data.
			word, _, _ = strings.Cut(rest, " ")
			r.word = strings.ToUpper(word)
			return r, nil
		}
		r.word = strings.ToUpper(word)
		if r.isStatus() {
			r.code, r.codeArgs, r.text = parseRespText(rest)
		} else {
			r.codeArgs = rest
		}
		return r, nil
	}
	tag, rest, ok := strings.Cut(line, " ")
	if !ok || tag == "" {
		return nil, fmt.Errorf("malformed response %q", line)
	}
	word, rest, _ := strings.Cut(rest, " ")
	r.kind = respTagged
	r.tag = tag
	r.word = strings.ToUpper(word)
	switch r.word {
	case "OK", "NO", "BAD":
	default:
		return nil, fmt.Errorf("malformed tagged response %q", line)
	}
	r.code, r.codeArgs, r.text = parseRespText(rest)
	return r, nil
}

// parseRespText splits resp-text into the response code, its arguments
// and the text. The code is an atom, ending at a space or at "]"; only its
// arguments may hold quoted strings, with "]" inside.
func parseRespText(s string) (code, args, text string) {
	if !strings.HasPrefix(s, "[") {
		return "", "", s
	}
	i := 1
	for i < len(s) && s[i] != ' ' && s[i] != ']' {
		i++
	}
	if i == len(s) {
		return "", "", s
	}
	code = strings.ToUpper(s[1:i])
	if s[i] == ']' {
		return code, "", strings.TrimPrefix(s[i+1:], " ")
	}
	quoted := false
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case quoted && c == '\\':
			j++
		case c == '"':
			quoted = !quoted
		case !quoted && c == ']':
			return code, s[i+1 : j], strings.TrimPrefix(s[j+1:], " ")
		}
	}
	return "", "", s
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// quotable reports whether s can be sent as a quoted string: IMAP4rev1
// quoted strings are 7-bit and cannot hold NUL, CR or LF.
func quotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b == 0 || b == '\r' || b == '\n' || b >= 0x80 {
			return false
		}
	}
	return true
}

// appendQuoted appends s as a quoted string; s must be quotable.
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}

// validFlag reports whether f can be sent as a flag: a system flag
// ("\Seen") or a keyword ("$Label1"), both atoms.
func validFlag(f string) bool {
	s := strings.TrimPrefix(f, `\`)
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; b <= ' ' || b >= 0x7f || strings.IndexByte(`(){%*"\]`, b) >= 0 {
			return false
		}
	}
	return true
}

// appendMeta appends the optional flag list and date-time of an APPEND,
// each followed by a space. \Recent is dropped: only the server may set it.
func appendMeta(dst []byte, m *Message) ([]byte, error) {
	open := false
	for _, f := range m.Flags {
		if strings.EqualFold(f, `\Recent`) {
			continue
		}
		if !validFlag(f) {
			return nil, fmt.Errorf("flag %q is not an IMAP atom", f)
		}
		if open {
			dst = append(dst, ' ')
		} else {
			dst = append(dst, '(')
			open = true
		}
		dst = append(dst, f...)
	}
	if open {
		dst = append(dst, ") "...)
	}
	if !m.Date.IsZero() {
		if y := m.Date.Year(); y < 1000 || y > 9999 {
			return nil, fmt.Errorf("date %s cannot be written as an IMAP date-time", m.Date.Format(time.RFC3339))
		}
		dst = append(dst, '"')
		dst = m.Date.AppendFormat(dst, dateTimeLayout)
		dst = append(dst, `" `...)
	}
	return dst, nil
}

// parseUIDSet expands an RFC 4315 uid-set ("5", "5:9", "5,7,9:11") in the
// order given. A range may be written high:low. A set naming more than max
// UIDs is an error: the server's answer decides how much memory the
// expansion takes, and an APPENDUID can only name one UID per message
// appended.
func parseUIDSet(s string, max int) ([]uint32, error) {
	var out []uint32
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil || a == 0 {
			return nil, fmt.Errorf("uid-set %q: bad uid %q", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil || b == 0 {
				return nil, fmt.Errorf("uid-set %q: bad uid %q", s, hi)
			}
			if a > b {
				a, b = b, a
			}
		}
		if b-a >= uint64(max-len(out)) {
			return nil, fmt.Errorf("uid-set %q: more than %d UIDs", s, max)
		}
		for u := a; u <= b; u++ {
			out = append(out, uint32(u))
		}
	}
	return out, nil
}

// parseAppendUID parses the arguments of an APPENDUID response code:
// "uidvalidity uid-set", the set naming at most max UIDs.
func parseAppendUID(args string, max int) (uint32, []uint32, error) {
	v, set, ok := strings.Cut(strings.TrimSpace(args), " ")
	if !ok {
		return 0, nil, fmt.Errorf("APPENDUID %q: want uidvalidity and uid-set", args)
	}
	validity, err := strconv.ParseUint(v, 10, 32)
	if err != nil || validity == 0 {
		return 0, nil, fmt.Errorf("APPENDUID %q: bad uidvalidity", args)
	}
	uids, err := parseUIDSet(strings.TrimSpace(set), max)
	if err != nil {
		return 0, nil, fmt.Errorf("APPENDUID: %w", err)
	}
	return uint32(validity), uids, nil
}
