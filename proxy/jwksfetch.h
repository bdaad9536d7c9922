/*
 * JWKS URLs (identity.oidc.providers[i].jwks_url): a thread of its own fetches
 * each URL over verified TLS, resolving its host through the pinned resolvers
 * only, and serves the last key set that parsed to every worker.
 *
 * - Cache: a fetched set is fresh for the response's Cache-Control max-age
 *   less Age, clamped to [jwks_refresh_min, jwks_refresh_max]; a response
 *   without max-age is fresh for jwks_refresh_min.  When fresh no longer, the
 *   set is fetched again, with If-None-Match when it came with an ETag (a 304
 *   keeps it).
 * - Unknown kid: a token whose kid the set lacks asks for one refresh, taken at
 *   most once per min(30 s, jwks_refresh_min) per URL however many tokens ask.
 * - Failures (DNS, connect, TLS verification, a status other than 200/304, a
 *   body over JWKS_MAX_BYTES or one that is not a usable JWK Set) keep the
 *   last good set, are counted and logged, and are retried with a backoff from
 *   1 s doubling up to min(jwks_refresh_min, 5 min).  After jwks_max_stale
 *   without a successful fetch the set is dropped.
 * - Never follows a redirect; never reads proxy settings from the environment.
 */
#ifndef PORTCULLIS_JWKSFETCH_H
#define PORTCULLIS_JWKSFETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "policy.h"

struct jwks;
struct jwksfetch;
struct jwks_ref; /* a key set and its reference count */

/* Start the thread (no URL yet).  NULL with err on failure. */
struct jwksfetch *jwksfetch_start(char *err, size_t errlen);
/* Stop the thread and free everything; NULL is a no-op.  After every worker has stopped. */
void jwksfetch_stop(struct jwksfetch *f);

/*
 * Follow p's providers (takes a reference to p): new URLs are fetched at
 * once, URLs p no longer names are dropped with their keys.  A URL whose
 * jwks_ca_file changed loses its keys and is fetched again; new resolvers or
 * cache bounds fetch again at once, keeping the keys meanwhile.  startup: p
 * is the policy the daemon started with, whose URLs gate readiness until
 * each has had keys once.  Any thread; f NULL is a no-op.
 */
void jwksfetch_configure(struct jwksfetch *f, struct policy *p, bool startup);

/* The current keys of url (a reference: jwks_ref_put it), or NULL when none have been fetched. */
struct jwks_ref *jwksfetch_keys(struct jwksfetch *f, const char *url);
const struct jwks *jwks_ref_keys(const struct jwks_ref *r);
void jwks_ref_put(struct jwks_ref *r);

/* A token named a kid url's keys lack: ask for a refresh (rate-limited).  Any thread. */
void jwksfetch_kid_unknown(struct jwksfetch *f, const char *url);

/*
 * True, with why filled, when a URL of the start-up policy that the last
 * configured policy still names has never had keys (for /readyz).  A URL a
 * reload adds does not make the daemon unready: its tokens are refused until
 * it is fetched, and the log and metrics say so.  Any thread.
 */
bool jwksfetch_unready(struct jwksfetch *f, char *why, size_t whylen);

/* Per URL, for /metrics: at most max entries into out; returns how many.  Any thread. */
size_t jwksfetch_stats(struct jwksfetch *f, struct metrics_jwks *out, size_t max);

#endif
