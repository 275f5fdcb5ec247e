"""uvicorn serving a listening socket it is handed, the way a worker does.

    python benchmarks/net/uvicorn_sockets.py FD LOOP

FD is an inherited TCP socket, bound and not listening, that the parent made
as ``socket.socket(socket.AF_INET)`` (proto 0).  It is wrapped again as
AF_INET / SOCK_STREAM / proto 0, exactly as multiprocessing rebuilds a
pickled socket for uvicorn's spawned ``--workers`` (family, type and proto
travel with it) and as gunicorn's uvicorn worker holds the arbiter's
sockets, and given to ``uvicorn.Server.run(sockets=[...])``, which calls
``loop.create_server(sock=...)``.  LOOP is uvicorn's ``--loop`` value.
The app and the options are those of run_uvicorn.py's other modes.
"""

import socket
import sys

import uvicorn

OPTIONS = {"http": "httptools", "access_log": False, "log_level": "warning"}


def main(argv):
    fd, loop = int(argv[0]), argv[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fileno=fd)
    config = uvicorn.Config("asgi_app:app", loop=loop, **OPTIONS)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
