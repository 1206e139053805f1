package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/httpauth"
)

// Server serves /metrics, /healthz and /readyz until Close.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// readyTimeout bounds one /readyz probe.
const readyTimeout = 5 * time.Second

// Serve listens on s.Listen and serves m's registry at /metrics, 200 at
// /healthz while the process runs, and at /readyz 200 when m.Ready finds
// nothing wrong (503 with the reasons otherwise). With cert_file and
// key_file it serves HTTPS; with user and password_file it requires HTTP
// basic authentication of every request. Without s.Listen it returns nil,
// nil: no listener.
func Serve(s Settings, m *Metrics, log zerolog.Logger) (*Server, error) {
	if s.Listen == "" {
		return nil, nil
	}
	if err := s.Check(); err != nil {
		return nil, fmt.Errorf("%s: %w", Section, err)
	}
	// Check required the credentials.
	password, err := config.Secret("", s.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("%s password: %w", Section, err)
	}
	h := httpauth.Basic("mailferry metrics", s.User, password, mux(m))
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return nil, fmt.Errorf("%s listen: %w", Section, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	out := &Server{srv: srv, ln: ln, done: make(chan struct{})}
	tls := s.CertFile != ""
	go func() {
		defer close(out.done)
		var err error
		if tls {
			err = srv.ServeTLS(ln, s.CertFile, s.KeyFile)
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Str("listen", ln.Addr().String()).Msg("metrics server stopped")
		}
	}()
	log.Info().Str("listen", ln.Addr().String()).Bool("tls", tls).Msg("serving /metrics, /healthz, /readyz")
	return out, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server: it stops accepting, lets requests in flight
// finish until ctx ends, and returns once its goroutine has.
func (s *Server) Close(ctx context.Context) error {
	if s == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	return err
}

func mux(m *Metrics) *http.ServeMux {
	mx := http.NewServeMux()
	reg := m.Registry
	mx.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mx.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mx.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := m.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mx
}
