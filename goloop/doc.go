// Package goloop is the Go engine behind the goloop asyncio event loop:
// the epoll set and eventfd it creates for the C loop core, goroutines for
// the loop's blocking calls (libc's resolver), and child processes (a
// vfork-style spawn with a pidfd, and the reaping of children that outlive
// their loop). It has no Python dependency; pybridge turns it into a
// CPython extension.
package goloop
