package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// The HTTP floor is the cheapest JSON decision server Go makes: net/http, the body decoded as
// JSON (the input left unread), a fixed allow encoded back. It judges nothing; it is what any
// Go server answering POST /v1/data/keyauthz/decision pays before doing any work, measured in
// the same run as keyauthz and OPA. The harness runs it as a separate process: this binary
// with -serve-floor.

// floorResult is the fixed answer, shaped like keyauthz's and OPA's.
type floorResult struct {
	Result struct {
		Allow   bool   `json:"allow"`
		Status  int    `json:"status"`
		Message string `json:"message"`
	} `json:"result"`
}

// serveFloor serves the floor on addr until the process is stopped.
func serveFloor(addr string, stdout io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var answer floorResult
	answer.Result.Allow, answer.Result.Status, answer.Result.Message = true, 200, "allowed"
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/data/keyauthz/decision", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Input json.RawMessage `json:"input"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&answer)
	})
	fmt.Fprintln(stdout, "listening on", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// startFloor runs this binary with -serve-floor on a free loopback port.
func startFloor() (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return startListening("floor", addr, 30*time.Second, self, "-serve-floor", addr)
}
