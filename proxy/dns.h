/* Pinned DNS resolution with c-ares, driven by one libevent loop. */
#ifndef PORTCULLIS_DNS_H
#define PORTCULLIS_DNS_H

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
/* Cancels every query (no callbacks) and frees. NULL is a no-op. */
void dns_resolver_destroy(struct dns_resolver *r);

/*
 * Resolve a canonical host name (never an IP literal) for A and AAAA.
 * Returns a handle for dns_cancel, or NULL if the lookup could not start
 * (callers treat as DNS_ERROR).
 */
struct dns_query *dns_lookup(struct dns_resolver *r, const char *name, dns_cb cb, void *arg);

/* After this the callback is never called. The handle is invalid afterwards. */
void dns_cancel(struct dns_query *q);

/* Monotonic time (ms) of the last answer any pinned server gave (0: never). For /readyz. */
unsigned long long dns_last_answer_ms(const struct dns_resolver *r);

#endif
