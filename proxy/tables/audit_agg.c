/* Refusal aggregation: an open-addressing table of (source group, reason, tier) per interval. */
#include "audit_agg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

struct slot {
	bool used;
	struct pc_addr group;
	struct audit_agg_entry e;
};

struct audit_agg {
	struct slot *slots;
	size_t mask;
	size_t used;
	size_t pending; /* slots plus overflow entries with a count */
	uint64_t seed;
	struct audit_agg_entry overflow[R__COUNT];
};

struct audit_agg *audit_agg_create(size_t slots)
{
	size_t n = 16;
	while (n < slots && n < ((size_t)1 << 24))
		n *= 2;
	struct audit_agg *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return NULL;
	a->slots = calloc(n, sizeof(*a->slots));
	if (a->slots == NULL) {
		free(a);
		return NULL;
	}
	a->mask = n - 1;
	a->seed = hash_mix64((uint64_t)(uintptr_t)a);
	return a;
}

void audit_agg_destroy(struct audit_agg *a)
{
	if (a == NULL)
		return;
	free(a->slots);
	free(a);
}

static void count(struct audit_agg *a, struct audit_agg_entry *e, const struct pc_addr *src,
                  uint16_t src_port, uint64_t now)
{
	if (e->count++ == 0) {
		a->pending++;
		e->first_ns = now;
		e->src = *src;
		e->src_port = src_port;
	}
	e->last_ns = now;
}

bool audit_agg_note(struct audit_agg *a, const struct pc_addr *group, const struct pc_addr *src,
                    uint16_t src_port, enum reason why, unsigned tier_slot, const char *tier,
                    uint64_t now_ns)
{
	const char *tn = tier != NULL ? tier : "";
	uint64_t h = hash_bytes(a->seed ^ ((uint64_t)why << 32), group, sizeof(*group)) ^
	             hash_bytes(a->seed, tn, strlen(tn));
	/* Keep the table at most three quarters full so that probes stay short. */
	for (size_t i = 0, at = h & a->mask; i <= a->mask; i++, at = (at + 1) & a->mask) {
		struct slot *s = &a->slots[at];
		if (!s->used) {
			if (a->used + 1 > (a->mask + 1) / 4 * 3)
				break;
			s->used = true;
			a->used++;
			s->group = *group;
			s->e = (struct audit_agg_entry){.reason = why, .tier_slot = tier_slot};
			snprintf(s->e.tier, sizeof(s->e.tier), "%s", tn);
			return true; /* the first of its key: written in full */
		}
		if (s->e.reason == why && strncmp(s->e.tier, tn, sizeof(s->e.tier) - 1) == 0 &&
		    memcmp(&s->group, group, sizeof(*group)) == 0) {
			count(a, &s->e, src, src_port, now_ns);
			return false;
		}
	}
	struct audit_agg_entry *o = &a->overflow[why < R__COUNT ? why : 0];
	if (o->count == 0) /* of many sources and tiers: it names none */
		*o = (struct audit_agg_entry){.overflow = true, .reason = why};
	count(a, o, src, src_port, now_ns);
	return false;
}

bool audit_agg_pending(const struct audit_agg *a)
{
	return a->pending > 0;
}

void audit_agg_flush(struct audit_agg *a, audit_agg_fn fn, void *arg)
{
	if (a->used == 0 && a->pending == 0)
		return;
	for (size_t i = 0; i <= a->mask; i++) {
		struct slot *s = &a->slots[i];
		if (s->used && s->e.count > 0)
			fn(arg, &s->e);
		s->used = false;
	}
	for (size_t r = 0; r < R__COUNT; r++) {
		if (a->overflow[r].count > 0)
			fn(arg, &a->overflow[r]);
		a->overflow[r] = (struct audit_agg_entry){0};
	}
	a->used = 0;
	a->pending = 0;
}
