package imapappend

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// dateTimeLayout is RFC 3501 date-time without the quotes: date-day-fixed
// is a space-padded day, hence "_2".
const dateTimeLayout = "_2-Jan-2006 15:04:05 -0700"

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
