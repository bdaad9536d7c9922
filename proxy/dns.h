/* Pinned DNS resolution with c-ares, driven by one libevent loop. */
#ifndef PORTCULLIS_DNS_H
#define PORTCULLIS_DNS_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"
#include "policy.h"

struct event_base;

/* One resolver per event loop (one c-ares channel). Opaque. */
struct dns_resolver;
/* One lookup in flight. Opaque; owned by the resolver. */
struct dns_query;

enum dns_result {
	DNS_OK = 0,       /* addrs holds 1..n answers (A and AAAA, at most max_answers) */
	DNS_NXDOMAIN = 1, /* the name does not exist */
	DNS_NODATA = 2,   /* the name exists but has no A/AAAA: callers treat as dns_error */
	DNS_ERROR = 3,    /* SERVFAIL, REFUSED, bad reply, out of memory, ... */
	DNS_TIMEOUT = 4,  /* no resolver answered in time after every attempt */
};

/* Called exactly once per lookup unless cancelled first; never from inside dns_lookup(). */
typedef void (*dns_cb)(void *arg, enum dns_result res, const struct pc_addr *addrs, size_t n);

/*
 * Create a resolver pinned to the policy's resolver.servers: never reads
 * /etc/resolv.conf, /etc/hosts, search domains or environment overrides.
 * Returns NULL on failure (errmsg filled).
 */
struct dns_resolver *dns_resolver_create(struct event_base *base, const struct policy_settings *s,
					 char *errmsg, size_t errlen);
/*
 * A resolver for health probes of one server (s->n_resolvers must be 1): like
 * dns_resolver_create, but a SERVFAIL or REFUSED answer ends the lookup as
 * such, so dns_last_failure can name it.  Never used for the decisions.
 */
struct dns_resolver *dns_probe_create(struct event_base *base, const struct policy_settings *s,
                                      char *errmsg, size_t errlen);

/* Cancels every query (no callbacks) and frees. NULL is a no-op. */
void dns_resolver_destroy(struct dns_resolver *r);

/*
 * Resolve a canonical host name (never an IP literal) for A and AAAA.
 * Returns a handle for dns_cancel, or NULL if the lookup could not start
 * (callers treat as DNS_ERROR).
 */
struct dns_query *dns_lookup(struct dns_resolver *r, const char *name, dns_cb cb, void *arg);

/*
 * The cache's answer at once: when it holds a fresh answer for name, calls cb
 * with it from inside this call and returns true (counted as a lookup and a
 * cache hit); otherwise calls nothing and returns false (start dns_lookup).
 * It saves a pass of the event loop per connection to a name in the cache.
 */
bool dns_lookup_cached(struct dns_resolver *r, const char *name, dns_cb cb, void *arg);

/* After this the callback is never called. The handle is invalid afterwards. */
void dns_cancel(struct dns_query *q);

/* Monotonic time (ms) of the last answer any pinned server gave (0: never). For /readyz. */
unsigned long long dns_last_answer_ms(const struct dns_resolver *r);

/*
 * How the last lookup that got no answer from a server ended ("timeout", "SERVFAIL",
 * "REFUSED", "connection refused", "bad reply", ...), or NULL when the last lookup to end
 * was answered (NXDOMAIN and NODATA are answers).  A static string.  For /readyz.
 */
const char *dns_last_failure(const struct dns_resolver *r);

/*
 * Details of the contract above:
 * - addrs passed to a dns_cb is valid only during the call: copy what you keep.
 * - A lookup ends with DNS_TIMEOUT at the latest resolver_timeout_ms x
 *   resolver_attempts x n_resolvers after it started (c-ares alone would
 *   double the timeout on every round through the servers).
 * - "localhost", "*.localhost", "onion" and "*.onion" never reach a server:
 *   DNS_NXDOMAIN (RFC 6761 §6.3, RFC 7686).  A name that is not a plain
 *   LDH/underscore name of at most 253 bytes, or that addr_looks_ipv4(),
 *   makes dns_lookup return NULL.
 * - The name is matched case-insensitively with one trailing dot ignored.
 */

/*
 * Answer cache (one per resolver).  Successful answers only, stored as c-ares
 * returned them (already capped and de-duplicated): callers vet every address
 * on every use, hits included.  An entry lives for the smallest TTL of the
 * answer (CNAMEs included), clamped to [DNS_CACHE_TTL_MIN_S, DNS_CACHE_TTL_MAX_S];
 * at most DNS_CACHE_MAX_ENTRIES, least recently used evicted first.  NXDOMAIN,
 * NODATA, errors and timeouts are never cached.  dns_lookup delivers hits like
 * misses, from the event loop; dns_lookup_cached is the synchronous way to a
 * hit.  Concurrent lookups of one name share one c-ares query.
 */
#define DNS_CACHE_MAX_ENTRIES 4096
#define DNS_CACHE_TTL_MIN_S   1
#define DNS_CACHE_TTL_MAX_S   300

/* Counters of one resolver (for /metrics). */
struct dns_stats {
	unsigned long long lookups;    /* dns_lookup calls that returned a handle, cached hits */
	unsigned long long cache_hits; /* answered from the cache */
	unsigned long long shared;     /* joined a query already in flight for the same name */
	unsigned long long queries;    /* ares_getaddrinfo calls (an A and an AAAA query each) */
	unsigned long long timeouts;   /* lookups ended by the resolver deadline or c-ares */
	unsigned long long cache_entries;
};

void dns_resolver_stats(const struct dns_resolver *r, struct dns_stats *out);

/* Drop every cached answer (e.g. after a policy reload). Queries in flight are unaffected. */
void dns_cache_flush(struct dns_resolver *r);

#endif
