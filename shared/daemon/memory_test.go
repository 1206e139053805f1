package daemon

import (
	"runtime/debug"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/testenv/configtest"
)

// Not parallel: the heap limit is the process's.
func TestTheHeapLimitIsTheConfiguredOneOrTheProcesssDefault(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	was := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(was) })
	const unset = int64(1<<63 - 1)
	tests := []struct {
		name string
		yaml string
		def  int64
		want int64
	}{
		{"the default when the file says nothing", "", PipelineServiceMemory, PipelineServiceMemory},
		{"no default, no limit", "", 0, unset},
		{"the file's value over the default", "memory_limit: 268435456", EmbeddedServerMemory, 256 << 20},
		{"-1 removes the default", "memory_limit: -1", EmbeddedServerMemory, unset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetMemoryLimit(unset)
			LimitMemory(configtest.Parse(t, tt.yaml), tt.def, zerolog.Nop())
			if got := debug.SetMemoryLimit(-1); got != tt.want {
				t.Errorf("heap limit %d, want %d", got, tt.want)
			}
		})
	}
}

func TestGOMEMLIMITWinsOverTheConfiguredHeapLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "300MiB")
	was := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(was) })
	debug.SetMemoryLimit(300 << 20) // what the runtime took from the variable
	LimitMemory(configtest.Parse(t, "memory_limit: 67108864"), EmbeddedServerMemory, zerolog.Nop())
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Errorf("heap limit %d, want GOMEMLIMIT's %d", got, 300<<20)
	}
}
