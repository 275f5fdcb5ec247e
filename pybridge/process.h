/* A spawn request from the loop core (process.c) to the Go engine
 * (process.go): plain C memory, no Python objects. */
#ifndef GOLOOP_PROCESS_H
#define GOLOOP_PROCESS_H

typedef struct gl_spawn_req {
    char *path;    /* what execve runs */
    char **argv;   /* argc strings */
    int argc;
    char **envp;   /* envc strings: the child's environment */
    int envc;
    char *dir;     /* chdir before execve, or NULL */
    int *files;    /* child fd i becomes files[i]; -1: closed in the child */
    int nfiles;
    int setsid;    /* start_new_session */
    int pgid;      /* process_group, or -1 */
    int cred;      /* set uid, gid and (ngroups >= 0) the groups */
    unsigned int uid, gid;
    unsigned int *groups;
    int ngroups;   /* -1: leave the supplementary groups alone */
    int pid;       /* out */
    int pidfd;     /* out */
} gl_spawn_req;

#endif
