/* Per-source limits: a striped hash table of sources with connection counts and upload budgets. */
#include "srclimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define STRIPE_BITS   6 /* 64 stripes, chosen by the top bits of the hash */
#define N_STRIPES     (1u << STRIPE_BITS)
#define MIN_BUCKETS   16   /* per stripe; doubled when a stripe holds more entries than buckets */
#define SWEEP_BUCKETS 4    /* buckets one acquire's sweep step looks at ... */
#define SWEEP_ENTRIES 32   /* ... stopping early after this many entries */
#define EVICT_ENTRIES 256  /* a full table's eviction looks at this many entries ... */
#define EVICT_BUCKETS 4096 /* ... or this many buckets, whichever comes first */
#define EVICT_ROUNDS  8    /* victims lost to racing threads before a new source is refused */
#define NS_PER_S      1000000000ull
#define CACHELINE     64

struct stripe;

/*
 * One source's entry. A connection's slot is a pointer to it. Freed only under
 * its stripe's lock when no connection holds it and no budget window runs, so
 * a holder can use it without the lock.
 */
struct src_slot {
	struct src_slot *next; /* bucket chain (stripe lock) */
	struct stripe *stripe; /* the stripe that holds it, for charge and release */
	uint64_t hash;
	struct pc_addr key;       /* normalised source */
	uint32_t conns;           /* holds taken and not released (stripe lock) */
	_Atomic uint64_t win_end; /* the window runs while now_ns < win_end; 0 = never charged;
	                             written under the stripe lock, read without it */
	_Atomic uint64_t used;    /* bytes passed in the window, <= budget; lock-free */
	_Atomic uint64_t budget;  /* the budget of the last charge: how near it `used` is */
};

struct stripe {
	pthread_mutex_t mu;
	struct src_slot **buckets;
	size_t n_buckets; /* power of two */
	size_t count;
	size_t sweep_at; /* next bucket of the sweep */
	size_t evict_at; /* next bucket a full table's eviction looks at */
} __attribute__((aligned(CACHELINE)));

struct srclimit {
	struct stripe stripes[N_STRIPES];
	uint64_t seed;
	size_t max_entries;
	atomic_size_t entries;
	atomic_uint sweep_next; /* stripe the next sweep step visits */
	atomic_uint evict_next; /* stripe the next eviction starts at */
	atomic_ullong evictions;
};

/* ---- keys and time ---- */

static uint64_t key_hash(uint64_t seed, const struct pc_addr *k)
{
	return hash_bytes(seed + k->family, k->b, sizeof k->b);
}

/* The caller makes keys (addr_source_group, or a pod's); this only normalises an address. */
static void key_of(const struct pc_addr *src, struct pc_addr *k)
{
	if (src->family == ADDR_V4 || src->family == ADDR_V6)
		addr_source_group(src, 128, k);
	else
		*k = *src;
}

static bool key_equal(const struct pc_addr *a, const struct pc_addr *b)
{
	return a->family == b->family && memcmp(a->b, b->b, sizeof a->b) == 0;
}

/*
 * The window's length is fixed when it opens (a reload applies from the next
 * window), so whether an entry's window runs depends only on the entry and
 * now: the sweep can judge any source, whatever the caller's tier. A now
 * behind the window's start (another worker read its clock a little earlier)
 * is inside. window_ns 0 never ends.
 */
static uint64_t window_end(uint64_t window_ns, uint64_t now)
{
	if (window_ns == 0 || window_ns > UINT64_MAX - now)
		return UINT64_MAX;
	return now + window_ns;
}

static bool window_live(const struct src_slot *e, uint64_t now)
{
	return now < atomic_load(&e->win_end);
}

/* Whole seconds, rounded up, until a live window ends: 1..UINT32_MAX. */
static uint32_t seconds_left(uint64_t end, uint64_t now)
{
	uint64_t left = end - now;
	uint64_t s = left / NS_PER_S + (left % NS_PER_S != 0);

	if (end == UINT64_MAX || s > UINT32_MAX)
		return UINT32_MAX;
	return s < 1 ? 1 : (uint32_t)s;
}

/* ---- entries (stripe lock held) ---- */

/* Nobody holds it and no budget window keeps it: it can go. */
static bool entry_dead(const struct src_slot *e, uint64_t now)
{
	return e->conns == 0 && !window_live(e, now);
}

static void entry_free(struct srclimit *t, struct stripe *st, struct src_slot *e)
{
	st->count--;
	atomic_fetch_sub(&t->entries, 1);
	free(e);
}

/* Unlink and free the dead entries of one bucket; returns how many entries it looked at. */
static size_t bucket_collect(struct srclimit *t, struct stripe *st, size_t b, uint64_t now)
{
	struct src_slot **pp = &st->buckets[b];
	size_t seen = 0;

	while (*pp != NULL) {
		struct src_slot *e = *pp;
		seen++;
		if (entry_dead(e, now)) {
			*pp = e->next;
			entry_free(t, st, e);
		} else {
			pp = &e->next;
		}
	}
	return seen;
}

/* Find k in its bucket, collecting dead entries met on the way (the match itself is kept). */
static struct src_slot *stripe_find(struct srclimit *t, struct stripe *st, const struct pc_addr *k,
                                    uint64_t h, uint64_t now)
{
	struct src_slot **pp = &st->buckets[h & (st->n_buckets - 1)];
	struct src_slot *found = NULL;

	while (*pp != NULL) {
		struct src_slot *e = *pp;
		if (found == NULL && e->hash == h && key_equal(&e->key, k)) {
			found = e;
			pp = &e->next;
		} else if (entry_dead(e, now)) {
			*pp = e->next;
			entry_free(t, st, e);
		} else {
			pp = &e->next;
		}
	}
	return found;
}

/* Double the buckets; on allocation failure keep the old ones (longer chains, still correct). */
static void stripe_grow(struct stripe *st)
{
	size_t n = st->n_buckets * 2;
	struct src_slot **nb = calloc(n, sizeof *nb);

	if (nb == NULL)
		return;
	for (size_t i = 0; i < st->n_buckets; i++) {
		struct src_slot *e = st->buckets[i];
		while (e != NULL) {
			struct src_slot *next = e->next;
			e->next = nb[e->hash & (n - 1)];
			nb[e->hash & (n - 1)] = e;
			e = next;
		}
	}
	free(st->buckets);
	st->buckets = nb;
	st->n_buckets = n;
}

/* Reserve room for one entry; false when the table already holds max_entries. */
static bool reserve(struct srclimit *t)
{
	/* Reserve first so concurrent stripes cannot overshoot the cap together. */
	if (atomic_fetch_add(&t->entries, 1) >= t->max_entries) {
		atomic_fetch_sub(&t->entries, 1);
		return false;
	}
	return true;
}

/* Insert a new entry for k into a reservation (given back on failure). NULL: out of memory. */
static struct src_slot *entry_new(struct srclimit *t, struct stripe *st, const struct pc_addr *k,
                                  uint64_t h)
{
	struct src_slot *e = calloc(1, sizeof *e);
	size_t b;

	if (e == NULL) {
		atomic_fetch_sub(&t->entries, 1);
		return NULL;
	}
	e->stripe = st;
	e->hash = h;
	e->key = *k;
	atomic_init(&e->win_end, 0);
	atomic_init(&e->used, 0);
	atomic_init(&e->budget, 0);
	b = h & (st->n_buckets - 1);
	e->next = st->buckets[b];
	st->buckets[b] = e;
	st->count++;
	if (st->count > st->n_buckets)
		stripe_grow(st);
	return e;
}

static int admit(const struct src_slot *e, uint32_t max_conns, uint64_t budget, uint64_t now,
                 uint32_t *retry)
{
	if (budget != 0) {
		uint64_t end = atomic_load(&e->win_end);
		if (now < end && atomic_load(&e->used) >= budget) {
			*retry = seconds_left(end, now);
			return SRCLIMIT_BUDGET;
		}
	}
	if ((max_conns != 0 && e->conns >= max_conns) || e->conns == UINT32_MAX) {
		*retry = 1;
		return SRCLIMIT_CONNS;
	}
	return SRCLIMIT_OK;
}

/*
 * One bounded step of garbage collection on the next stripe in turn, so that
 * dead entries go even in stripes no new connection hashes to. Every acquire
 * adds at most one entry and sweeps SWEEP_BUCKETS buckets (load factor <= 1),
 * so sweeping keeps ahead of growth. Skipped when the stripe is busy.
 */
static void sweep_step(struct srclimit *t, uint64_t now)
{
	unsigned i = atomic_fetch_add_explicit(&t->sweep_next, 1, memory_order_relaxed) % N_STRIPES;
	struct stripe *st = &t->stripes[i];
	size_t seen = 0;

	if (pthread_mutex_trylock(&st->mu) != 0)
		return;
	for (int n = 0; n < SWEEP_BUCKETS && seen < SWEEP_ENTRIES; n++)
		seen += bucket_collect(t, st, st->sweep_at++ & (st->n_buckets - 1), now);
	pthread_mutex_unlock(&st->mu);
}

/* Unlink e from its bucket (stripe lock held, e in the table). */
static void entry_unlink(struct stripe *st, struct src_slot *e)
{
	struct src_slot **pp = &st->buckets[e->hash & (st->n_buckets - 1)];

	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
}

/* What an idle entry has spent: used of budget (budget 0: never charged, nothing spent). */
struct spent {
	uint64_t used, budget;
};

static struct spent spent_of(const struct src_slot *e)
{
	return (struct spent){atomic_load(&e->used), atomic_load(&e->budget)};
}

/* Has a spent a smaller share of its budget than b?  (Entries of different tiers compare fairly.)
 */
static bool less_spent(struct spent a, struct spent b)
{
	if (a.budget == 0 || b.budget == 0)
		return a.budget == 0 && b.budget != 0;
	return (unsigned __int128)a.used * b.budget < (unsigned __int128)b.used * a.budget;
}

/* The idle entry of st that spent the least, among the buckets from st->evict_at on. */
static struct src_slot *least_spent(struct stripe *st, size_t *seen, size_t *buckets)
{
	struct src_slot *best = NULL;
	for (size_t n = 0; n < st->n_buckets && *seen < EVICT_ENTRIES && *buckets < EVICT_BUCKETS;
	     n++, (*buckets)++) {
		for (struct src_slot *e = st->buckets[(st->evict_at + n) & (st->n_buckets - 1)];
		     e != NULL; e = e->next, (*seen)++)
			if (e->conns == 0 &&
			    (best == NULL || less_spent(spent_of(e), spent_of(best))))
				best = e;
	}
	return best;
}

/*
 * The table is full: make room for one new source and reserve it for the
 * caller (so a thread racing it cannot take the room first). Entries held by a
 * connection cannot go (their holders use them without a lock). Dead entries
 * not yet collected go first; otherwise the idle entry (no connection, only a
 * running budget window) that spent the smallest share of its budget among
 * those looked at, so the sources nearest their budget keep their record
 * longest. Bounded: at most EVICT_ENTRIES entries and EVICT_BUCKETS buckets
 * per look, one stripe lock at a time; each look samples other buckets.
 * False when nothing could be freed: every entry looked at is held.
 */
static bool make_room_once(struct srclimit *t, uint64_t now)
{
	unsigned start = atomic_fetch_add_explicit(&t->evict_next, 1, memory_order_relaxed);
	size_t seen = 0, buckets = 0;
	struct spent best_spent = {0, 0};
	struct stripe *best = NULL;

	/* Look: collect the dead, find the stripe of the idle entry that spent the least. */
	for (unsigned i = 0; i < N_STRIPES && seen < EVICT_ENTRIES && buckets < EVICT_BUCKETS;
	     i++) {
		struct stripe *st = &t->stripes[(start + i) % N_STRIPES];
		pthread_mutex_lock(&st->mu);
		size_t before = st->count, b0 = buckets;
		for (size_t n = 0;
		     n < st->n_buckets && seen < EVICT_ENTRIES && buckets < EVICT_BUCKETS;
		     n++, buckets++)
			seen +=
			    bucket_collect(t, st, (st->evict_at + n) & (st->n_buckets - 1), now);
		size_t s2 = 0, b2 = 0;
		struct src_slot *e = least_spent(st, &s2, &b2);
		if (e != NULL && (best == NULL || less_spent(spent_of(e), best_spent))) {
			best = st;
			best_spent = spent_of(e);
		}
		if (best != st)
			st->evict_at += buckets - b0; /* the next look samples other buckets */
		bool freed = st->count < before;
		pthread_mutex_unlock(&st->mu);
		if (freed && reserve(t))
			return true;
	}
	if (best == NULL)
		return false;
	/*
	 * Evict: the idle entry of that stripe that spent the least now, under its
	 * lock (the one seen may have been taken meanwhile).  Its room passes to
	 * the caller: it is freed and t->entries stays.
	 */
	pthread_mutex_lock(&best->mu);
	size_t s3 = 0, b3 = 0;
	struct src_slot *victim = least_spent(best, &s3, &b3);
	best->evict_at += b3; /* the next eviction samples elsewhere */
	if (victim != NULL) {
		entry_unlink(best, victim);
		best->count--;
		free(victim);
		atomic_fetch_add_explicit(&t->evictions, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&best->mu);
	return victim != NULL || reserve(t);
}

/* Threads that pick the same victim race for it; the losers look again. */
static bool make_room(struct srclimit *t, uint64_t now)
{
	for (int round = 0; round < EVICT_ROUNDS; round++)
		if (make_room_once(t, now))
			return true;
	return false;
}

/* ---- API ---- */

struct srclimit *srclimit_create(size_t max_entries)
{
	struct srclimit *t;
	size_t size = (sizeof *t + CACHELINE - 1) / CACHELINE * CACHELINE;
	unsigned i;

	t = aligned_alloc(CACHELINE, size);
	if (t == NULL)
		return NULL;
	memset(t, 0, size);
	/* Not a secret, but not a constant either: where the table landed (ASLR). */
	t->seed = hash_mix64((uint64_t)(uintptr_t)t);
	t->max_entries = max_entries;
	atomic_init(&t->evict_next, 0);
	atomic_init(&t->evictions, 0);
	atomic_init(&t->entries, 0);
	atomic_init(&t->sweep_next, 0);
	for (i = 0; i < N_STRIPES; i++) {
		struct stripe *st = &t->stripes[i];
		st->buckets = calloc(MIN_BUCKETS, sizeof *st->buckets);
		if (st->buckets == NULL || pthread_mutex_init(&st->mu, NULL) != 0) {
			free(st->buckets);
			goto fail;
		}
		st->n_buckets = MIN_BUCKETS;
	}
	return t;
fail:
	while (i-- > 0) {
		pthread_mutex_destroy(&t->stripes[i].mu);
		free(t->stripes[i].buckets);
	}
	free(t);
	return NULL;
}

void srclimit_destroy(struct srclimit *t)
{
	if (t == NULL)
		return;
	for (unsigned i = 0; i < N_STRIPES; i++) {
		struct stripe *st = &t->stripes[i];
		for (size_t b = 0; b < st->n_buckets; b++) {
			struct src_slot *e = st->buckets[b];
			while (e != NULL) {
				struct src_slot *next = e->next;
				free(e);
				e = next;
			}
		}
		free(st->buckets);
		pthread_mutex_destroy(&st->mu);
	}
	free(t);
}

int srclimit_acquire(struct srclimit *t, const struct pc_addr *src, uint32_t max_conns,
                     uint64_t budget_bytes, uint64_t window_ns, uint64_t now_ns,
                     struct src_slot **out, uint32_t *retry_after_s)
{
	struct pc_addr k;
	uint64_t h;
	struct stripe *st;
	struct src_slot *e;
	uint32_t retry = 1;
	int rc = SRCLIMIT_NOMEM;

	*out = NULL;
	key_of(src, &k);
	h = key_hash(t->seed, &k);
	st = &t->stripes[h >> (64 - STRIPE_BITS)];

	bool reserved = false;
	for (;;) {
		pthread_mutex_lock(&st->mu);
		e = stripe_find(t, st, &k, h, now_ns);
		if (e != NULL && reserved)
			atomic_fetch_sub(&t->entries,
			                 1); /* another thread added this source meanwhile */
		else if (e == NULL && (reserved || reserve(t)))
			rc = (e = entry_new(t, st, &k, h)) != NULL ? SRCLIMIT_OK : SRCLIMIT_NOMEM;
		else if (e == NULL)
			rc = SRCLIMIT_FULL;
		if (e != NULL) {
			/* A refused entry is never dead: it is full (conns >= 1) or its window
			 * runs. */
			rc = admit(e, max_conns, budget_bytes, now_ns, &retry);
			if (rc == SRCLIMIT_OK) {
				e->conns++;
				retry = 0;
				*out = e;
			}
		}
		pthread_mutex_unlock(&st->mu);
		/* Full: one round of making room, which reserves it for this source. */
		if (rc != SRCLIMIT_FULL || reserved || !make_room(t, now_ns))
			break;
		reserved = true;
	}
	sweep_step(t, now_ns);
	if (retry_after_s != NULL)
		*retry_after_s = retry;
	return rc;
}

/* Start a new window at now unless another thread already did (once per window). */
static void window_open(struct src_slot *e, uint64_t window_ns, uint64_t now)
{
	pthread_mutex_lock(&e->stripe->mu);
	if (!window_live(e, now)) {
		/* used first: whoever sees the new end also sees the emptied counter. */
		atomic_store(&e->used, 0);
		atomic_store(&e->win_end, window_end(window_ns, now));
	}
	pthread_mutex_unlock(&e->stripe->mu);
}

/*
 * Why the total passed in one window never exceeds the budget: used only ever
 * moves by a successful compare-and-swap from u to u + take with
 * take <= budget - u, so used <= budget at all times, and every byte this
 * function lets pass was added to used by exactly one such swap. Passed bytes
 * in a window therefore sum to used at the window's end, <= budget. A swap that
 * loses a race (another charge, or window_open zeroing used) rereads and
 * recomputes take; one that races a reset lands in the new window and counts
 * there. When demand exceeds the budget the charge that cannot take all it asked
 * for leaves used == budget, so the passed total is exactly the budget.
 * (fetch_add + clamp would be wait-free but lets used run past the budget by
 * the losers' n and could wrap with an absurd n; the CAS keeps used bounded.)
 */
uint64_t srclimit_charge(struct src_slot *s, uint64_t n, uint64_t budget_bytes, uint64_t window_ns,
                         uint64_t now_ns)
{
	uint64_t used, take;

	if (budget_bytes == 0 || n == 0)
		return n;
	if (atomic_load_explicit(&s->budget, memory_order_relaxed) != budget_bytes)
		atomic_store_explicit(&s->budget, budget_bytes, memory_order_relaxed);
	if (!window_live(s, now_ns))
		window_open(s, window_ns, now_ns);
	used = atomic_load(&s->used);
	do {
		if (used >= budget_bytes)
			return 0;
		take = budget_bytes - used < n ? budget_bytes - used : n;
	} while (!atomic_compare_exchange_weak(&s->used, &used, used + take));
	return take;
}

int srclimit_budget_check(const struct src_slot *s, uint64_t budget_bytes, uint64_t now_ns,
                          uint32_t *retry_after_s)
{
	uint64_t end = atomic_load(&s->win_end);

	if (retry_after_s != NULL)
		*retry_after_s = 0;
	if (budget_bytes == 0 || now_ns >= end || atomic_load(&s->used) < budget_bytes)
		return SRCLIMIT_OK;
	if (retry_after_s != NULL)
		*retry_after_s = seconds_left(end, now_ns);
	return SRCLIMIT_BUDGET;
}

void srclimit_release(struct srclimit *t, struct src_slot *s)
{
	struct stripe *st;

	if (s == NULL)
		return;
	st = s->stripe;
	pthread_mutex_lock(&st->mu);
	if (s->conns == 0)
		abort(); /* impossible: released more often than acquired */
	/* Never charged (no budget, or nothing uploaded yet): nothing to keep. */
	if (--s->conns == 0 && atomic_load(&s->win_end) == 0) {
		entry_unlink(st, s);
		entry_free(t, st, s);
	}
	pthread_mutex_unlock(&st->mu);
}

size_t srclimit_entries(const struct srclimit *t)
{
	/* A reservation that finds the table full is given back at once: never report it. */
	size_t n = atomic_load(&t->entries);
	return n < t->max_entries ? n : t->max_entries;
}

uint64_t srclimit_evictions(const struct srclimit *t)
{
	return atomic_load_explicit(&t->evictions, memory_order_relaxed);
}
