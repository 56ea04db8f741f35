package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// The debug listener (docs/operations.md#profiling): Go's runtime profiles (net/http/pprof) on a
// listener of their own, off by default and loopback only, so that profiling the real serve
// process under load never puts the profiles on the service's port, where the policy would have
// to judge them and a gateway could expose them.

// validateDebugAddr reports a --debug-addr that is not a loopback host:port. The profiles show
// the process's code paths, goroutines and command line: they are for the operator on the host.
func validateDebugAddr(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--debug-addr %q: %w", addr, err)
	}
	if !isLoopbackHost(host) {
		return fmt.Errorf("--debug-addr %q: must be a loopback address (127.0.0.1, ::1 or localhost)", addr)
	}
	return nil
}

// debugMux serves the pprof handlers under /debug/pprof/, and nothing else.
func debugMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// startDebug binds addr (validated by validateDebugAddr) and serves debugMux on it until stop
// is called. An empty addr starts nothing.
func startDebug(addr string, logger *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-addr: %w", err)
	}
	logger.Info("debug listener (pprof) on", "addr", ln.Addr().String())
	return serveDebug(ln, logger), nil
}

// serveDebug serves debugMux on ln until stop is called; stop returns once it has ended.
func serveDebug(ln net.Listener, logger *slog.Logger) (stop func()) {
	srv := &http.Server{
		Handler:           debugMux(),
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: a CPU profile or a trace answers after the seconds it was asked for.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("debug listener", "err", err)
		}
	}()
	return func() {
		_ = srv.Close()
		<-done
	}
}
