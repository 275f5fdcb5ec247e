// Command gohttp is the native Go reference row of the HTTP benchmark: a
// net/http server answering every request with "Hello, World!".
//
//	gohttp -addr tcp:127.0.0.1:0
//
// Once listening it prints "READY tcp:<host>:<port>" and exits on
// SIGTERM/SIGINT.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

var body = []byte("Hello, World!")

func hello(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h["Content-Type"] = []string{"text/plain"}
	h["Content-Length"] = []string{fmt.Sprint(len(body))}
	w.Write(body)
}

func main() {
	addr := flag.String("addr", "tcp:127.0.0.1:0", "tcp:HOST:PORT")
	flag.Parse()
	where, ok := strings.CutPrefix(*addr, "tcp:")
	if !ok {
		fmt.Fprintf(os.Stderr, "gohttp: bad -addr %q (want tcp:HOST:PORT)\n", *addr)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", where)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gohttp:", err)
		os.Exit(1)
	}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
		<-ch
		os.Exit(0)
	}()
	fmt.Printf("READY tcp:%s\n", ln.Addr())
	err = http.Serve(ln, http.HandlerFunc(hello))
	fmt.Fprintln(os.Stderr, "gohttp:", err)
	os.Exit(1)
}
