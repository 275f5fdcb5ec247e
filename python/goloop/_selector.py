"""A read-only selectors.BaseSelector view of the Go engine's fd table.

goloop does not poll through a Python selector: fd interest lives in the
C core and in Go's epoll set. asyncio's transports still look at
``loop._selector`` to describe themselves (``read=polling`` in a repr), so
the loop exposes this view, which answers from the C core's tables.
"""

import selectors
import weakref
from collections.abc import Mapping


class _FdMap(Mapping):
    def __init__(self, selector):
        self._selector = selector

    def __len__(self):
        return len(self._selector._fds())

    def __iter__(self):
        return iter(self._selector._fds())

    def __getitem__(self, fileobj):
        try:
            return self._selector.get_key(fileobj)
        except (KeyError, ValueError):
            raise KeyError(fileobj) from None


class EngineSelector(selectors.BaseSelector):
    """The loop's registered fds, as ``selectors.SelectorKey`` objects."""

    def __init__(self, loop):
        self._loop = weakref.ref(loop)

    def _core(self):
        loop = self._loop()
        if loop is None:
            raise RuntimeError("the event loop is gone")
        return loop

    def _fds(self):
        return self._core()._fd_registrations()

    def get_key(self, fileobj):
        fd = selectors._fileobj_to_fd(fileobj)
        events, reader, writer = self._core()._fd_registration(fd)
        if not events:
            raise KeyError(f"{fileobj!r} is not registered")
        return selectors.SelectorKey(fileobj, fd, events, (reader, writer))

    def get_map(self):
        return _FdMap(self)

    def register(self, fileobj, events, data=None):
        raise NotImplementedError("goloop: register fds with loop.add_reader/add_writer")

    def unregister(self, fileobj):
        raise NotImplementedError("goloop: unregister fds with loop.remove_reader/remove_writer")

    def select(self, timeout=None):
        raise NotImplementedError("goloop: the Go engine polls; there is no Python select()")

    def close(self):
        loop = self._loop()
        if loop is not None:
            loop._close_core()
