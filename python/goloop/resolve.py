"""getaddrinfo / getnameinfo arguments and results, as socket's.

goloop's loop resolves names with libc's resolver on goroutines of its Go
engine (pybridge/resolve.c) instead of asyncio's thread pool. This module
turns the Python arguments into what socket.getaddrinfo hands to libc, and
libc's answers into what socket.getaddrinfo returns, so both paths give the
same results and raise the same errors. Arguments socket.getaddrinfo would
reject or convert in some other way are left to asyncio's own path
(``None`` below), which then raises exactly as stock does.
"""

import socket
from asyncio import base_events

_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
# Plain ints and dicts: an IntFlag's & and an IntEnum's lookup by value cost
# ~2.5 us and ~2 us a call on 3.11 (cProfile of 20,000 lookups), more than
# the rest of this module's work per lookup.
_AI_CANONNAME = int(socket.AI_CANONNAME)
_FAMILIES = {int(member): member for member in socket.AddressFamily}
_KINDS = {int(member): member for member in socket.SocketKind}
# host -> its IDNA encoding (~5 us a call); errors are not kept, so they are
# raised again each time, as socket.getaddrinfo raises them.
_idna = {}
_IDNA_MAX = 1024


# socket's own functions: stock's loop calls whatever base_events.socket
# holds at the time, so a program (or a test) that replaces them must get
# the replacement called; then goloop's loop takes asyncio's path too.
_GETADDRINFO = socket.getaddrinfo
_GETNAMEINFO = socket.getnameinfo


def own_getaddrinfo():
    """Whether stock would call socket's own getaddrinfo right now."""
    return base_events.socket.getaddrinfo is _GETADDRINFO


def own_getnameinfo():
    """Whether stock would call socket's own getnameinfo right now."""
    return base_events.socket.getnameinfo is _GETNAMEINFO


def _c_int(value):
    # bool and IntEnum members (socket.AF_INET) are ints to "i" as well
    return isinstance(value, int) and _INT_MIN <= value <= _INT_MAX


def _encode_host(host):
    node = _idna.get(host)
    if node is None:
        node = host.encode("idna")  # raises UnicodeError as socket does
        if len(_idna) >= _IDNA_MAX:
            _idna.clear()
        _idna[host] = node
    return node


def encode_args(host, port, family, kind, proto, flags):
    """(node, service) as socket.getaddrinfo passes them to libc, bytes or
    None; None where asyncio's path should take the call instead."""
    if not (_c_int(family) and _c_int(kind) and _c_int(proto) and _c_int(flags)):
        return None
    if host is None or isinstance(host, bytes):
        node = host
    elif isinstance(host, str):
        node = _encode_host(host)
    else:
        return None
    if port is None or isinstance(port, bytes):
        service = port
    elif type(port) is int:  # socket.getaddrinfo checks PyLong exactly
        if not _LONG_MIN <= port <= _LONG_MAX:
            return None
        service = b"%d" % port
    elif isinstance(port, str):
        service = port.encode("utf-8")
    else:
        return None
    return node, service


def is_numeric(node, service, flags):
    """Whether libc answers without any lookup: no host or an IP address,
    no service or a number, and no canonical name asked for."""
    if int(flags) & _AI_CANONNAME:
        return False
    if service is not None and not service.isdigit():
        return False
    if node is None:
        return True
    if not (node[:1].isdigit() or b":" in node):
        return False  # an IPv4 address starts with a digit, an IPv6 one has a colon
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, node.decode("ascii"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        return True
    return False


def addrinfo_list(raw):
    """libc's answers, (family, type, proto, canonname, sockaddr) with ints
    for the first two, with the enums socket.getaddrinfo gives them (or
    the int, for a value the enum lacks, as socket._intenum_converter)."""
    families, kinds = _FAMILIES, _KINDS
    return [
        (families.get(family, family), kinds.get(kind, kind), proto, canon, sa)
        for family, kind, proto, canon, sa in raw
    ]
