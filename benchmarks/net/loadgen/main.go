// Command loadgen is the request/response load generator of the network
// benchmarks (in Go so that the client is not the bottleneck).
//
//	loadgen -addr tcp:127.0.0.1:PORT|udp:127.0.0.1:PORT|unix:/path [-conns 8] [-size 1024]
//	        [-warmup 300ms] [-duration 2s] [-requests 0] [-events] [-churn]
//	        [-tls CA.pem]
//
// Each of -conns connections sends a -size byte message and waits for the
// whole echo before sending the next one. Every echoed byte is checked
// against the message sent (a deterministic pattern that differs from one
// message to the next); a mismatch, a short echo or a connection error
// ends the run with exit status 1. After -warmup the measured window
// starts; it ends after -duration or -requests requests, whichever comes
// first. With -events, a {"event":"start"} and a {"event":"stop"} line
// mark the window on stdout as it happens (for a runner that samples the
// server's CPU time then). The last stdout line is the result as JSON:
// requests, bytes (echoed payload) and seconds of the window, errors.
// The whole run is bounded by -timeout, and by -stall without progress.
//
// With -churn, every request uses a new connection: dial, send, read the
// whole echo, close (the client closes first, as an HTTP/1.0 client would
// after its response), so the server's per-connection work is measured.
//
// With -tls CA.pem (tcp and unix), every connection is a crypto/tls client
// that verifies the server's certificate against CA.pem for the name
// "localhost" and completes its handshake before its first message (with
// -churn, inside each request: the server's handshake work is measured).
// No session cache, so every handshake is a full one.
//
// Over udp: a "connection" is a connected UDP socket; a message is one
// datagram and its echo must come back as one datagram (loopback does not
// drop them with at most -conns in flight; a lost one shows as a stall).
//
// With -prime (the default), one extra connection exchanges one message
// and is closed before the others open: a server process then starts the
// run having seen a connection end, as a long-running one has. (CPython's
// 256 KiB socket reads cost an mmap/munmap pair each until glibc's
// dynamic mmap threshold rises, which happens at the first such free, for
// instance when a connection's EOF read frees its unused buffer.)
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Messages above this size are written by a separate goroutine while the
// echo is read, so neither side can block on full socket buffers.
const splitAbove = 32 * 1024

// The largest UDP payload over IPv4.
const maxDatagram = 65507

type config struct {
	network, address string
	conns, size      int
	warmup, duration time.Duration
	requests         int64
	events, prime    bool
	churn            bool
	timeout, stall   time.Duration
	tls              *tls.Config // nil: plain connections
}

type result struct {
	Event          string  `json:"event"`
	Requests       int64   `json:"requests"`
	Bytes          int64   `json:"bytes"`
	Seconds        float64 `json:"seconds"`
	Errors         int64   `json:"errors"`
	Error          string  `json:"error,omitempty"`
	RequestsPerSec float64 `json:"requests_per_s"`
	Conns          int     `json:"conns"`
	Size           int     `json:"size"`
	WarmupRequests int64   `json:"warmup_requests"`
	TotalRequests  int64   `json:"total_requests"`
}

// shared is the state all connections report to.
type shared struct {
	done     atomic.Int64 // requests completed, all connections
	errors   atomic.Int64
	firstErr chan error // first error only
	stop     atomic.Bool
	pattern  []byte
}

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	time.AfterFunc(cfg.timeout, func() {
		fail(cfg, result{Errors: 1, Error: fmt.Sprintf("timeout: run exceeded %v", cfg.timeout)})
	})
	res := run(cfg)
	emit(res)
	if res.Errors > 0 {
		os.Exit(1)
	}
}

func parseFlags() (config, error) {
	var cfg config
	addr := flag.String("addr", "", "tcp:HOST:PORT, udp:HOST:PORT or unix:PATH")
	flag.IntVar(&cfg.conns, "conns", 8, "concurrent connections")
	flag.IntVar(&cfg.size, "size", 1024, "message size in bytes")
	flag.DurationVar(&cfg.warmup, "warmup", 300*time.Millisecond, "warm-up before the window")
	flag.DurationVar(&cfg.duration, "duration", 2*time.Second, "length of the measured window")
	flag.Int64Var(&cfg.requests, "requests", 0, "end the window after this many requests (0: -duration only)")
	flag.BoolVar(&cfg.events, "events", false, "print start/stop lines as the window opens and closes")
	flag.BoolVar(&cfg.prime, "prime", true, "open, use and close one connection before the run")
	flag.BoolVar(&cfg.churn, "churn", false, "a new connection per request (tcp and unix)")
	caFile := flag.String("tls", "", "TLS: verify the server's certificate against this CA (PEM)")
	flag.DurationVar(&cfg.timeout, "timeout", 60*time.Second, "hard limit for the whole run")
	flag.DurationVar(&cfg.stall, "stall", 5*time.Second, "fail when no echo completes for this long")
	flag.Parse()
	network, address, ok := strings.Cut(*addr, ":")
	if !ok || (network != "tcp" && network != "udp" && network != "unix") {
		return cfg, fmt.Errorf("bad -addr %q (want tcp:HOST:PORT, udp:HOST:PORT or unix:PATH)", *addr)
	}
	if network == "udp" && cfg.churn {
		return cfg, errors.New("-churn needs a connection-oriented -addr (tcp or unix)")
	}
	if network == "udp" && cfg.size > maxDatagram {
		return cfg, fmt.Errorf("-size %d is more than a UDP datagram holds (%d)", cfg.size, maxDatagram)
	}
	if *caFile != "" {
		if network == "udp" {
			return cfg, errors.New("-tls needs a connection-oriented -addr (tcp or unix)")
		}
		var err error
		if cfg.tls, err = tlsConfig(*caFile); err != nil {
			return cfg, err
		}
	}
	if cfg.conns < 1 || cfg.size < 1 || cfg.duration <= 0 {
		return cfg, errors.New("-conns, -size and -duration must be positive")
	}
	cfg.network, cfg.address = network, address
	return cfg, nil
}

// tlsConfig trusts only the CA in caFile; the benchmark's certificate is
// made for "localhost" (and 127.0.0.1).
func tlsConfig(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-tls %s: no PEM certificate in it", caFile)
	}
	return &tls.Config{RootCAs: roots, ServerName: "localhost"}, nil
}

func emit(v any) {
	line, _ := json.Marshal(v)
	os.Stdout.Write(append(line, '\n'))
}

func fail(cfg config, res result) {
	res.Event, res.Conns, res.Size = "result", cfg.conns, cfg.size
	emit(res)
	os.Exit(1)
}

func newPattern(size int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	p := make([]byte, size+256)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

// message returns connection c's k-th message: a window of the pattern.
func (s *shared) message(c, k, size int) []byte {
	off := (c*97 + k*31) & 255
	return s.pattern[off : off+size]
}

func (s *shared) report(err error) {
	s.errors.Add(1)
	select {
	case s.firstErr <- err:
	default:
	}
}

func run(cfg config) result {
	s := &shared{firstErr: make(chan error, 1), pattern: newPattern(cfg.size)}
	if cfg.prime {
		if err := primeServer(cfg, s); err != nil {
			fail(cfg, result{Errors: 1, Error: "priming connection: " + err.Error()})
		}
	}
	var conns []net.Conn
	var wg sync.WaitGroup
	if cfg.churn {
		for i := range cfg.conns {
			wg.Go(func() { churnWorker(s, cfg, i) })
		}
	} else {
		var err error
		if conns, err = dialAll(cfg); err != nil {
			fail(cfg, result{Errors: 1, Error: err.Error()})
		}
		for i, conn := range conns {
			wg.Go(func() { worker(s, conn, i, cfg.size) })
		}
	}
	res := measure(cfg, s)
	s.stop.Store(true)
	waitOrFail(cfg, s, &wg)
	for _, conn := range conns {
		conn.Close()
	}
	return res
}

func dialAll(cfg config) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, cfg.conns)
	for range cfg.conns {
		conn, err := dial(cfg)
		if err != nil {
			return nil, err
		}
		conns = append(conns, conn)
	}
	return conns, nil
}

// primeServer exchanges one message on a connection of its own and closes
// it; the server reads the EOF during the warm-up.
func primeServer(cfg config, s *shared) error {
	conn, err := dial(cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	out := startWriter(conn, cfg.size)
	if out != nil {
		defer close(out)
	}
	return exchange(conn, s.message(cfg.conns, 0, cfg.size), make([]byte, cfg.size), out)
}

// dial retries for a short while, in case the server is still starting;
// with -tls it returns the connection once its handshake is complete.
func dial(cfg config) (net.Conn, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		conn, err := net.DialTimeout(cfg.network, cfg.address, 2*time.Second)
		if err == nil && cfg.tls != nil {
			return handshake(conn, cfg.tls)
		}
		if err == nil || time.Now().After(deadline) {
			return conn, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func handshake(conn net.Conn, config *tls.Config) (net.Conn, error) {
	tconn := tls.Client(conn, config)
	if err := tconn.Handshake(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tconn, nil
}

// waitOrFail waits for the workers to finish their last request.
func waitOrFail(cfg config, s *shared, wg *sync.WaitGroup) {
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(cfg.stall):
		fail(cfg, result{Errors: s.errors.Load() + 1, Error: "stalled: last echo never came"})
	}
}

// measure runs the warm-up and the measured window while the workers run.
func measure(cfg config, s *shared) result {
	warm := s.done.Load()
	waitPhase(cfg, s, cfg.warmup, 0)
	startN, start := s.done.Load(), time.Now()
	if cfg.events {
		emit(map[string]string{"event": "start"})
	}
	target := int64(0)
	if cfg.requests > 0 {
		target = startN + cfg.requests
	}
	waitPhase(cfg, s, cfg.duration, target)
	stopN, stop := s.done.Load(), time.Now()
	if cfg.events {
		emit(map[string]string{"event": "stop"})
	}
	n, secs := stopN-startN, stop.Sub(start).Seconds()
	return result{
		Event: "result", Requests: n, Bytes: n * int64(cfg.size), Seconds: secs,
		RequestsPerSec: float64(n) / secs, Conns: cfg.conns, Size: cfg.size,
		WarmupRequests: startN - warm, TotalRequests: stopN,
	}
}

// waitPhase returns after d, or once target requests are done (target > 0);
// it ends the run on a worker error or when no request completes for -stall.
func waitPhase(cfg config, s *shared, d time.Duration, target int64) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	last, lastAt := s.done.Load(), time.Now()
	for {
		select {
		case <-timer.C:
			return
		case err := <-s.firstErr:
			fail(cfg, result{Errors: s.errors.Load(), Error: err.Error()})
		case now := <-tick.C:
			n := s.done.Load()
			if target > 0 && n >= target {
				return
			}
			if n != last {
				last, lastAt = n, now
			} else if now.Sub(lastAt) > cfg.stall {
				fail(cfg, result{Errors: 1, Error: fmt.Sprintf("stalled: no echo for %v", cfg.stall)})
			}
		}
	}
}

// worker drives one connection until the stop flag is set.
func worker(s *shared, conn net.Conn, c, size int) {
	buf := make([]byte, size)
	out := startWriter(conn, size)
	if out != nil {
		defer close(out)
	}
	for k := 0; !s.stop.Load(); k++ {
		msg := s.message(c, k, size)
		if err := exchange(conn, msg, buf, out); err != nil {
			s.report(fmt.Errorf("conn %d, request %d: %w", c, k, err))
			return
		}
		s.done.Add(1)
	}
}

// churnWorker makes one request per connection until the stop flag is set.
func churnWorker(s *shared, cfg config, c int) {
	buf := make([]byte, cfg.size)
	for k := 0; !s.stop.Load(); k++ {
		conn, err := dial(cfg)
		if err == nil {
			out := startWriter(conn, cfg.size)
			err = exchange(conn, s.message(c, k, cfg.size), buf, out)
			if out != nil {
				close(out)
			}
			conn.Close()
		}
		if err != nil {
			s.report(fmt.Errorf("worker %d, connection %d: %w", c, k, err))
			return
		}
		s.done.Add(1)
	}
}

// startWriter starts a writer goroutine for messages above splitAbove
// bytes and returns its channel (close it when done), else nil.
func startWriter(conn net.Conn, size int) chan []byte {
	if size <= splitAbove {
		return nil
	}
	out := make(chan []byte)
	go writer(conn, out)
	return out
}

// writer writes the messages it is handed; on error it closes the
// connection so that the reading side fails too.
func writer(conn net.Conn, out <-chan []byte) {
	for msg := range out {
		if _, err := conn.Write(msg); err != nil {
			conn.Close()
			return
		}
	}
}

// exchange sends msg (directly, or through the writer goroutine when out
// is not nil), reads the whole echo into buf and checks every byte.
func exchange(conn net.Conn, msg, buf []byte, out chan<- []byte) error {
	if out != nil {
		out <- msg
	} else if _, err := conn.Write(msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if n, err := io.ReadFull(conn, buf); err != nil {
		return fmt.Errorf("short echo (%d of %d bytes): %w", n, len(buf), err)
	}
	if !bytes.Equal(buf, msg) {
		return fmt.Errorf("echo mismatch at byte %d of %d", firstDiff(buf, msg), len(msg))
	}
	return nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
