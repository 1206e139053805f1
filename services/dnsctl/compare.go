package dnsctl

import (
	"context"
	"fmt"
	"strings"

	"github.com/mailferry/mailferry/services/dnsctl/records"
)

// match says which side of a set of changes the primary serves.
type match int

const (
	matchNew   match = iota // every RRset is its New
	matchOld                // every RRset is its Old
	matchOther              // something else: a concurrent edit
)

// compare reads the RRsets of changes from the primary and says whether
// it serves their new or their old values; detail describes the RRsets
// that are neither. withTTL compares TTLs too (for lower-ttl).
func (e *Engine) compare(ctx context.Context, changes []records.Change, withTTL bool) (match, string, error) {
	allNew, allOld := true, true
	var diffs []string
	for _, c := range changes {
		got, err := e.Client.RRset(ctx, e.server(), c.New.Name, c.New.TypeCode())
		if err != nil {
			return matchOther, "", err
		}
		isNew, isOld := same(got, c.New, withTTL), same(got, c.Old, withTTL)
		allNew, allOld = allNew && isNew, allOld && isOld
		if !isNew && !isOld {
			diffs = append(diffs, fmt.Sprintf("%s %s is %s, planned from %s", c.New.Name, c.New.Type, brief(got), brief(c.Old)))
		}
	}
	switch {
	case allNew:
		return matchNew, "", nil
	case allOld:
		return matchOld, "records unchanged", nil
	case len(diffs) == 0:
		return matchOther, "some RRsets are new, others old", nil
	}
	return matchOther, strings.Join(diffs, "; "), nil
}

func same(a, b records.RRset, withTTL bool) bool {
	return a.Equal(b) && (!withTTL || !a.Exists() || a.TTL == b.TTL)
}

// brief renders an RRset's data on one line.
func brief(s records.RRset) string {
	if !s.Exists() {
		return "absent"
	}
	return fmt.Sprintf("[%s] ttl %d", strings.Join(s.Data, ", "), s.TTL)
}
