/* Admin listener on its own thread and loop: /metrics, /healthz, /readyz. */
#ifndef PORTCULLIS_ADMIN_H
#define PORTCULLIS_ADMIN_H

#include <stddef.h>

#include "policy.h"
#include "stats.h"

struct admin;

/*
 * Bind listen.admin and set up the readiness probe of the pinned resolvers.
 * Every response reads a fresh snapshot through stats(arg, ...).  NULL on
 * failure (errmsg filled).
 */
struct admin *admin_create(const struct policy_settings *ps, proxy_stats_fn stats, void *arg,
                           char *errmsg, size_t errlen);
/* Start the admin thread. */
int admin_start(struct admin *a) __attribute__((warn_unused_result));
/* Stop the thread (if started) and free. NULL is a no-op. */
void admin_destroy(struct admin *a);

#endif
