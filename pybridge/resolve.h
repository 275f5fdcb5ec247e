/* Name-resolution requests shared by the loop core (resolve.c) and the Go
 * engine's goroutines (resolve.go): plain C memory, no Python objects. */
#ifndef GOLOOP_RESOLVE_H
#define GOLOOP_RESOLVE_H

#include <netdb.h>
#include <stdint.h>
#include <sys/socket.h>

#define GL_RESOLVE_ADDRINFO 0
#define GL_RESOLVE_NAMEINFO 1

typedef struct gl_resolver gl_resolver;

typedef struct gl_resolve_req {
    struct gl_resolve_req *next; /* on the resolver's list of requests to
                                  * start, then on its completion list */
    gl_resolver *owner;
    uint64_t id;   /* key of the request's future in the loop's lookups */
    int kind;      /* GL_RESOLVE_ADDRINFO or GL_RESOLVE_NAMEINFO */
    char *node;    /* getaddrinfo's arguments; NULL for None */
    char *service;
    struct addrinfo hints;
    struct addrinfo *res;
    struct sockaddr_storage sa; /* getnameinfo's address and flags */
    socklen_t salen;
    int niflags;
    char host[NI_MAXHOST];
    char serv[NI_MAXSERV];
    int err;       /* the libc call's return value */
    int sys_errno; /* errno after it, for EAI_SYSTEM */
} gl_resolve_req;

/* Runs on a goroutine's thread, without the GIL: the libc call, then the
 * hand-over to the loop (resolve.c). */
void gl_resolve_run(gl_resolve_req *req);

#endif
