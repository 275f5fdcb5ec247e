// Command goecho is the native Go echo server of the network benchmarks:
// the physical-limit row the Python event loops are compared against.
//
//	goecho -addr tcp:127.0.0.1:0|udp:127.0.0.1:0|unix:/path [-bufsize 262144]
//	       [-tls CERT.pem,KEY.pem]
//
// One goroutine per connection echoes with a fixed buffer (a plain
// Read/Write loop: no splice, no ReadFrom fast path); over udp, one
// goroutine echoes every datagram with ReadFrom/WriteTo, as a Go UDP
// server does. Once listening it prints "READY <addr>" (with the real
// port) and exits on SIGTERM/SIGINT. With -tls, connections are
// crypto/tls servers with that certificate chain and key.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	addr := flag.String("addr", "tcp:127.0.0.1:0", "tcp:HOST:PORT, udp:HOST:PORT or unix:PATH")
	bufSize := flag.Int("bufsize", 256*1024, "per-connection buffer in bytes (the loops read up to 256 KiB)")
	certKey := flag.String("tls", "", "CERT.pem,KEY.pem: serve TLS (tcp and unix)")
	flag.Parse()
	if where, ok := strings.CutPrefix(*addr, "udp:"); ok {
		serveDatagrams(where)
		return
	}
	ln, err := listen(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "goecho:", err)
		os.Exit(1)
	}
	if *certKey != "" {
		if ln, err = tlsListener(ln, *certKey); err != nil {
			fmt.Fprintln(os.Stderr, "goecho:", err)
			os.Exit(1)
		}
	}
	go stopOnSignal(ln)
	fmt.Printf("READY %s\n", describe(ln))
	serve(ln, *bufSize)
}

func listen(addr string) (net.Listener, error) {
	network, where, ok := strings.Cut(addr, ":")
	if !ok || (network != "tcp" && network != "unix") {
		return nil, fmt.Errorf("bad -addr %q (want tcp:HOST:PORT or unix:PATH)", addr)
	}
	if network == "unix" {
		_ = os.Remove(where)
	}
	return net.Listen(network, where)
}

func tlsListener(ln net.Listener, certKey string) (net.Listener, error) {
	certFile, keyFile, ok := strings.Cut(certKey, ",")
	if !ok {
		return nil, fmt.Errorf("bad -tls %q (want CERT.pem,KEY.pem)", certKey)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}), nil
}

func describe(ln net.Listener) string {
	a := ln.Addr()
	return a.Network() + ":" + a.String()
}

func stopOnSignal(ln io.Closer) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
	ln.Close() // also unlinks a Unix socket path
	os.Exit(0)
}

func serve(ln net.Listener, bufSize int) {
	for {
		conn, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "goecho: accept:", err)
			continue
		}
		go echo(conn, bufSize)
	}
}

func echo(conn net.Conn, bufSize int) {
	defer conn.Close()
	buf := make([]byte, bufSize)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func serveDatagrams(where string) {
	pc, err := net.ListenPacket("udp", where)
	if err != nil {
		fmt.Fprintln(os.Stderr, "goecho:", err)
		os.Exit(1)
	}
	go stopOnSignal(pc)
	fmt.Printf("READY udp:%s\n", pc.LocalAddr())
	buf := make([]byte, 65536)
	for {
		n, peer, err := pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err == nil {
			_, err = pc.WriteTo(buf[:n], peer)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "goecho:", err)
		}
	}
}
