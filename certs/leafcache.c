/* A bounded LRU of minted leaves: a chained hash table threaded on a recency list, one mutex. */
#include "leafcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "hash.h"

struct entry {
	struct entry *next;          /* in the bucket's chain */
	struct entry *newer, *older; /* on the recency list */
	X509 *leaf;                  /* a reference of the cache's */
	int64_t refresh_at;
	size_t keylen;
	char key[];
};

struct leafcache {
	pthread_mutex_t mu; /* guards everything below */
	struct entry **buckets;
	size_t mask; /* buckets - 1, a power of two less one */
	uint64_t seed;
	struct entry *newest, *oldest;
	size_t count, size;
};

struct leafcache *leafcache_create(uint32_t size)
{
	struct leafcache *lc = calloc(1, sizeof(*lc));
	if (lc == NULL || size == 0)
		goto fail;
	size_t nb = 16;
	while (nb < size)
		nb <<= 1;
	lc->buckets = calloc(nb, sizeof(*lc->buckets));
	if (lc->buckets == NULL)
		goto fail;
	lc->mask = nb - 1;
	lc->size = size;
	/* Keys are CONNECT hosts a client chose: a seed of our own keeps the chains short. */
	if (RAND_bytes((unsigned char *)&lc->seed, sizeof(lc->seed)) != 1)
		lc->seed = (uint64_t)(uintptr_t)lc;
	pthread_mutex_init(&lc->mu, NULL);
	return lc;
fail:
	if (lc != NULL)
		free(lc->buckets);
	free(lc);
	return NULL;
}

void leafcache_destroy(struct leafcache *lc)
{
	if (lc == NULL)
		return;
	for (struct entry *e = lc->newest, *next; e != NULL; e = next) {
		next = e->older;
		X509_free(e->leaf);
		free(e);
	}
	pthread_mutex_destroy(&lc->mu);
	free(lc->buckets);
	free(lc);
}

/* The link that points at key's entry (or at the NULL ending its bucket's chain). */
static struct entry **find(struct leafcache *lc, const char *key, size_t keylen)
{
	struct entry **pp = &lc->buckets[hash_bytes(lc->seed, key, keylen) & lc->mask];
	while (*pp != NULL && ((*pp)->keylen != keylen || memcmp((*pp)->key, key, keylen) != 0))
		pp = &(*pp)->next;
	return pp;
}

static void unlink_lru(struct leafcache *lc, struct entry *e)
{
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		lc->newest = e->older;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		lc->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void push_newest(struct leafcache *lc, struct entry *e)
{
	e->newer = NULL;
	e->older = lc->newest;
	if (lc->newest != NULL)
		lc->newest->newer = e;
	lc->newest = e;
	if (lc->oldest == NULL)
		lc->oldest = e;
}

/* Unlink *pp's entry from both structures and free it. */
static void drop(struct leafcache *lc, struct entry **pp)
{
	struct entry *e = *pp;
	*pp = e->next;
	unlink_lru(lc, e);
	X509_free(e->leaf);
	free(e);
	lc->count--;
}

X509 *leafcache_get(struct leafcache *lc, const char *key, int64_t now)
{
	X509 *leaf = NULL;
	pthread_mutex_lock(&lc->mu);
	struct entry *e = *find(lc, key, strlen(key));
	if (e != NULL && now < e->refresh_at && X509_up_ref(e->leaf) == 1) {
		leaf = e->leaf;
		unlink_lru(lc, e);
		push_newest(lc, e);
	}
	pthread_mutex_unlock(&lc->mu);
	return leaf;
}

int leafcache_put(struct leafcache *lc, const char *key, X509 *leaf, int64_t refresh_at)
{
	size_t keylen = strlen(key);
	struct entry *n = malloc(sizeof(*n) + keylen + 1);
	if (n == NULL || X509_up_ref(leaf) != 1) {
		free(n);
		return -1;
	}
	memcpy(n->key, key, keylen + 1);
	n->keylen = keylen;
	n->leaf = leaf;
	n->refresh_at = refresh_at;
	pthread_mutex_lock(&lc->mu);
	struct entry **pp = find(lc, key, keylen);
	if (*pp != NULL) /* another thread minted the same host meanwhile: the newer wins */
		drop(lc, pp);
	n->next = *pp; /* the rest of the chain, or NULL */
	*pp = n;
	push_newest(lc, n);
	lc->count++;
	while (lc->count > lc->size) {
		/* Never NULL while count > size; said so for the compiler (-Wnull-dereference). */
		struct entry *old = lc->oldest;
		struct entry **op = old != NULL ? find(lc, old->key, old->keylen) : NULL;
		if (op == NULL || *op == NULL)
			break;
		drop(lc, op);
	}
	pthread_mutex_unlock(&lc->mu);
	return 0;
}

size_t leafcache_count(struct leafcache *lc)
{
	pthread_mutex_lock(&lc->mu);
	size_t n = lc->count;
	pthread_mutex_unlock(&lc->mu);
	return n;
}
