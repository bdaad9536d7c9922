/* OIDC job bindings: a bounded, set-associative table of job -> (source, token, until). */
#include "oidcbind.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	bool used;
	uint8_t job[32];
	uint8_t token[32];
	struct pc_addr src;
	uint8_t pod[32]; /* the presenting pod's key, or all zero */
	int64_t until;
};

static const uint8_t NO_POD[32];

struct oidcbind {
	pthread_mutex_t lock;
	size_t n_buckets;
	struct entry *e; /* n_buckets * OIDCBIND_WAYS */
	uint64_t evictions, replays;
};

struct oidcbind *oidcbind_create(size_t max_entries)
{
	struct oidcbind *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->n_buckets = (max_entries + OIDCBIND_WAYS - 1) / OIDCBIND_WAYS;
	if (t->n_buckets == 0)
		t->n_buckets = 1;
	t->e = calloc(t->n_buckets * OIDCBIND_WAYS, sizeof(*t->e));
	if (t->e == NULL || pthread_mutex_init(&t->lock, NULL) != 0) {
		free(t->e);
		free(t);
		return NULL;
	}
	return t;
}

void oidcbind_destroy(struct oidcbind *t)
{
	if (t == NULL)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t->e);
	free(t);
}

static bool same_src(const struct pc_addr *a, const struct pc_addr *b)
{
	return addr_equal(a, b);
}

/* The job's bucket (the key is already a SHA-256: its first bytes spread evenly). */
static struct entry *bucket(struct oidcbind *t, const uint8_t job[32])
{
	uint64_t h;
	memcpy(&h, job, sizeof(h));
	return &t->e[(h % t->n_buckets) * OIDCBIND_WAYS];
}

static struct entry *find(struct entry *b, const uint8_t job[32])
{
	for (size_t i = 0; i < OIDCBIND_WAYS; i++)
		if (b[i].used && memcmp(b[i].job, job, 32) == 0)
			return &b[i];
	return NULL;
}

static const uint8_t *pod_key(const struct oidcbind_pod *pod)
{
	return pod != NULL ? pod->key : NO_POD;
}

/* Does e's binding still hold: not past its end, and its pod (if any) still at its address? */
static bool live(const struct entry *e, const struct oidcbind_pod *pod, int64_t now)
{
	if (e->until < now)
		return false;
	if (memcmp(e->pod, NO_POD, 32) == 0 || pod == NULL || pod->alive == NULL)
		return true;
	return pod->alive(pod->ctx, &e->src, e->pod);
}

int oidcbind_check(struct oidcbind *t, const uint8_t job[32], const uint8_t token[32],
                   const struct pc_addr *src, const struct oidcbind_pod *pod, int64_t until,
                   int64_t now)
{
	pthread_mutex_lock(&t->lock);
	struct entry *b = bucket(t, job), *e = find(b, job);
	int st = OIDCBIND_OK;
	bool held = e != NULL && live(e, pod, now);
	if (held && !same_src(&e->src, src)) {
		t->replays++;
		st = OIDCBIND_OTHER_SOURCE;
	} else if (e != NULL) {
		/* The same source (or an ended binding): the latest token's end counts. */
		e->src = *src;
		memcpy(e->token, token, 32);
		memcpy(e->pod, pod_key(pod), 32);
		e->until = until > e->until || !held ? until : e->until;
	} else {
		struct entry *victim = NULL;
		for (size_t i = 0; i < OIDCBIND_WAYS && victim == NULL; i++)
			if (!b[i].used || b[i].until < now)
				victim = &b[i];
		if (victim == NULL) {
			victim = &b[0];
			for (size_t i = 1; i < OIDCBIND_WAYS; i++)
				if (b[i].until < victim->until)
					victim = &b[i];
			t->evictions++;
		}
		victim->used = true;
		memcpy(victim->job, job, 32);
		memcpy(victim->token, token, 32);
		victim->src = *src;
		memcpy(victim->pod, pod_key(pod), 32);
		victim->until = until;
	}
	pthread_mutex_unlock(&t->lock);
	return st;
}

int oidcbind_lease(struct oidcbind *t, const uint8_t job[32], const uint8_t token[32],
                   const struct pc_addr *src, const struct oidcbind_pod *pod, int64_t now)
{
	pthread_mutex_lock(&t->lock);
	struct entry *e = find(bucket(t, job), job);
	int st = OIDCBIND_NO_LEASE;
	bool held = e != NULL && live(e, pod, now);
	if (held && !same_src(&e->src, src)) {
		t->replays++;
		st = OIDCBIND_OTHER_SOURCE;
	} else if (held && memcmp(e->token, token, 32) == 0 &&
	           memcmp(e->pod, pod_key(pod), 32) == 0) {
		st = OIDCBIND_OK; /* the same token, from the same address and the same pod */
	} else if (e != NULL && !held) {
		e->used = false; /* ended: its pod is gone */
	}
	pthread_mutex_unlock(&t->lock);
	return st;
}

void oidcbind_stats(struct oidcbind *t, int64_t now, struct oidcbind_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n_buckets * OIDCBIND_WAYS; i++)
		if (t->e[i].used && t->e[i].until >= now)
			out->entries++;
	out->evictions = t->evictions;
	out->replays = t->replays;
	pthread_mutex_unlock(&t->lock);
}
