package bindtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/shared/testenv/proc"
)

// Server is one named process.
type Server struct {
	// Addr is 127.0.0.1:port, UDP and TCP.
	Addr string
	// Dir holds named.conf, zones/, journals and named.log.
	Dir      string
	ConfPath string
	LogPath  string

	port int
	// id is the server-id: the answer to id.server CH TXT tells this
	// named from another that holds the port.
	id    string
	named *proc.Process
}

func newServer(dir string, port int) *Server {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	return &Server{
		id:       hex.EncodeToString(id),
		Addr:     fmt.Sprintf("127.0.0.1:%d", port),
		Dir:      dir,
		ConfPath: filepath.Join(dir, "named.conf"),
		LogPath:  filepath.Join(dir, "named.log"),
		port:     port,
	}
}

func (s *Server) start(ctx context.Context) error {
	// A log left by an attempt on another port would be read as this one's.
	for _, f := range []string{s.LogPath, filepath.Join(s.Dir, "named.pid")} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("start named: %w", err)
		}
	}
	p, err := proc.Start("named", []string{"-f", "-c", s.ConfPath}, proc.Options{LogPath: s.LogPath})
	if err != nil {
		return fmt.Errorf("start named %s: %w", s.Addr, err)
	}
	s.named = p
	if err := p.Ready(ctx, idPollInterval, s.answers); err != nil {
		s.Stop()
		return fmt.Errorf("start named %s: %w", s.Addr, err)
	}
	return nil
}

// errPortTaken reports a port another process holds, found when named
// cannot bind it or another named answers on it:
// ports are free when chosen, not necessarily when named binds them.
var errPortTaken = errors.New("port taken by another process")

// answers says whether this named answers on its port: the answer to
// id.server must be its server-id. Another server-id, or named unable to
// bind the port, is final: the port is taken.
func (s *Server) answers(ctx context.Context) error {
	q := new(dns.Msg)
	q.SetQuestion("id.server.", dns.TypeTXT)
	q.Question[0].Qclass = dns.ClassCHAOS
	cl := &dns.Client{Timeout: 200 * time.Millisecond}
	r, _, err := cl.ExchangeContext(ctx, q, s.Addr)
	if err == nil && len(r.Answer) == 1 {
		// Without an answer named may still be starting; an answer
		// naming another server-id is another named.
		if strings.Contains(r.Answer[0].String(), s.id) {
			return nil
		}
		return proc.Permanent(fmt.Errorf("%w: it says %v", errPortTaken, r.Answer))
	}
	if s.logHas("address in use") {
		return proc.Permanent(fmt.Errorf("%w: named could not bind it", errPortTaken))
	}
	if err == nil {
		err = errors.New("no id.server answer yet")
	}
	return err
}

// idPollInterval spaces id.server queries: named answers CHAOS queries
// at most 3 times a second per client network and drops the rest.
const idPollInterval = 400 * time.Millisecond

func (s *Server) logHas(text string) bool {
	b, err := os.ReadFile(s.LogPath)
	return err == nil && bytes.Contains(b, []byte(text))
}

// waitZones waits until the server answers authoritatively for every zone.
func (s *Server) waitZones(ctx context.Context, zones []string) error {
	pending := zones
	for {
		var err error
		pending, err = s.unserved(ctx, pending)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		if bad := s.loadErrors(); bad != "" {
			return fmt.Errorf("named %s: zones failed to load:\n%s", s.Addr, bad)
		}
		select {
		case <-s.named.Exited():
			return fmt.Errorf("named %s: %w: %v\n%s", s.Addr, errExited, s.named.ExitErr(), s.LogTail(30))
		case <-ctx.Done():
			return fmt.Errorf("named %s: %d zones not loaded (first %s): %w\n%s", s.Addr, len(pending), pending[0], ctx.Err(), s.LogTail(30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// unserved returns the zones whose SOA the server does not yet serve.
func (s *Server) unserved(ctx context.Context, zones []string) ([]string, error) {
	const workers = 16
	results := make([]bool, len(zones))
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				serial, err := s.Serial(ctx, zones[i])
				results[i] = err == nil && serial != 0
			}
		}()
	}
	for i := range zones {
		next <- i
	}
	close(next)
	wg.Wait()
	var out []string
	for i, ok := range results {
		if !ok {
			out = append(out, zones[i])
		}
	}
	return out, ctx.Err()
}

// Serial returns the SOA serial the server serves for zone.
func (s *Server) Serial(ctx context.Context, zone string) (uint32, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.CanonicalName(zone), dns.TypeSOA)
	q.RecursionDesired = false
	cl := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := cl.ExchangeContext(ctx, q, s.Addr)
	if err != nil {
		return 0, fmt.Errorf("soa %s at %s: %w", zone, s.Addr, err)
	}
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		return 0, fmt.Errorf("soa %s at %s: %s, aa=%t", zone, s.Addr, dns.RcodeToString[r.Rcode], r.Authoritative)
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("soa %s at %s: no SOA in the answer", zone, s.Addr)
}

// Stop stops named: SIGTERM to its process group, SIGKILL after a grace
// period. It is safe to call more than once.
func (s *Server) Stop() error {
	if s.named == nil {
		return nil
	}
	return s.named.Stop(stopGrace)
}

// loadErrors returns the log lines of zones named refused to load.
func (s *Server) loadErrors() string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return ""
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "not loaded due to errors") || strings.Contains(l, "loading from master file") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// LogAbout returns the last n lines of named.log that name zone.
func (s *Server) LogAbout(zone string, n int) string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return ""
	}
	needle := "'" + strings.TrimSuffix(zone, ".") + "/"
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, needle) || strings.Contains(l, " "+strings.TrimSuffix(zone, ".")+"/") {
			out = append(out, l)
		}
	}
	return strings.Join(out[max(0, len(out)-n):], "\n")
}

// LogTail returns the last n lines of named.log.
func (s *Server) LogTail(n int) string {
	return proc.Tail(s.LogPath, 0, n) + "\n"
}
