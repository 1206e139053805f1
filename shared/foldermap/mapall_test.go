package foldermap

import (
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// outcome is the expected MapAll result for one source; reason is a
// substring Reason must contain.
type outcome struct {
	target  string
	renamed bool
	merged  bool
	reason  string
}

func folders(delim rune, names ...string) []Folder {
	out := make([]Folder, len(names))
	for i, n := range names {
		out[i] = Folder{Name: n, Delim: delim}
	}
	return out
}

func TestMapAll(t *testing.T) {
	tests := []struct {
		name string
		tg   Target
		opts Options
		in   []Folder
		want map[string]outcome
	}{
		{
			name: "cleaned name colliding with literal name is disambiguated and children follow",
			tg:   Target{Delim: '.'},
			in:   folders('/', "v1.2", "v1_2", "v1.2/notes", "v1_2/notes"),
			want: map[string]outcome{
				"v1_2":       {target: "v1_2"},
				"v1_2/notes": {target: "v1_2.notes"},
				"v1.2":       {target: "v1_2 (2)", renamed: true, reason: `target "v1_2" already taken by "v1_2"`},
				"v1.2/notes": {target: "v1_2 (2).notes", renamed: true, reason: `disambiguated as "v1_2 (2)"`},
			},
		},
		{
			name: "names differing only in case collide",
			tg:   Target{Delim: '/'},
			in:   folders('/', "foo", "Foo"),
			want: map[string]outcome{
				"Foo": {target: "Foo"},
				"foo": {target: "foo (2)", renamed: true, reason: `taken by "Foo"`},
			},
		},
		{
			name: "suffix skips names other folders land on",
			tg:   Target{Delim: '.'},
			in:   folders('/', "v1.2", "v1_2", "v1_2 (2)"),
			want: map[string]outcome{
				"v1_2":     {target: "v1_2"},
				"v1_2 (2)": {target: "v1_2 (2)"},
				"v1.2":     {target: "v1_2 (3)", renamed: true, reason: "disambiguated"},
			},
		},
		{
			name: "colliding implied parents are disambiguated",
			tg:   Target{Delim: '.'},
			in:   folders('/', "a.b/c", "a_b/c"),
			want: map[string]outcome{
				"a_b/c": {target: "a_b.c"},
				"a.b/c": {target: "a_b (2).c", renamed: true, reason: "disambiguated"},
			},
		},
		{
			name: "special-use folders merge instead of colliding",
			tg:   germanTarget(),
			in:   folders('/', "Sent", "Sent Items", "Sent Messages", "Gesendet"),
			want: map[string]outcome{
				"Sent":          {target: "Gesendet", renamed: true, merged: true, reason: "shares target with"},
				"Sent Items":    {target: "Gesendet", renamed: true, merged: true, reason: "special-use"},
				"Sent Messages": {target: "Gesendet", renamed: true, merged: true, reason: "special-use"},
				"Gesendet":      {target: "Gesendet", merged: true, reason: `"Sent Items"`},
			},
		},
		{
			name: "same-named children of merged folders merge, others stay apart",
			tg:   germanTarget(),
			in:   folders('/', "Sent", "Sent Items", "Sent/2019", "Sent Items/2019", "Sent/Alt", "Sent Items/Neu"),
			want: map[string]outcome{
				"Sent":            {target: "Gesendet", renamed: true, merged: true, reason: "special-use"},
				"Sent Items":      {target: "Gesendet", renamed: true, merged: true, reason: "special-use"},
				"Sent/2019":       {target: "Gesendet/2019", renamed: true, merged: true, reason: "special-use"},
				"Sent Items/2019": {target: "Gesendet/2019", renamed: true, merged: true, reason: "special-use"},
				"Sent/Alt":        {target: "Gesendet/Alt", renamed: true, reason: "special-use"},
				"Sent Items/Neu":  {target: "Gesendet/Neu", renamed: true, reason: "special-use"},
			},
		},
		{
			name: "same-named children of merged folders with cleaned collision",
			tg:   Target{Delim: '.', Folders: []Folder{{Name: "Sent", Attrs: []imap.MailboxAttr{imap.MailboxAttrSent}}}},
			in:   folders('/', "Sent", "Sent Items", "Sent/v1.2", "Sent Items/v1_2"),
			want: map[string]outcome{
				"Sent":            {target: "Sent", merged: true, reason: "special-use"},
				"Sent Items":      {target: "Sent", renamed: true, merged: true, reason: "special-use"},
				"Sent Items/v1_2": {target: "Sent.v1_2", renamed: true, reason: "special-use"},
				"Sent/v1.2":       {target: "Sent.v1_2 (2)", renamed: true, reason: "disambiguated"},
			},
		},
		{
			name: "table entries sharing a target merge with the folder of that name",
			tg:   Target{Delim: '/'},
			opts: Options{Table: map[string]string{"A": "X", "B": "x"}},
			in:   folders('/', "A", "B", "x"),
			want: map[string]outcome{
				"A": {target: "X", renamed: true, merged: true, reason: "user table"},
				"B": {target: "X", renamed: true, merged: true, reason: `merged into "X"`},
				"x": {target: "X", renamed: true, merged: true, reason: `merged into "X"`},
			},
		},
		{
			name: "table prefix children merge across depths",
			tg:   Target{Delim: '/'},
			opts: Options{Table: map[string]string{"Old/Projects": "Projects"}},
			in:   folders('/', "Projects", "Projects/X", "Projects/a_b", "Old/Projects", "Old/Projects/X", "Old/Projects/a.b"),
			want: map[string]outcome{
				"Projects":         {target: "Projects", merged: true, reason: "shares target"},
				"Projects/X":       {target: "Projects/X", merged: true, reason: "shares target"},
				"Projects/a_b":     {target: "Projects/a_b"},
				"Old/Projects":     {target: "Projects", renamed: true, merged: true, reason: "user table"},
				"Old/Projects/X":   {target: "Projects/X", renamed: true, merged: true, reason: "user table"},
				"Old/Projects/a.b": {target: "Projects/a.b", renamed: true, reason: "user table"},
			},
		},
		{
			name: "listed parent's special-use attribute carries its children",
			tg:   germanTarget(),
			in: []Folder{
				{Name: "Müll", Delim: '/', Attrs: []imap.MailboxAttr{imap.MailboxAttrTrash}},
				{Name: "Müll/Alt", Delim: '/'},
			},
			want: map[string]outcome{
				"Müll":     {target: "Papierkorb", renamed: true, reason: "special-use"},
				"Müll/Alt": {target: "Papierkorb/Alt", renamed: true, reason: "special-use"},
			},
		},
		{
			name: "duplicates collapse and unite attributes",
			tg:   germanTarget(),
			in: []Folder{
				{Name: "Outbox Done", Delim: '/'},
				{Name: "Outbox Done", Delim: '/', Attrs: []imap.MailboxAttr{imap.MailboxAttrSent}},
			},
			want: map[string]outcome{
				"Outbox Done": {target: "Gesendet", renamed: true, reason: "special-use"},
			},
		},
		{
			name: "INBOX children keep their path and INBOX spellings merge",
			tg:   Target{Delim: '.'},
			in:   append(folders('/', "INBOX", "INBOX/Kunden"), Folder{Name: "inbox"}),
			want: map[string]outcome{
				"INBOX":        {target: "INBOX", merged: true, reason: "shares target"},
				"inbox":        {target: "INBOX", merged: true, reason: "shares target"},
				"INBOX/Kunden": {target: "INBOX.Kunden"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustNew(t, tc.tg, tc.opts)
			got := m.MapAll(tc.in)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d results, want %d: %+v", len(got), len(tc.want), got)
			}
			for _, r := range got {
				w, ok := tc.want[r.Source]
				if !ok {
					t.Errorf("unexpected result %+v", r)
					continue
				}
				if r.Target != w.target || r.Renamed != w.renamed || r.Merged != w.merged || !strings.Contains(r.Reason, w.reason) {
					t.Errorf("%q → %q renamed=%v merged=%v reason=%q; want %q renamed=%v merged=%v reason~%q",
						r.Source, r.Target, r.Renamed, r.Merged, r.Reason, w.target, w.renamed, w.merged, w.reason)
				}
			}
			checkInvariants(t, got)
		})
	}
}

// checkInvariants asserts properties every MapAll answer must have: sorted
// output, a reason for every rename or merge, and distinct targets unless
// merged.
func checkInvariants(t *testing.T, rs []Result) {
	t.Helper()
	byTarget := make(map[string][]Result)
	for i, r := range rs {
		if i > 0 && rs[i-1].Source > r.Source {
			t.Errorf("results not sorted: %q before %q", rs[i-1].Source, r.Source)
		}
		if (r.Renamed || r.Merged) && r.Reason == "" {
			t.Errorf("%q renamed/merged without reason", r.Source)
		}
		k := foldKey(r.Target)
		byTarget[k] = append(byTarget[k], r)
	}
	for _, g := range byTarget {
		for _, r := range g {
			if len(g) > 1 && (!r.Merged || r.Target != g[0].Target) {
				t.Errorf("%q shares target %q without merge: %+v", r.Source, r.Target, g)
			}
		}
	}
}

func TestMapAllIsIndependentOfInputOrder(t *testing.T) {
	in := folders('/', "v1.2", "v1_2", "v1_2 (2)", "Foo", "foo", "a.b/c", "a_b/c", "Sent", "Sent Items",
		"Sent/x", "Sent Items/x", "Sent/a.b", "Sent Items/a_b", "INBOX", "INBOX/日本語", "Old/Projects/X", "X", "#x", "_x")
	m := mustNew(t, Target{Delim: '.', Folders: []Folder{{Name: "Gesendet", Attrs: []imap.MailboxAttr{imap.MailboxAttrSent}}}},
		Options{Table: map[string]string{"Old/Projects": "Projects"}})
	first := m.MapAll(in)
	checkInvariants(t, first)
	rng := rand.New(rand.NewSource(7))
	for range 50 {
		shuffled := append([]Folder(nil), in...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := m.MapAll(shuffled); !reflect.DeepEqual(got, first) {
			t.Fatalf("order changed result:\n%+v\nvs\n%+v", got, first)
		}
	}
}

func TestMapAllAgreesWithMapWithoutCollisions(t *testing.T) {
	in := folders('/', "INBOX", "INBOX/Kunden", "Sent Items", "Sent Items/2019", "Projekte/v1.2", "a//b", "#x", "日本語/メール")
	m := mustNew(t, germanTarget(), Options{Table: map[string]string{"Projekte": "Arbeit/Projekte"}})
	for _, r := range m.MapAll(in) {
		single := m.Map(Folder{Name: r.Source, Delim: '/'})
		if !reflect.DeepEqual(single, r) {
			t.Errorf("Map = %+v, MapAll = %+v", single, r)
		}
	}
}

func TestMapAllOfNothingIsEmpty(t *testing.T) {
	if got := mustNew(t, Target{Delim: '/'}, Options{}).MapAll(nil); len(got) != 0 {
		t.Fatalf("MapAll(nil) = %+v", got)
	}
}
