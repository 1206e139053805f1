package chaos

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestScheduleKillsAsAskedAndEndsWithSixWholeMigratesInARow(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		kills := 1 + rng.IntN(80)
		whole := rng.IntN(kills + 1)
		blocks := schedule(rng, kills, whole)
		count := map[string]int{}
		for i, b := range blocks {
			if len(b.victims) == 0 {
				t.Fatalf("seed %d: empty block %d", seed, i)
			}
			for _, v := range b.victims {
				if b.embedded != (v == KindMigrate) {
					t.Fatalf("seed %d: %s in a block with embedded=%v", seed, v, b.embedded)
				}
				count[v]++
			}
		}
		if got := count[KindMigrate] + count[KindAttached]; got != whole {
			t.Errorf("seed %d: %d whole-process kills, want %d", seed, got, whole)
		}
		if got := count[KindNATS] + count[KindExtract] + count[KindLoad]; got != kills-whole {
			t.Errorf("seed %d: %d service kills, want %d", seed, got, kills-whole)
		}
		if kills-whole >= 3 && (count[KindNATS] == 0 || count[KindExtract] == 0 || count[KindLoad] == 0) {
			t.Errorf("seed %d: service kills %v miss a service", seed, count)
		}
		if whole >= lastWhole {
			last := blocks[len(blocks)-1]
			if !last.embedded || len(last.victims) < lastWhole {
				t.Errorf("seed %d: last block %+v, want %d or more embedded migrates", seed, last, lastWhole)
			}
		}
	}
}

func TestParseSizeAndRange(t *testing.T) {
	for in, want := range map[string]int64{"25MB": 25_000_000, "512kB": 512_000, "30MiB": 30 << 20, "1000000": 1_000_000} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "10kB", "-5MB", "25XB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) succeeded", bad)
		}
	}
	if r, err := parseRange("1s-5s"); err != nil || r != [2]time.Duration{time.Second, 5 * time.Second} {
		t.Errorf("parseRange(1s-5s) = %v, %v", r, err)
	}
	if r, err := parseRange("10s"); err != nil || r != [2]time.Duration{time.Second, 10 * time.Second} {
		t.Errorf("parseRange(10s) = %v, %v", r, err)
	}
	if _, err := parseRange("5s-1s"); err == nil {
		t.Error("parseRange(5s-1s) succeeded")
	}
}

func TestCondenseKeepsMailferryFramesOnly(t *testing.T) {
	dump := `SIGQUIT: quit
PC=0x4970e1 m=0 sigcode=0

goroutine 0 gp=0x1 m=0 [idle]:
runtime.futex(0x1)
	/usr/local/go/src/runtime/sys_linux_amd64.s:557 +0x21 fp=0x1 sp=0x1 pc=0x1

goroutine 148 gp=0x438b5405680 m=nil [chan receive]:
runtime.gopark(0x1)
	/usr/local/go/src/runtime/proc.go:462 +0xce fp=0x1 sp=0x1 pc=0x1
github.com/mailferry/mailferry/services/loader.(*session).run(0x438b7a1b340, {0x12c2b78, 0x438b6ff0b70})
	/work/main/services/loader/loader.go:242 +0x542 fp=0x1 sp=0x1 pc=0x1
created by github.com/mailferry/mailferry/shared/job.Pull in goroutine 146
	/work/main/shared/job/pull.go:39 +0x2a5
`
	got := Condense(dump, 1000)
	want := `1 goroutines in mailferry's code:
goroutine 148 [chan receive]:
    services/loader.(*session).run  services/loader/loader.go:242
    created by shared/job.Pull in goroutine 146  shared/job/pull.go:39
`
	if got != want {
		t.Errorf("Condense:\n%s\nwant:\n%s", got, want)
	}
}
