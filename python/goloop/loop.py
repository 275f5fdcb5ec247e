"""goloop.Loop: the native loop core plus asyncio's own slow paths.

The class combines ``_goloop.LoopCore`` (C: ready queue, handles, timers,
run loop, fd dispatch over the Go engine) with ``asyncio.BaseEventLoop``
(Python: tasks, futures, executors, async generators, exception handling).
Methods asyncio implements in ``selector_events`` and ``unix_events`` that
goloop shares unchanged (self-pipe, signal handling) are borrowed from
those classes, so their validation and messages are the stock ones.
"""

import signal
import sys
import threading
import warnings
import weakref
from asyncio import base_events, events, format_helpers, selector_events, unix_events

from . import _goloop

_Selector = selector_events.BaseSelectorEventLoop
_Unix = unix_events._UnixSelectorEventLoop

_NOT_YET = (
    "sock_recv",
    "sock_recv_into",
    "sock_recvfrom",
    "sock_recvfrom_into",
    "sock_sendall",
    "sock_sendto",
    "sock_connect",
    "sock_accept",
    "sock_sendfile",
    "create_connection",
    "create_server",
    "create_unix_connection",
    "create_unix_server",
    "create_datagram_endpoint",
    "connect_accepted_socket",
    "connect_read_pipe",
    "connect_write_pipe",
    "subprocess_exec",
    "subprocess_shell",
    "sendfile",
    "start_tls",
)


def _not_implemented(name):
    async def method(self, *args, **kwargs):
        raise NotImplementedError(f"goloop: {name} is not implemented yet")

    method.__name__ = name
    method.__qualname__ = f"Loop.{name}"
    return method


class Loop(_goloop.LoopCore, base_events.BaseEventLoop):
    """An asyncio event loop driven by goloop's Go engine."""

    def __init__(self):
        super().__init__()
        self._transports = weakref.WeakValueDictionary()
        self._signal_handlers = {}
        self._ssock = self._csock = None
        self._internal_fds = 0
        self._wakeup_claimed = False
        self._make_self_pipe()
        self._set_internal_fd(self._ssock.fileno())

    # -- run / close -----------------------------------------------------

    def run_forever(self):
        """Run until stop() is called."""
        if hasattr(base_events.BaseEventLoop, "_run_forever_setup"):
            try:
                self._run_forever_setup()
                self._run_native()
            finally:
                self._run_forever_cleanup()
            return
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        try:
            self._thread_id = threading.get_ident()
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            self._run_native()
        finally:
            self._stopping = False
            self._thread_id = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def _run_native(self):
        claimed = self._claim_signal_wakeup()
        try:
            self._run_until_stopped()
        finally:
            if claimed:
                self._release_signal_wakeup()

    def _claim_signal_wakeup(self):
        """Route signals to the self-pipe while the loop runs.

        The Go runtime's threads may receive a process-directed signal
        (Ctrl+C) instead of the loop thread, so epoll_wait would not be
        interrupted; Python's C handler then writes the signal number to
        the wakeup fd, which wakes the poller, and the loop runs the
        Python-level handler right after the poll.
        """
        if threading.current_thread() is not threading.main_thread():
            return False
        fd = self._csock.fileno()
        try:
            old = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
        except (ValueError, OSError):
            return False
        if old not in (-1, fd):
            signal.set_wakeup_fd(old)
            return False
        return old == -1

    def _release_signal_wakeup(self):
        if self._signal_handlers or self._csock is None:
            return  # add_signal_handler owns the wakeup fd now
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError):
            pass

    def close(self):
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        self._close_self_pipe()
        super().close()
        self._close_core()
        if not sys.is_finalizing():
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        elif self._signal_handlers:
            warnings.warn(
                f"Closing the loop {self!r} on interpreter shutdown "
                f"stage, skipping signal handlers removal",
                ResourceWarning,
                source=self,
            )
            self._signal_handlers.clear()

    # -- slow paths called from C -----------------------------------------

    def _call_soon_slow(self, callback, args, context, method):
        """call_soon & co. in debug mode: asyncio's checks and tracebacks."""
        if method != "call_soon_threadsafe":
            self._check_thread()
        self._check_callback(callback, method)
        handle = events.Handle(callback, args, self, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        self._add_callback(handle)
        return handle

    def _call_at_slow(self, when, callback, args, context):
        self._check_thread()
        self._check_callback(callback, "call_at")
        timer = _goloop.TimerHandle(when, callback, args, self, context)
        if timer._source_traceback:
            del timer._source_traceback[-1]
        self._schedule_timer(timer)
        return timer

    def _callback_error(self, handle, exc):
        """Handle._run's except branch, for a callback that raised."""
        cb = format_helpers._format_callback_source(
            handle._callback, handle._args, **_debug_kw(self)
        )
        context = {
            "message": f"Exception in callback {cb}",
            "exception": exc,
            "handle": handle,
        }
        if handle._source_traceback:
            context["source_traceback"] = handle._source_traceback
        self.call_exception_handler(context)

    def _run_handle_debug(self, handle):
        """BaseEventLoop._run_once's debug branch: time each callback."""
        try:
            self._current_handle = handle
            t0 = self.time()
            handle._run()
            dt = self.time() - t0
            if dt >= self.slow_callback_duration:
                base_events.logger.warning(
                    "Executing %s took %.3f seconds", base_events._format_handle(handle), dt
                )
        finally:
            self._current_handle = None

    # -- fd watching: public wrappers as in selector_events ----------------

    _ensure_fd_no_transport = _Selector._ensure_fd_no_transport
    add_reader = _Selector.add_reader
    remove_reader = _Selector.remove_reader
    add_writer = _Selector.add_writer
    remove_writer = _Selector.remove_writer

    # -- self-pipe and signals: asyncio's own code --------------------------

    _make_self_pipe = _Selector._make_self_pipe
    _close_self_pipe = _Selector._close_self_pipe
    _read_from_self = _Selector._read_from_self
    _write_to_self = _Selector._write_to_self
    _process_self_data = _Unix._process_self_data
    _handle_signal = _Unix._handle_signal
    _check_signal = _Unix._check_signal

    def add_signal_handler(self, sig, callback, *args):
        _Unix.add_signal_handler(self, sig, callback, *args)
        # Signal numbers now arrive through the self-pipe: poll it even
        # while callbacks are ready, as for any user fd.
        self._set_internal_fd(-1)

    def remove_signal_handler(self, sig):
        removed = _Unix.remove_signal_handler(self, sig)
        if not self._signal_handlers and self._ssock is not None:
            self._set_internal_fd(self._ssock.fileno())
        return removed

    def __repr__(self):
        return (
            f"<{self.__class__.__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )


for _name in _NOT_YET:
    setattr(Loop, _name, _not_implemented(_name))
del _name


def _debug_kw(loop):
    # format_helpers gained the `debug` keyword in 3.13.
    if sys.version_info >= (3, 13):
        return {"debug": loop.get_debug()}
    return {}

