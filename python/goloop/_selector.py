"""A selectors.BaseSelector view of the C core's fd table.

goloop does not poll through a Python selector: fd interest lives in the
C core and in Go's epoll set. asyncio's transports still look at
``loop._selector`` to describe themselves (``read=polling`` in a repr),
and in debug mode the loop runs asyncio's own ``_add_reader`` & co., which
register through the selector; this view serves both from the C core's
tables. ``select()`` does not exist: the engine polls.
"""

import selectors
from collections.abc import Mapping


class _FdMap(Mapping):
    def __init__(self, selector):
        self._selector = selector

    def __len__(self):
        return len(self._selector._fds())

    def __iter__(self):
        return iter(self._selector._fds())

    def __getitem__(self, fileobj):
        # As selectors' mapping: KeyError for an unregistered object, and
        # the ValueError of an object with no fd (a socket closed since,
        # unless registered by itself) goes up; 3.13's _remove_reader
        # relies on that through get_map().get().
        return self._selector.get_key(fileobj)


class EngineSelector(selectors.BaseSelector):
    """The loop's registered fds, as ``selectors.SelectorKey`` objects."""

    def __init__(self, loop):
        # A strong reference: asyncio's close() path (also from the loop's
        # __del__, after weakrefs are cleared) goes through the selector.
        # The cycle is broken by close().
        self._loop = loop

    def _core(self):
        if self._loop is None:
            raise RuntimeError("the selector is closed")
        return self._loop

    def _fds(self):
        return self._core()._fd_registrations()

    def get_key(self, fileobj):
        # The C core finds a socket closed since registration by identity,
        # as selectors' _fileobj_lookup does, and names the registered object.
        fd, events, reader, writer, registered = self._core()._fd_registration(fileobj)
        if not events:
            raise KeyError(f"{fileobj!r} is not registered")
        return selectors.SelectorKey(registered, fd, events, (reader, writer))

    def get_map(self):
        return _FdMap(self)

    def register(self, fileobj, events, data=None):
        if not events or events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE):
            raise ValueError(f"Invalid events: {events!r}")
        reader, writer = data if data is not None else (None, None)
        self._core()._fd_set(
            fileobj,
            reader if events & selectors.EVENT_READ else None,
            writer if events & selectors.EVENT_WRITE else None,
        )
        return self.get_key(fileobj)

    modify = register

    def unregister(self, fileobj):
        key = self.get_key(fileobj)
        self._core()._fd_set(fileobj, None, None)
        return key

    def select(self, timeout=None):
        raise NotImplementedError("goloop: the Go engine polls; there is no Python select()")

    def close(self):
        loop, self._loop = self._loop, None
        if loop is not None:
            loop._close_core()
