package foldermap

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
)

// ErrMalformedUTF7 is wrapped by every DecodeUTF7 error.
var ErrMalformedUTF7 = errors.New("foldermap: malformed modified UTF-7")

// b64 is the modified BASE64 alphabet of RFC 3501 5.1.3: "," replaces "/"
// because "/" is a common hierarchy delimiter.
const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

// direct reports whether r represents itself in modified UTF-7.
func direct(r rune) bool { return r >= 0x20 && r <= 0x7e }

// EncodeUTF7 encodes a UTF-8 mailbox name as modified UTF-7 (RFC 3501
// 5.1.3). The output is canonical: "&" becomes "&-" and each maximal run of
// other characters becomes one base64 section. Invalid UTF-8 bytes are
// encoded as U+FFFD, so only valid UTF-8 round-trips exactly.
func EncodeUTF7(s string) string {
	var b strings.Builder
	var run []uint16
	for _, r := range s {
		if !direct(r) {
			run = utf16.AppendRune(run, r)
			continue
		}
		writeBase64(&b, run)
		run = run[:0]
		b.WriteRune(r)
		if r == '&' {
			b.WriteByte('-')
		}
	}
	writeBase64(&b, run)
	return b.String()
}

// writeBase64 writes units as one "&...-" section, padding the final sextet
// with zero bits as the RFC requires.
func writeBase64(b *strings.Builder, units []uint16) {
	if len(units) == 0 {
		return
	}
	b.WriteByte('&')
	var acc uint32
	bits := 0
	for _, u := range units {
		acc = acc<<16 | uint32(u)
		for bits += 16; bits >= 6; {
			bits -= 6
			b.WriteByte(b64[acc>>bits&0x3f])
		}
		acc &= 1<<bits - 1
	}
	if bits > 0 {
		b.WriteByte(b64[acc<<(6-bits)&0x3f])
	}
	b.WriteByte('-')
}

// DecodeUTF7 decodes a modified UTF-7 mailbox name to UTF-8. It is strict:
// it accepts exactly the strings EncodeUTF7 produces, rejecting raw 8-bit or
// control bytes, unterminated or empty-payload shifts, adjacent base64
// sections, characters outside the alphabet, leftover or non-zero padding
// bits, unpaired surrogates, and base64-encoded printable ASCII.
func DecodeUTF7(s string) (string, error) {
	var b strings.Builder
	prevB64 := false
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c < 0x20 || c > 0x7e:
			return "", fmt.Errorf("%w: byte 0x%02x at offset %d is not printable ASCII", ErrMalformedUTF7, c, i)
		case c != '&':
			b.WriteByte(c)
			i++
			prevB64 = false
		case strings.HasPrefix(s[i:], "&-"):
			b.WriteByte('&')
			i += 2
			prevB64 = false
		case prevB64:
			// A canonical encoder merges adjacent runs, so "&..-&..-" means
			// the name was not produced by one (RFC 3501 5.1.3).
			return "", fmt.Errorf("%w: adjacent base64 sections at offset %d", ErrMalformedUTF7, i)
		default:
			n, err := decodeSection(&b, s[i+1:])
			if err != nil {
				return "", fmt.Errorf("%w: section at offset %d: %w", ErrMalformedUTF7, i, err)
			}
			i += 1 + n
			prevB64 = true
		}
	}
	return b.String(), nil
}

// decodeSection decodes the base64 after "&" up to and including the
// closing "-", writing UTF-8 to b and returning the bytes consumed.
func decodeSection(b *strings.Builder, s string) (int, error) {
	end := strings.IndexFunc(s, func(r rune) bool { return !strings.ContainsRune(b64, r) })
	if end < 0 || s[end] != '-' {
		return 0, errors.New("base64 not terminated by '-'")
	}
	units, err := unpackBase64(s[:end])
	if err != nil {
		return 0, err
	}
	if err := writeUTF16(b, units); err != nil {
		return 0, err
	}
	return end + 1, nil
}

// unpackBase64 turns sextets into UTF-16 units, insisting on the shortest
// encoding: fewer than 6 leftover bits, all zero.
func unpackBase64(s string) ([]uint16, error) {
	var units []uint16
	var acc uint32
	bits := 0
	for i := 0; i < len(s); i++ {
		acc = acc<<6 | uint32(strings.IndexByte(b64, s[i]))
		if bits += 6; bits >= 16 {
			bits -= 16
			units = append(units, uint16(acc>>bits))
			acc &= 1<<bits - 1
		}
	}
	switch {
	case bits >= 6:
		return nil, fmt.Errorf("%d base64 characters do not end on a UTF-16 unit", len(s))
	case acc != 0:
		return nil, errors.New("non-zero padding bits")
	}
	return units, nil
}

// writeUTF16 decodes units strictly to b.
func writeUTF16(b *strings.Builder, units []uint16) error {
	for i := 0; i < len(units); i++ {
		r := rune(units[i])
		switch {
		case utf16.IsSurrogate(r):
			if i+1 == len(units) {
				return fmt.Errorf("unpaired surrogate %U", r)
			}
			pair := utf16.DecodeRune(r, rune(units[i+1]))
			if pair == unicode.ReplacementChar {
				return fmt.Errorf("invalid surrogate pair %U %U", r, units[i+1])
			}
			r = pair
			i++
		case direct(r):
			return fmt.Errorf("printable ASCII %q must represent itself", r)
		}
		b.WriteRune(r)
	}
	return nil
}
