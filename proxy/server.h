/* The server: the workers, the admin listener, the Kubernetes client, reload and signals. */
#ifndef PORTCULLIS_SERVER_H
#define PORTCULLIS_SERVER_H

#include <stddef.h>

struct audit_log;
struct policy;
struct server; /* opaque */

/*
 * Create listeners and workers from the policy p (a reference is taken);
 * path is watched and reloaded, sha256 is its digest.  NULL with errmsg
 * filled on failure.
 */
struct server *server_create(struct policy *p, const char *path, const char *sha256,
                             struct audit_log *audit, char *errmsg, size_t errlen);
/* Run the workers and the signal loop until drained. Returns the process exit status. */
int server_run(struct server *s);
/* NULL is a no-op. */
void server_destroy(struct server *s);

#endif
