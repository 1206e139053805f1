package imapdial

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// maxLineBytes bounds one response line, so a broken server cannot make
// the client buffer without end. Dovecot's longest lines (CAPABILITY) are
// well below 1 KiB.
const maxLineBytes = 1 << 20

// maxResponseLiteral bounds a literal inside a server response; such
// literals are discarded, never kept, but an absurd size means the stream
// is out of sync.
const maxResponseLiteral = 1 << 30

// RespKind tells tagged answers, untagged data and continuation requests
// apart.
type RespKind int

// Kinds of responses.
const (
	Tagged RespKind = iota
	Untagged
	Continue
)

// Response is one server response, parsed only as far as a client that
// logs in and appends needs: the status, the response code and its
// arguments. It is exported for imapappend, which reads the answers to its
// pipelined APPENDs on a Conn's wire itself.
type Response struct {
	Kind RespKind
	// Tag is the command's tag, "*" for untagged data, empty for "+".
	Tag string
	// Word is the status (OK, NO, BAD, BYE, PREAUTH) or the data keyword
	// (CAPABILITY, EXISTS, ...) in upper case.
	Word string
	// Code is the response code atom in upper case, CodeArgs the rest of
	// the code (for CAPABILITY data: the capability list).
	Code, CodeArgs string
	// Text is the human-readable text.
	Text string
	// Line is the first line as sent, without CRLF.
	Line string
}

func (r *Response) isStatus() bool {
	switch r.Word {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		return true
	}
	return false
}

// Err turns a NO or BAD response into the error a caller can inspect.
func (r *Response) Err() *ServerError {
	return &ServerError{Status: r.Word, Code: r.Code, Text: r.Text, Line: r.Line}
}

// ServerError is a NO or BAD answer of the server, kept whole so callers
// can decide by its code and show the server's own words.
type ServerError struct {
	// Status is "NO" or "BAD".
	Status string
	// Code is the response code atom in upper case, such as "OVERQUOTA",
	// "TOOBIG", "LIMIT", "TRYCREATE", "AUTHENTICATIONFAILED" or "CANNOT";
	// empty when the server sent none.
	Code string
	// Text is the human-readable text after the response code.
	Text string
	// Line is the exact line the server sent, without CRLF, so a dead-letter
	// record can show what the server said.
	Line string
}

// Error returns the status, the code and the text.
func (e *ServerError) Error() string {
	var b strings.Builder
	b.WriteString("server said ")
	b.WriteString(e.Status)
	if e.Code != "" {
		b.WriteString(" [")
		b.WriteString(e.Code)
		b.WriteString("]")
	}
	if e.Text != "" {
		b.WriteString(" ")
		b.WriteString(e.Text)
	}
	return b.String()
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

// ReadResponse reads one whole response. Literals can only occur in data
// responses (say an untagged FETCH); they are skipped, because nothing a
// login or an append needs is in them.
func ReadResponse(br *bufio.Reader) (*Response, error) {
	line, err := readLine(br)
	if err != nil {
		return nil, err
	}
	return responseFrom(line, br)
}

// responseFrom reads the rest of the response whose first line is line.
func responseFrom(line string, br *bufio.Reader) (*Response, error) {
	r, err := parseResponse(line)
	if err != nil {
		return nil, err
	}
	if r.Kind != Untagged || r.isStatus() {
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
func parseResponse(line string) (*Response, error) {
	r := &Response{Line: line}
	switch {
	case strings.HasPrefix(line, "+"):
		r.Kind = Continue
		r.Text = strings.TrimPrefix(line[1:], " ")
		return r, nil
	case strings.HasPrefix(line, "* "):
		r.Kind = Untagged
		r.Tag = "*"
		word, rest, _ := strings.Cut(line[2:], " ")
		if isNumber(word) {
			// "* 23 EXISTS", "* 5 FETCH (...)": message data.
			word, _, _ = strings.Cut(rest, " ")
			r.Word = strings.ToUpper(word)
			return r, nil
		}
		r.Word = strings.ToUpper(word)
		if r.isStatus() {
			r.Code, r.CodeArgs, r.Text = parseRespText(rest)
		} else {
			r.CodeArgs = rest
		}
		return r, nil
	}
	tag, rest, ok := strings.Cut(line, " ")
	if !ok || tag == "" {
		return nil, fmt.Errorf("malformed response %q", line)
	}
	word, rest, _ := strings.Cut(rest, " ")
	r.Kind = Tagged
	r.Tag = tag
	r.Word = strings.ToUpper(word)
	switch r.Word {
	case "OK", "NO", "BAD":
	default:
		return nil, fmt.Errorf("malformed tagged response %q", line)
	}
	r.Code, r.CodeArgs, r.Text = parseRespText(rest)
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

// Quotable reports whether s can be sent as a quoted string: IMAP4rev1
// quoted strings are 7-bit and cannot hold NUL, CR or LF. Anything else
// must go as a literal.
func Quotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b == 0 || b == '\r' || b == '\n' || b >= 0x80 {
			return false
		}
	}
	return true
}

// AppendQuoted appends s as a quoted string; s must be Quotable.
func AppendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}
