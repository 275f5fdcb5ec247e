// Package goloop is the Go engine behind the goloop asyncio event loop:
// the timer heap, the epoll set and eventfd it creates for the C loop
// core, and goroutines for the loop's blocking calls (libc's resolver).
// It has no Python dependency; pybridge turns it into a CPython extension.
package goloop
