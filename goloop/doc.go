// Package goloop is the Go engine behind the goloop asyncio event loop:
// the epoll poller, the eventfd wake-up and the timer heap. It has no
// Python dependency; pybridge turns it into a CPython extension.
package goloop
