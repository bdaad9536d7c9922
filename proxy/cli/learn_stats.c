/* What portcullis learn counts while it streams records: memory grows with destinations and runs only. */
#include "learn_stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

int learn_stats_init(struct learn_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->seed = 0x1ea2c0ffee5eedull;
	s->cap = 1024;
	s->tab = calloc(s->cap, sizeof(*s->tab));
	return s->tab != NULL ? 0 : -1;
}

void learn_stats_fini(struct learn_stats *s)
{
	for (size_t i = 0; s->tab != NULL && i < s->cap; i++) {
		if (s->tab[i] != NULL) {
			free(s->tab[i]->host);
			free(s->tab[i]);
		}
	}
	free(s->tab);
	for (size_t i = 0; i < s->n_tiers; i++)
		free(s->tiers[i].run_set);
	memset(s, 0, sizeof(*s));
}

/* ---- distinct sources ---- */

static void hll_add(struct learn_srcs *set, uint64_t h)
{
	unsigned idx = (unsigned)(h & (LEARN_HLL_REGS - 1));
	uint64_t rest = (h >> 6) | (1ull << 58); /* 58 bits left; the guard bounds the rank */
	uint8_t rank = (uint8_t)(__builtin_ctzll(rest) + 1);
	if (set->u.reg[idx] < rank)
		set->u.reg[idx] = rank;
}

static void srcs_add(struct learn_srcs *set, uint64_t h)
{
	if (set->hll) {
		hll_add(set, h);
		return;
	}
	for (unsigned i = 0; i < set->n; i++)
		if (set->u.exact[i] == h)
			return;
	if (set->n < LEARN_EXACT_SRCS) {
		set->u.exact[set->n++] = h;
		return;
	}
	uint64_t old[LEARN_EXACT_SRCS];
	memcpy(old, set->u.exact, sizeof(old));
	memset(set->u.reg, 0, sizeof(set->u.reg));
	set->hll = true;
	for (unsigned i = 0; i < LEARN_EXACT_SRCS; i++)
		hll_add(set, old[i]);
	hll_add(set, h);
}

uint64_t learn_srcs_count(const struct learn_srcs *set)
{
	if (!set->hll)
		return set->n;
	double sum = 0, m = LEARN_HLL_REGS;
	unsigned zeros = 0;
	for (unsigned i = 0; i < LEARN_HLL_REGS; i++) {
		sum += ldexp(1.0, -set->u.reg[i]);
		zeros += set->u.reg[i] == 0;
	}
	double e = 0.709 * m * m / sum; /* Flajolet et al. 2007, alpha for m = 64 */
	if (e <= 2.5 * m && zeros > 0)
		e = m * log(m / zeros); /* small range: linear counting */
	uint64_t n = (uint64_t)(e + 0.5);
	return n < LEARN_EXACT_SRCS + 1 ? LEARN_EXACT_SRCS + 1 : n;
}

/* ---- runs per tier ---- */

/* Insert h into the tier's run set; true when it was not there. */
static int runs_insert(struct learn_tier *t, uint64_t h)
{
	if (h == 0)
		h = 1;
	if (t->run_n * 2 >= t->run_cap) {
		size_t cap = t->run_cap ? t->run_cap * 2 : 1024;
		uint64_t *v = calloc(cap, sizeof(*v));
		if (v == NULL)
			return -1;
		for (size_t i = 0; i < t->run_cap; i++) {
			if (t->run_set[i] == 0)
				continue;
			size_t j = (size_t)hash_mix64(t->run_set[i]) & (cap - 1);
			while (v[j] != 0)
				j = (j + 1) & (cap - 1);
			v[j] = t->run_set[i];
		}
		free(t->run_set);
		t->run_set = v;
		t->run_cap = cap;
	}
	size_t j = (size_t)hash_mix64(h) & (t->run_cap - 1);
	for (; t->run_set[j] != 0; j = (j + 1) & (t->run_cap - 1))
		if (t->run_set[j] == h)
			return 0;
	t->run_set[j] = h;
	t->run_n++;
	return 1;
}

/*
 * A run: one CI job.  A pod (orchestrator.namespace/resource.name) is one
 * run; without a pod, one source address within one hour of @timestamp.
 */
static uint64_t run_key(const struct learn_stats *s, const struct audit_rec *r)
{
	char k[sizeof(r->pod_ns) + sizeof(r->pod_name) + sizeof(r->source_ip) + 16];
	size_t n;
	if (r->pod_name[0] != '\0')
		n = (size_t)snprintf(k, sizeof(k), "p:%s/%s", r->pod_ns, r->pod_name);
	else
		n = (size_t)snprintf(k, sizeof(k), "s:%s@%.13s", r->source_ip, r->timestamp);
	return hash_bytes(s->seed, k, n < sizeof(k) ? n : sizeof(k) - 1);
}

static uint64_t source_key(const struct learn_stats *s, const struct audit_rec *r)
{
	char k[sizeof(r->pod_ns) + sizeof(r->pod_name) + 8];
	size_t n;
	if (r->pod_name[0] != '\0')
		n = (size_t)snprintf(k, sizeof(k), "p:%s/%s", r->pod_ns, r->pod_name);
	else
		n = (size_t)snprintf(k, sizeof(k), "s:%s", r->source_ip);
	return hash_bytes(s->seed ^ 1, k, n < sizeof(k) ? n : sizeof(k) - 1);
}

/* ---- destinations ---- */

static size_t slot_of(const struct learn_stats *s, const char *host, uint16_t port, uint16_t tier)
{
	uint64_t h = hash_bytes(s->seed, host, strlen(host)) ^ ((uint64_t)port << 16 | tier);
	return (size_t)hash_mix64(h) & (s->cap - 1);
}

static int grow(struct learn_stats *s)
{
	size_t old = s->cap;
	struct learn_dest **ot = s->tab;
	s->cap *= 2;
	s->tab = calloc(s->cap, sizeof(*s->tab));
	if (s->tab == NULL) {
		s->tab = ot;
		s->cap = old;
		return -1;
	}
	for (size_t i = 0; i < old; i++) {
		if (ot[i] == NULL)
			continue;
		size_t j = slot_of(s, ot[i]->host, ot[i]->port, ot[i]->tier);
		while (s->tab[j] != NULL)
			j = (j + 1) & (s->cap - 1);
		s->tab[j] = ot[i];
	}
	free(ot);
	return 0;
}

/* The destination's entry, created when new (*fresh then true); NULL when out of memory. */
static struct learn_dest *dest_get(struct learn_stats *s, const char *host, uint16_t port,
                                   uint16_t tier, bool *fresh)
{
	*fresh = false;
	if (s->n * 2 >= s->cap && grow(s) != 0)
		return NULL;
	size_t j = slot_of(s, host, port, tier);
	for (; s->tab[j] != NULL; j = (j + 1) & (s->cap - 1)) {
		struct learn_dest *d = s->tab[j];
		if (d->port == port && d->tier == tier && strcmp(d->host, host) == 0)
			return d;
	}
	struct learn_dest *d = calloc(1, sizeof(*d));
	if (d == NULL || (d->host = strdup(host)) == NULL) {
		free(d);
		return NULL;
	}
	d->port = port;
	d->tier = tier;
	s->tab[j] = d;
	s->n++;
	*fresh = true;
	return d;
}

static int tier_get(struct learn_stats *s, const char *name)
{
	for (size_t i = 0; i < s->n_tiers; i++)
		if (strcmp(s->tiers[i].name, name) == 0)
			return (int)i;
	if (s->n_tiers == LEARN_MAX_TIERS)
		return -1;
	struct learn_tier *t = &s->tiers[s->n_tiers];
	snprintf(t->name, sizeof(t->name), "%s", name);
	return (int)s->n_tiers++;
}

static void span(char *first, char *last, const char *ts)
{
	if (ts[0] == '\0')
		return;
	if (first[0] == '\0' || strcmp(ts, first) < 0)
		snprintf(first, 40, "%s", ts);
	if (strcmp(ts, last) > 0)
		snprintf(last, 40, "%s", ts);
}

static bool is(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

/*
 * A line break to YAML 1.1 (libyaml): a control byte, NEL (U+0085), U+2028,
 * U+2029.  learn prints tiers and domains into YAML comments and keys, where
 * one would start a line of the record's choosing.
 */
static bool breaks_line(const char *t)
{
	for (const unsigned char *p = (const unsigned char *)t; *p; p++)
		if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] == 0x85) ||
		    (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)))
			return true;
	return false;
}

int learn_stats_add(struct learn_stats *s, const struct audit_rec *r)
{
	if (r->tier[0] == '\0' || r->domain[0] == '\0' || r->port == 0 || breaks_line(r->tier) ||
	    breaks_line(r->domain)) {
		s->skipped++;
		return 0;
	}
	int ti = tier_get(s, r->tier);
	if (ti < 0) {
		s->skipped++;
		return 0;
	}
	struct learn_tier *t = &s->tiers[ti];
	bool fresh;
	int nr = runs_insert(t, run_key(s, r));
	if (nr < 0)
		return -1;
	t->runs += (uint64_t)nr;
	t->runs_since_new += (uint64_t)nr;
	struct learn_dest *d = dest_get(s, r->domain, r->port, (uint16_t)ti, &fresh);
	if (d == NULL)
		return -1;
	if (fresh) {
		t->dests++;
		t->runs_since_new = 0; /* this run brought something new */
		snprintf(t->last_new, sizeof(t->last_new), "%s", r->timestamp);
	}
	t->records++;
	s->used++;
	span(s->first, s->last, r->timestamp);
	span(d->first, d->last, r->timestamp);
	srcs_add(&d->srcs, source_key(s, r));
	if (r->allowed) {
		d->count++;
		if (is(r->would_deny, "host_not_allowed") || is(r->would_deny, "port_not_allowed"))
			d->would_deny++;
	} else if (r->denied) {
		if (is(r->reason, "blocked_address") || is(r->reason, "resolved_to_blocked_range"))
			d->blocked++;
		else if (is(r->reason, "host_not_allowed") || is(r->reason, "port_not_allowed"))
			d->refused++;
	}
	return 0;
}
