package dnsctl

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// progressEvery is how often a long run logs its progress.
const progressEvery = 5 * time.Second

// forEach calls f(i) for i in [0, n), at most e.Concurrency at once, and
// logs progress while it runs. It returns when every call has returned;
// calls not yet started when ctx ends are not made.
func (e *Engine) forEach(ctx context.Context, step string, n int, f func(ctx context.Context, i int)) {
	var done atomic.Int64
	stop := make(chan struct{})
	progress := make(chan struct{})
	go func() {
		defer close(progress)
		e.logProgress(step, n, &done, stop)
	}()
	defer func() { close(stop); <-progress }()

	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(e.Concurrency, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(ctx, i)
				done.Add(1)
			}
		}()
	}
	defer wg.Wait()
	defer close(next)
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			return
		}
	}
}

func (e *Engine) logProgress(step string, n int, done *atomic.Int64, stop <-chan struct{}) {
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			e.Log.Info().Str("step", step).Int64("done", done.Load()).Int("total", n).Msg("progress")
		}
	}
}
