/* The interception CA's minted leaves: a bounded LRU keyed by host, shared by worker threads. */
#ifndef PORTCULLIS_LEAFCACHE_H
#define PORTCULLIS_LEAFCACHE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

struct leafcache;

/* A cache of at most size leaves (size > 0).  NULL: no memory. */
struct leafcache *leafcache_create(uint32_t size);
void leafcache_destroy(struct leafcache *lc);

/*
 * The leaf kept for key, when one is and now is before its refresh time:
 * a reference of the caller's (X509_free it), and the entry becomes the
 * most recently used.  NULL otherwise (a stale entry stays until replaced).
 */
X509 *leafcache_get(struct leafcache *lc, const char *key, int64_t now);

/*
 * Keep leaf (the cache takes a reference of its own) for key until
 * refresh_at, replacing what key had; the least recently used entry goes
 * when the cache is over its size.  0, or -1 (no memory; nothing changed).
 */
int leafcache_put(struct leafcache *lc, const char *key, X509 *leaf, int64_t refresh_at)
    __attribute__((warn_unused_result));

size_t leafcache_count(struct leafcache *lc);

#endif
