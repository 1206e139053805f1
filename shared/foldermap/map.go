package foldermap

import (
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// node is one source name being mapped: a listed folder or an ancestor that
// is only implied by a listed child. Implied ancestors are mapped too because
// they become parent folders on the target and can collide.
type node struct {
	name    string
	delim   rune
	levels  []string // below the source's namespace prefix, if any
	natural []string // every level of name, for Result.Renamed
	prefix  string   // the source's namespace prefix taken off name, or ""
	attrs   []imap.MailboxAttr
	listed  bool
	parent  *node
	role    imap.MailboxAttr
	target  string
	clean   string // cleaned last level; "" when an own rule chose target
	owned   bool   // target chosen by table, INBOX or special-use rule
	reasons []string
	merged  bool
}

// last is the raw last source level.
func (n *node) last() string { return n.levels[len(n.levels)-1] }

// place computes n's target from its own rules or, failing those, from its
// parent's (already final) target plus its cleaned last level. Because the
// parent's target is reused, table prefixes, INBOX and special-use folders
// carry their children along.
func (m *Mapper) place(n *node) {
	n.role = sourceRole(n.attrs, n.levels)
	n.clean, n.owned, n.reasons = "", true, nil
	if dst, ok := m.table[n.name]; ok {
		n.target = dst
		n.reasons = []string{fmt.Sprintf("user table maps %q to %q", n.name, dst)}
		return
	}
	if len(n.levels) == 1 && strings.EqualFold(n.name, inbox) {
		n.target = inbox
		return
	}
	if n.prefix != "" && n.parent == nil {
		n.reasons = []string{fmt.Sprintf("source namespace prefix %q removed", n.prefix)}
	}
	if dst, ok := m.special[n.role]; ok {
		n.target = dst
		n.reasons = append(n.reasons, m.specialWhy[n.role])
		return
	}
	n.owned = false
	clean, why := m.cleanLevel(n.last(), n.parent == nil)
	n.clean, n.target = clean, clean
	switch {
	case n.parent != nil:
		n.target = n.parent.target + string(m.delim) + clean
		n.reasons = slices.Clone(n.parent.reasons)
	case m.prefix != "":
		n.target = m.prefix + clean
		n.reasons = append(n.reasons, fmt.Sprintf("target namespace prefix %q added", m.prefix))
	}
	n.reasons = append(n.reasons, why...)
}

// result reports n.
func (m *Mapper) result(n *node) Result {
	return Result{
		Source:     n.name,
		Target:     n.target,
		Renamed:    n.target != m.natural(slices.Clone(n.natural)),
		Merged:     n.merged,
		Reason:     strings.Join(n.reasons, "; "),
		SpecialUse: n.role,
	}
}

// chain returns the nodes for every ancestor of name and name itself,
// outermost first, each linked to its parent. Under the source's
// namespace prefix the ancestors start below it: "INBOX.Archive.2010"
// has the ancestor "INBOX.Archive", mapped as the top-level "Archive".
func chain(name string, delim rune, prefix string) []*node {
	rest, under := underPrefix(name, prefix, delim)
	if !under {
		prefix = ""
	}
	head := name[:len(name)-len(rest)]
	levels := splitName(rest, delim)
	all := splitName(name, delim)
	skip := len(all) - len(levels)
	out := make([]*node, len(levels))
	var parent *node
	for i := range levels {
		lv := levels[:i+1]
		n := &node{name: head + strings.Join(lv, string(delim)), delim: delim, levels: lv,
			natural: all[:skip+i+1], prefix: prefix, parent: parent}
		out[i], parent = n, n
	}
	return out
}

// Map maps a single folder in isolation: no collision handling, and
// ancestors are assumed to carry no special-use attributes. When the whole
// folder list is known, use MapAll; its answer is authoritative.
func (m *Mapper) Map(f Folder) Result {
	nodes := chain(f.Name, f.Delim, f.Prefix)
	leaf := nodes[len(nodes)-1]
	leaf.attrs, leaf.listed = f.Attrs, true
	for _, n := range nodes {
		m.place(n)
	}
	return m.result(leaf)
}
