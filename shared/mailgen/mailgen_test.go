package mailgen

import (
	"bytes"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMessageIsCRLFOnlyParsesAndHitsItsSize(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
	}{
		{"small text", Spec{To: "a@x.example", Size: 700, ID: "s"}},
		{"median text", Spec{To: "a@x.example", Size: 8 << 10, ID: "m"}},
		{"with attachment", Spec{To: "a@x.example", Size: 300 << 10, ID: "l", Attachment: "x.pdf"}},
		{"without Message-ID", Spec{To: "a@x.example", Size: 2 << 10, NoID: true, Subject: "Grüße"}},
	}
	rng := Rand(1)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Date = time.Unix(1e9, 0)
			m := Message(rng, tt.spec)
			if bytes.ContainsAny(bytes.ReplaceAll(m, []byte("\r\n"), nil), "\r\n") {
				t.Error("bare CR or LF in message")
			}
			if d := int64(len(m)) - tt.spec.Size; d < -1024 || d > 1024 {
				t.Errorf("%d bytes, want about %d", len(m), tt.spec.Size)
			}
			msg, err := mail.ReadMessage(bytes.NewReader(m))
			if err != nil {
				t.Fatal(err)
			}
			if id := msg.Header.Get("Message-ID"); (id == "") != tt.spec.NoID {
				t.Errorf("Message-ID %q with NoID %t", id, tt.spec.NoID)
			}
			if d, err := msg.Header.Date(); err != nil || !d.Equal(tt.spec.Date) {
				t.Errorf("Date %v (%v), want %v", d, err, tt.spec.Date)
			}
		})
	}
}

func TestSameSeedSameMail(t *testing.T) {
	gen := func() [][]byte {
		rng := Rand(42)
		var out [][]byte
		for range 20 {
			s := Spec{To: "a@x.example", Size: Sizes{Median: 4 << 10, Sigma: 1.4, Min: 700, Max: 200 << 10}.Draw(rng), Date: Date(rng)}
			out = append(out, Message(rng, s), []byte(strings.Join(Flags(rng, "INBOX"), " ")))
		}
		return out
	}
	a, b := gen(), gen()
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("message %d differs between two runs with one seed", i)
		}
	}
}

func TestSizesAreLongTailedAndClamped(t *testing.T) {
	rng := Rand(3)
	s := Sizes{Median: 8 << 10, Sigma: 1.4, Min: 700, Max: 1 << 20}
	var below, over256k int
	const n = 20000
	for range n {
		v := s.Draw(rng)
		if v < s.Min || v > s.Max {
			t.Fatalf("size %d outside [%d, %d]", v, s.Min, s.Max)
		}
		if v < s.Median {
			below++
		}
		if v > 256<<10 {
			over256k++
		}
	}
	if below < n*45/100 || below > n*55/100 {
		t.Errorf("%d of %d below the median", below, n)
	}
	if over256k == 0 {
		t.Error("no size above 256 KiB: no long tail")
	}
}

func TestFlagsPutDraftsInDraftsAndDrawKnownKeywords(t *testing.T) {
	rng := Rand(5)
	for range 200 {
		f := Flags(rng, "Drafts")
		if !slices.Contains(f, `\Draft`) {
			t.Fatalf("flags %v in Drafts lack \\Draft", f)
		}
		for _, x := range f {
			if x[0] != '\\' && !slices.Contains(Keywords, x) {
				t.Fatalf("unknown keyword %q", x)
			}
		}
	}
}

func TestBigIsDeterministicPerTag(t *testing.T) {
	a, b := Big(100_000, "t"), Big(100_000, "t")
	if !bytes.Equal(a, b) || len(a) < 100_000 || len(a) > 100_100 {
		t.Errorf("Big: %d and %d bytes, equal %t", len(a), len(b), bytes.Equal(a, b))
	}
}
