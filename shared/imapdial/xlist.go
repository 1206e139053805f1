package imapdial

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/foldermap"
)

// maxXListNameBytes bounds a folder name sent as a literal in an XLIST
// answer; real names are far shorter (MailEnable crashed on long ones).
const maxXListNameBytes = 64 << 10

// UsesXList reports whether folder roles must come from XLIST: the server
// advertises XLIST (MailEnable 4.x–9.x, old Gmail) but not SPECIAL-USE,
// whose LIST attributes are preferred when both are there.
func (c *Conn) UsesXList() bool { return c.Has("XLIST") && !c.Has("SPECIAL-USE") }

// XListRoles asks for every folder with XLIST "" "*" and returns the
// special-use role (RFC 6154) of each folder that has one, by its UTF-8
// name: \Spam is \Junk, \AllMail is \All; \Inbox (XLIST's localized name
// of INBOX, which LIST calls INBOX anyway), \Starred and \Important are
// left out. "* LIST" answers count as "* XLIST" ones (Dovecot 2.3 answers
// XLIST so). Call it only when UsesXList. go-imap's client has no XLIST,
// so it runs on the Conn, before Client hands it over.
func (c *Conn) XListRoles(ctx context.Context) (map[string]imap.MailboxAttr, error) {
	if c.broken != nil {
		return nil, fmt.Errorf("xlist: connection unusable: %w", c.broken)
	}
	w := c.Watch(ctx)
	roles, err := c.xlist()
	w.Stop()
	if err != nil {
		return nil, fmt.Errorf("xlist folders on %s: %w", c.addr, w.Err(err))
	}
	return roles, nil
}

func (c *Conn) xlist() (map[string]imap.MailboxAttr, error) {
	tag := c.NextTag()
	c.bw.WriteString(tag + ` XLIST "" "*"` + "\r\n")
	if err := c.bw.Flush(); err != nil {
		return nil, c.Fail(err)
	}
	roles := map[string]imap.MailboxAttr{}
	for {
		line, err := readLine(c.br)
		if err != nil {
			return nil, c.Fail(err)
		}
		rest, ok := cutFold(line, "* XLIST ")
		if !ok {
			// Dovecot takes XLIST for LIST and answers with LIST lines,
			// their special-use attributes the roles.
			rest, ok = cutFold(line, "* LIST ")
		}
		if ok {
			attrs, name, err := parseXList(rest, c.br)
			if err != nil {
				return nil, c.Fail(fmt.Errorf("%w: %q", err, line))
			}
			if role := xlistRole(attrs); role != "" {
				roles[name] = role
			}
			continue
		}
		// Any other response, read whole (its literals skipped) and
		// applied as a login or an append would.
		r, err := responseFrom(line, c.br)
		if err != nil {
			return nil, c.Fail(err)
		}
		switch {
		case r.Kind == Untagged:
			c.Untagged(r)
		case r.Kind == Continue:
			return nil, c.Fail(fmt.Errorf("unexpected continuation request: %q", r.Line))
		case r.Tag == tag:
			if err := c.tagged(r); err != nil {
				return nil, err
			}
			return roles, nil
		default:
			return nil, c.Fail(fmt.Errorf("response to unknown tag: %q", r.Line))
		}
	}
}

// cutFold is strings.CutPrefix with the prefix compared case-insensitively.
func cutFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// parseXList parses the rest of "* XLIST (attrs) delim name": the
// attributes, and the name decoded from modified UTF-7 (kept as sent when
// it is not valid modified UTF-7). A name sent as a literal is read from
// br, and the line ending after it.
func parseXList(s string, br *bufio.Reader) ([]string, string, error) {
	if !strings.HasPrefix(s, "(") {
		return nil, "", errors.New("xlist: no attribute list")
	}
	end := strings.IndexByte(s, ')')
	if end < 0 {
		return nil, "", errors.New("xlist: attribute list not closed")
	}
	attrs := strings.Fields(s[1:end])
	s = strings.TrimPrefix(s[end+1:], " ")
	// The delimiter: NIL or a quoted character (maybe escaped).
	switch {
	case len(s) >= 3 && strings.EqualFold(s[:3], "NIL"):
		s = s[3:]
	case strings.HasPrefix(s, `"\`) && len(s) >= 4 && s[3] == '"':
		s = s[4:]
	case strings.HasPrefix(s, `"`) && len(s) >= 3 && s[2] == '"':
		s = s[3:]
	default:
		return nil, "", errors.New("xlist: bad delimiter")
	}
	if !strings.HasPrefix(s, " ") {
		return nil, "", errors.New("xlist: no name")
	}
	raw, err := xlistName(s[1:], br)
	if err != nil {
		return nil, "", err
	}
	name, err := foldermap.DecodeUTF7(raw)
	if err != nil {
		name = raw
	}
	return attrs, name, nil
}

// xlistName reads an astring: quoted, literal or atom.
func xlistName(s string, br *bufio.Reader) (string, error) {
	switch {
	case strings.HasPrefix(s, `"`):
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				if i+1 == len(s) {
					return "", errors.New("xlist: bad quoted name")
				}
				i++
				b.WriteByte(s[i])
			case '"':
				if i != len(s)-1 {
					return "", errors.New("xlist: text after the quoted name")
				}
				return b.String(), nil
			default:
				b.WriteByte(s[i])
			}
		}
		return "", errors.New("xlist: quoted name not closed")
	case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
		n, err := strconv.ParseInt(strings.TrimSuffix(s[1:len(s)-1], "+"), 10, 64)
		if err != nil || n < 0 || n > maxXListNameBytes {
			return "", fmt.Errorf("xlist: bad name literal %q", s)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", fmt.Errorf("xlist: read name literal: %w", err)
		}
		if rest, err := readLine(br); err != nil || rest != "" {
			return "", fmt.Errorf("xlist: after the name literal: %q %v", rest, err)
		}
		return string(buf), nil
	case s == "" || strings.ContainsAny(s, " (){%*\"\\"):
		return "", errors.New("xlist: bad name")
	}
	return s, nil
}

// xlistRole maps XLIST attributes to the special-use role they name.
func xlistRole(attrs []string) imap.MailboxAttr {
	for _, a := range attrs {
		switch strings.ToLower(a) {
		case `\sent`:
			return imap.MailboxAttrSent
		case `\trash`:
			return imap.MailboxAttrTrash
		case `\drafts`:
			return imap.MailboxAttrDrafts
		case `\spam`, `\junk`:
			return imap.MailboxAttrJunk
		case `\allmail`, `\all`:
			return imap.MailboxAttrAll
		case `\archive`:
			return imap.MailboxAttrArchive
		}
	}
	return ""
}

// Roles are folders' special-use roles by UTF-8 name, as XLIST says them.
type Roles map[string]imap.MailboxAttr

// Add returns attrs with the role of folder name added, when XLIST gave
// it one and attrs do not carry it already.
func (r Roles) Add(name string, attrs []imap.MailboxAttr) []imap.MailboxAttr {
	role, ok := r[name]
	if !ok {
		return attrs
	}
	for _, a := range attrs {
		if strings.EqualFold(string(a), string(role)) {
			return attrs
		}
	}
	return append(attrs, role)
}

// DialRoles is DialGuarded for a source whose folder roles may have to
// come from XLIST: on a server that UsesXList it asks XLIST before handing
// the connection over, and returns the roles (never nil after an XLIST
// answered, even with no roles; nil otherwise, or when the server refuses
// the XLIST it advertised: roles then come from the folders' names, as on
// a server with neither).
func DialRoles(ctx context.Context, s config.IMAP, cred Credentials, obs Observer, guard LoginGuard) (*imapclient.Client, Roles, error) {
	c, err := dialServer(ctx, s, cred, obs, guard)
	if err != nil {
		return nil, nil, err
	}
	var roles Roles
	if c.UsesXList() {
		roles, err = c.XListRoles(ctx)
		if se := (*ServerError)(nil); errors.As(err, &se) {
			roles, err = nil, nil
		}
		if err != nil {
			c.Close()
			return nil, nil, err
		}
	}
	return c.Client(nil), roles, nil
}

// PersonalPrefix returns the prefix of the server's (first) personal
// namespace, such as "INBOX.", asking NAMESPACE (RFC 2342) only when the
// server advertises it: "" without NAMESPACE or without a prefix.
func PersonalPrefix(ctx context.Context, c *imapclient.Client, timeout time.Duration) (string, error) {
	if !c.Caps().Has(imap.CapNamespace) && !c.Caps().Has(imap.CapIMAP4rev2) {
		return "", nil
	}
	w := Watch(ctx, c, timeout)
	ns, err := c.Namespace().Wait()
	w.Stop()
	if err != nil {
		return "", fmt.Errorf("namespace: %w", w.Err(err))
	}
	if len(ns.Personal) == 0 {
		return "", nil
	}
	return ns.Personal[0].Prefix, nil
}
