package verify

import (
	"fmt"
	"io"
)

// WriteText writes the report for people: one line per mailbox, one per
// differing folder, one per difference.
func (r *Report) WriteText(w io.Writer) {
	bad := 0
	for _, m := range r.Mailboxes {
		status := "ok"
		if !m.OK {
			status = "DIFFERENT"
			bad++
		}
		fmt.Fprintf(w, "%-9s %s -> %s: %d messages in %d folders\n", status, m.Source, m.Target, m.Messages, len(m.Folders))
		if m.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", m.Error)
		}
		for _, f := range m.Folders {
			if f.OK() {
				continue
			}
			fmt.Fprintf(w, "  folder %q -> %q: source %d, target %d\n", f.Sources, f.Target, f.SourceMessages, f.TargetMessages)
			for _, d := range f.Differences {
				fmt.Fprintf(w, "    %-7s %s uid %d sha256 %.16s", d.Kind, d.Folder, d.UID, d.SHA256)
				if d.Want != "" || d.Got != "" {
					fmt.Fprintf(w, " want %q got %q", d.Want, d.Got)
				}
				fmt.Fprintln(w)
			}
		}
	}
	fmt.Fprintf(w, "verified %d mailboxes: %d ok, %d different\n", len(r.Mailboxes), len(r.Mailboxes)-bad, bad)
}
