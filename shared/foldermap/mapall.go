package foldermap

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// claim records who owns a target name (compared by foldKey).
type claim struct {
	target string // exact spelling every folder landing here shares
	source string // first source name that claimed it, for reasons
	owned  bool   // claimed by an own rule: later arrivals merge, not collide
	level  string // raw last source level of the owner when not owned
}

// nodeKey identifies a source name; the delimiter is part of it because the
// same string splits differently under different delimiters.
type nodeKey struct {
	name  string
	delim rune
}

// MapAll maps a whole source folder list and resolves collisions.
//
// Results are sorted by source name (then delimiter), one per distinct
// source name; duplicate entries are collapsed and their attributes united.
// The answer depends only on the set of folders, not their order.
//
// Two folders landing on the same target name (case-insensitively) are
// merged when either reached it by an own rule (table entry, INBOX,
// special-use) or when they are same-named children of merged folders;
// Result.Merged reports it. Otherwise it is a collision: the folder whose
// level needed no cleaning (then the smallest level, then name) keeps the
// name, the others get " (2)", " (3)"... appended to their last level, and
// their children follow the renamed parent.
func (m *Mapper) MapAll(fs []Folder) []Result {
	depths, listed := buildTree(fs)
	reserved := m.reserve(depths)
	claims := make(map[string]*claim)
	for _, level := range depths {
		for _, n := range level {
			m.place(n)
		}
		m.settleLevel(level, claims, reserved)
	}
	markMerged(listed)
	out := make([]Result, len(listed))
	for i, n := range listed {
		out[i] = m.result(n)
	}
	return out
}

// buildTree collapses duplicates, adds implied ancestors and returns all
// nodes grouped by depth (parents before children, each depth sorted) plus
// the listed nodes in source-name order.
func buildTree(fs []Folder) ([][]*node, []*node) {
	sorted := slices.Clone(fs)
	slices.SortStableFunc(sorted, func(a, b Folder) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(a.Delim, b.Delim))
	})
	nodes := make(map[nodeKey]*node)
	var listed []*node
	for _, f := range sorted {
		leaf := addChain(nodes, f)
		if !leaf.listed {
			leaf.listed = true
			listed = append(listed, leaf)
		}
		leaf.attrs = append(leaf.attrs, f.Attrs...)
	}
	var depths [][]*node
	for _, n := range nodes {
		for len(depths) < len(n.levels) {
			depths = append(depths, nil)
		}
		depths[len(n.levels)-1] = append(depths[len(n.levels)-1], n)
	}
	for _, d := range depths {
		slices.SortFunc(d, cmpNode)
	}
	return depths, listed
}

// addChain inserts f and its ancestors into nodes, reusing existing ones,
// and returns f's node.
func addChain(nodes map[nodeKey]*node, f Folder) *node {
	var parent *node
	for _, c := range chain(f.Name, f.Delim, f.Prefix) {
		k := nodeKey{c.name, c.delim}
		n, ok := nodes[k]
		if !ok {
			c.parent = parent
			nodes[k], n = c, c
		}
		parent = n
	}
	return parent
}

func cmpNode(a, b *node) int {
	return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(a.delim, b.delim))
}

// reserve returns the fold keys of every name the list maps to before
// disambiguation, so a " (n)" suffix never takes a name some other folder
// would land on naturally.
func (m *Mapper) reserve(depths [][]*node) map[string]bool {
	out := make(map[string]bool)
	for _, level := range depths {
		for _, n := range level {
			m.place(n)
			out[foldKey(n.target)] = true
		}
	}
	return out
}

// settleLevel resolves the names of one depth, whose parents are final.
func (m *Mapper) settleLevel(level []*node, claims map[string]*claim, reserved map[string]bool) {
	groups := make(map[string][]*node)
	for _, n := range level {
		k := foldKey(n.target)
		groups[k] = append(groups[k], n)
	}
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		m.settle(k, groups[k], claims, reserved)
	}
}

// settle decides, for nodes landing on one target name, who joins the
// claim on it and who must move to a disambiguated name.
func (m *Mapper) settle(key string, g []*node, claims map[string]*claim, reserved map[string]bool) {
	g = slices.SortedFunc(slices.Values(g), cmpWinner)
	c := claims[key]
	if c == nil {
		w := g[0]
		c = &claim{target: w.target, source: w.name, owned: w.owned, level: w.last()}
		claims[key] = c
	}
	c.owned = c.owned || slices.ContainsFunc(g, func(n *node) bool { return n.owned })
	var losers [][]*node
	idx := make(map[string]int)
	for _, n := range g {
		if c.owned || n.last() == c.level {
			join(n, c)
			continue
		}
		i, ok := idx[n.last()]
		if !ok {
			i = len(losers)
			idx[n.last()] = i
			losers = append(losers, nil)
		}
		losers[i] = append(losers[i], n)
	}
	for _, ls := range losers {
		m.disambiguate(ls, c, claims, reserved)
	}
}

// cmpWinner orders candidates for a contested name: own rules first, then
// folders whose level needed no cleaning (a literal "v1_2" beats "v1.2"
// cleaned to "v1_2"), then by level and name for determinism.
func cmpWinner(a, b *node) int {
	rank := func(n *node) int {
		switch {
		case n.owned:
			return 0
		case n.clean == n.last():
			return 1
		}
		return 2
	}
	return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a.last(), b.last()), cmpNode(a, b))
}

// join lands n on c's name, adopting its exact spelling.
func join(n *node, c *claim) {
	if n.target != c.target {
		n.reasons = append(n.reasons, fmt.Sprintf("merged into %q", c.target))
		n.target = c.target
	}
}

// disambiguate moves ls (same last level, so same-named children of merged
// folders stay together) to the first free "name (n)".
func (m *Mapper) disambiguate(ls []*node, c *claim, claims map[string]*claim, reserved map[string]bool) {
	base := ls[0].target
	for i := 2; ; i++ {
		t := fmt.Sprintf("%s (%d)", base, i)
		k := foldKey(t)
		if claims[k] != nil || reserved[k] {
			continue
		}
		claims[k] = &claim{target: t, source: ls[0].name, level: ls[0].last()}
		for _, n := range ls {
			n.target = t
			n.reasons = append(n.reasons, fmt.Sprintf("target %q already taken by %q, disambiguated as %q", base, c.source, t))
		}
		return
	}
}

// markMerged flags listed folders sharing a final target with other listed
// folders; implied ancestors hold no mail and do not count.
func markMerged(listed []*node) {
	byTarget := make(map[string][]*node)
	for _, n := range listed {
		byTarget[n.target] = append(byTarget[n.target], n)
	}
	for _, g := range byTarget {
		if len(g) < 2 {
			continue
		}
		for _, n := range g {
			var others []string
			for _, o := range g {
				if o != n {
					others = append(others, fmt.Sprintf("%q", o.name))
				}
			}
			n.merged = true
			n.reasons = append(n.reasons, "shares target with "+strings.Join(others, ", "))
		}
	}
}
