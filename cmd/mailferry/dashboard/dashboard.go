// Package dashboard serves ops one live page of the migration: per domain
// and mailbox the phase, messages and bytes moved, rate and ETA, the dead
// letters with their reasons and the recent failures. The page is
// self-contained (no external asset) and updates itself from server-sent
// events; every request needs the dashboard's basic-auth password.
package dashboard

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/ops"
	"github.com/mailferry/mailferry/cmd/mailferry/status"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/httpauth"
	"github.com/mailferry/mailferry/shared/job"
)

// maxDead bounds the dead letters the page lists (the newest).
const maxDead = 50

// View is what the page shows at one moment.
type View struct {
	Time   time.Time      `json:"time"`
	Status *status.Status `json:"status"`
	// Dead are the newest dead letters (at most 50), DeadTotal all.
	Dead      []DeadLetter `json:"dead_letters"`
	DeadTotal int          `json:"dead_total"`
	// Failures are the mailboxes and domains that failed or were paused,
	// with why.
	Failures []Failure `json:"failures"`
	// Error is why the last read failed; the rest is then the last
	// good view.
	Error string `json:"error,omitempty"`
}

// DeadLetter is one message the target refused for good.
type DeadLetter struct {
	Mailbox string    `json:"mailbox"`
	Folder  string    `json:"folder"`
	UID     uint32    `json:"uid"`
	Size    int64     `json:"size"`
	Reason  string    `json:"reason"`
	Time    time.Time `json:"time"`
}

// Failure is a mailbox or domain that stopped, and why.
type Failure struct {
	What   string `json:"what"`
	Phase  string `json:"phase"`
	Reason string `json:"reason"`
}

// Read builds the view of boxes from the broker: the records `mailferry
// status` reads and the dead-letter stream.
func Read(ctx context.Context, b *broker.Broker, boxes []job.Mailbox) (*View, error) {
	st, err := status.Read(ctx, b, boxes)
	if err != nil {
		return nil, err
	}
	dead, err := ops.ListDead(ctx, b, "")
	if err != nil {
		return nil, err
	}
	v := &View{Time: time.Now().UTC(), Status: st, DeadTotal: len(dead), Dead: []DeadLetter{}, Failures: []Failure{}}
	for _, d := range slices.Backward(dead) {
		if len(v.Dead) == maxDead {
			break
		}
		reason := d.Reason
		if reason == "" {
			reason = d.Response
		}
		v.Dead = append(v.Dead, DeadLetter{Mailbox: d.Mailbox, Folder: d.Folder, UID: d.UID, Size: d.Size, Reason: reason, Time: d.Time})
	}
	for _, d := range st.Domains {
		if d.Reason != "" {
			v.Failures = append(v.Failures, Failure{What: d.Domain, Phase: d.Phase, Reason: d.Reason})
		}
	}
	for _, m := range st.Mailboxes {
		if m.Phase == status.PhaseFailed || m.LastError != "" {
			reason := m.LastError
			if reason == "" {
				reason = m.Detail
			}
			v.Failures = append(v.Failures, Failure{What: m.Mailbox, Phase: m.Phase, Reason: reason})
		}
	}
	return v, nil
}

// Server serves the page, its state as JSON and the server-sent events
// that update it.
type Server struct {
	Settings Settings
	// Read returns the current view; it is called every Settings.Interval
	// whether or not a page is open, so that a page opens on fresh data.
	Read func(ctx context.Context) (*View, error)
	Log  zerolog.Logger

	password string
	mu       sync.Mutex
	latest   []byte        // the newest view as JSON
	changed  chan struct{} // closed when latest changes
}

// Run listens on Settings.Listen (with TLS when a certificate is set)
// and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.Settings.Listen)
	if err != nil {
		return fmt.Errorf("dashboard: listen on %s: %w", s.Settings.Listen, err)
	}
	if s.Settings.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.Settings.CertFile, s.Settings.KeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("dashboard: certificate: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then closes it.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	pw, err := s.credentials()
	if err != nil {
		ln.Close()
		return err
	}
	s.password = pw
	s.changed = make(chan struct{})
	srv := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Requests end with ctx: the event streams stop on their own.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.poll(ctx)
	}()
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	defer stop()
	s.Log.Info().Str("listen", ln.Addr().String()).Str("user", s.Settings.User).Bool("tls", s.Settings.CertFile != "").Msg("dashboard serving")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("dashboard: %w", err)
	}
	return nil
}

// credentials returns the password every request must carry: the
// configured file's, or one made on first start.
func (s *Server) credentials() (string, error) {
	path := s.Settings.PasswordFile
	pw, err := config.Secret("", path)
	if err == nil {
		return pw, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("dashboard: %w", err)
	}
	if pw, err = config.MakeSecretFile(path); err != nil {
		return "", fmt.Errorf("dashboard: %w", err)
	}
	s.Log.Info().Str("user", s.Settings.User).Str("password_file", path).Msg("dashboard password made")
	return pw, nil
}

// poll reads the view every interval and publishes it when it changed.
func (s *Server) poll(ctx context.Context) {
	t := time.NewTicker(s.Settings.Interval.Std())
	defer t.Stop()
	var last *View
	failing := false
	for {
		v, err := s.Read(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				s.Log.Warn().Err(err).Msg("dashboard: reading the migration's state failed; the page shows the last state read")
			}
			failing = true
			if last == nil {
				last = &View{Time: time.Now().UTC(), Dead: []DeadLetter{}, Failures: []Failure{}}
			}
			stale := *last
			stale.Error = err.Error()
			s.publish(&stale)
		default:
			if failing {
				s.Log.Info().Msg("dashboard: reading the migration's state works again")
			}
			failing, last = false, v
			s.publish(v)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) publish(v *View) {
	b, err := json.Marshal(v)
	if err != nil {
		s.Log.Warn().Err(err).Msg("dashboard: encode view")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if string(b) == string(s.latest) {
		return
	}
	s.latest = b
	close(s.changed)
	s.changed = make(chan struct{})
}

// current returns the newest view and what closes when it changes.
func (s *Server) current() ([]byte, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest, s.changed
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /state.json", s.state)
	mux.HandleFunc("GET /events", s.events)
	return s.authenticated(mux)
}

// authenticated refuses a request without the dashboard's credentials
// and keeps what it serves out of caches and frames.
func (s *Server) authenticated(next http.Handler) http.Handler {
	return httpauth.Basic("mailferry", s.Settings.User, s.password, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	}))
}

func (s *Server) page(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(pageHTML))
}

func (s *Server) state(w http.ResponseWriter, _ *http.Request) {
	b, _ := s.current()
	if b == nil {
		http.Error(w, "no state read yet", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// keepAlive is how often an idle event stream gets a comment, so that
// proxies do not close it.
const keepAlive = 15 * time.Second

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var sent []byte
	for {
		b, changed := s.current()
		var err error
		if b != nil && string(b) != string(sent) {
			// JSON has no raw newlines: the view is one data line.
			_, err = fmt.Fprintf(w, "data: %s\n\n", b)
			sent = b
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-time.After(keepAlive):
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		}
	}
}
