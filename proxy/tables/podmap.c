/* The pod map: uid -> pod record, IP -> claimants and their owner, behind one rwlock. */
#include "podmap.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

/*
 * How it works.  Two chained hash tables: pods by uid, addresses by IP.  A
 * pod record holds up to KUBE_MAX_POD_IPS claims, each a node in its
 * address's claimant list; the address entry points at its owning claim,
 * re-elected whenever one of its claims comes, goes or changes.  Readers
 * touch only the address table, the owner and the owner's published
 * pod_info, all under the read lock; the writer reads freely (it is the only
 * mutator), allocates before taking the write lock, and mutates under it.
 *
 * Costs: apply, remove and lookup are O(1) on average plus O(claimants of the
 * pod's addresses), which is 1 unless addresses are reused; podmap_sweep is
 * O(pods).  Tables double when their load passes 1 (amortised, under the
 * write lock; a failed grow only makes chains longer) and never shrink.
 *
 * The tie-break "most recently applied" is per claim: a claim's sequence
 * number is taken when the pod first claims that address and kept while it
 * goes on claiming it, so an old pod's late MODIFIED never steals an address
 * back.  A pod the map cannot hold (PODMAP_FULL, PODMAP_NOMEM) marks the
 * addresses it claims as refused: lookups there answer NULL (unknown source,
 * fail closed) instead of naming an older claimant, until a new claim on the
 * address is recorded or its last claimant leaves.
 */

struct hlink {
	struct hlink *next;
	uint64_t hash;
};

struct htab {
	struct hlink **b;
	size_t mask; /* buckets - 1 */
	size_t n;
};

struct pod_rec;
struct ip_entry;

/* One pod's claim on one address: a node in the address's claimant list. */
struct claim {
	struct pod_rec *pod;
	struct ip_entry *ent; /* NULL: the slot is free */
	struct claim *next;   /* in ent's claimant list */
	uint64_t seq;         /* when the pod first claimed the address */
};

struct ip_entry {
	struct hlink link; /* first: the table links ip_entry through it */
	struct pc_addr addr;
	struct claim *claims;
	struct claim *owner; /* the best of claims */
	bool refused;        /* claimed by a pod the map could not hold */
};

/* A creation timestamp as a comparable value; the oldest when absent or malformed. */
struct stamp {
	int64_t sec;
	int32_t nsec;
};

struct pod_rec {
	struct hlink link;     /* first */
	struct pod_info *info; /* published; the map holds one reference */
	uint64_t gen;
	struct stamp created;
	bool terminating;
	struct claim claims[KUBE_MAX_POD_IPS];
};

struct podmap {
	pthread_rwlock_t lock;
	size_t max_pods;
	size_t n_pods; /* read by any thread (atomic) */
	uint64_t seq;
	uint64_t seed;
	struct htab pods;
	struct htab ips;
};

/* ---- pod_info ------------------------------------------------------------- */

const char *pod_info_label(const struct pod_info *p, const char *key)
{
	if (p == NULL || key == NULL || p->labels_overflow)
		return NULL;
	for (size_t i = 0; i < p->n_labels; i++)
		if (strcmp(p->labels[i].key, key) == 0)
			return p->labels[i].value;
	return NULL;
}

struct pod_info *pod_info_ref(struct pod_info *p)
{
	if (p != NULL)
		__atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
	return p;
}

void pod_info_unref(struct pod_info *p)
{
	if (p != NULL && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(p);
}

/* Copy a NUL-terminated field of a fixed-size array (forced NUL at the end). */
static void copy_field(char *dst, const char *src, size_t cap)
{
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* One allocation: the struct, the label array, then the label strings. */
static struct pod_info *info_new(const struct kube_pod *pod, const struct pc_addr *ips, size_t n)
{
	size_t nl = pod->labels_overflow ? 0 : pod->n_labels;
	size_t bytes = 0;

	if (nl > KUBE_MAX_LABELS)
		nl = KUBE_MAX_LABELS;
	for (size_t i = 0; i < nl; i++)
		bytes += strlen(pod->labels[i].key) + strlen(pod->labels[i].value) + 2;
	struct pod_info *p = malloc(sizeof(*p) + nl * sizeof(p->labels[0]) + bytes);
	if (p == NULL)
		return NULL;
	memset(p, 0, sizeof(*p));
	p->refs = 1;
	copy_field(p->uid, pod->uid, sizeof(p->uid));
	copy_field(p->ns, pod->ns, sizeof(p->ns));
	copy_field(p->name, pod->name, sizeof(p->name));
	copy_field(p->created, pod->created, sizeof(p->created));
	p->terminating = pod->terminating;
	memcpy(p->ips, ips, n * sizeof(ips[0]));
	p->n_ips = n;
	p->labels_overflow = pod->labels_overflow;
	p->n_labels = nl;
	char *s = (char *)(p->labels + nl);
	for (size_t i = 0; i < nl; i++) {
		size_t k = strlen(pod->labels[i].key) + 1, v = strlen(pod->labels[i].value) + 1;
		memcpy(s, pod->labels[i].key, k);
		p->labels[i].key = s;
		memcpy(s + k, pod->labels[i].value, v);
		p->labels[i].value = s + k;
		s += k + v;
	}
	return p;
}

/* ---- creation timestamps (RFC 3339 §5.6) ----------------------------------- */

static bool digits(const char *s, size_t n, int *out)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* date-time = full-date "T" full-time; time-secfrac up to nanoseconds, more digits ignored. */
static struct stamp parse_stamp(const char *s)
{
	static const struct stamp oldest = {INT64_MIN, 0};
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, sec, oh = 0, om = 0;
	size_t n = strnlen(s, KUBE_TIME_MAX);
	int32_t nsec = 0;

	if (n < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
	    !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !digits(s + 17, 2, &sec))
		return oldest;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
		return oldest;
	size_t i = 19;
	if (s[i] == '.') {
		size_t k = 0;
		for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, k++)
			if (k < 9)
				nsec = nsec * 10 + (s[i] - '0');
		if (k == 0)
			return oldest;
		for (; k < 9; k++)
			nsec *= 10;
	}
	int sign = 0;
	if (i + 1 == n && (s[i] == 'Z' || s[i] == 'z'))
		sign = 0;
	else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && digits(s + i + 1, 2, &oh) &&
	         s[i + 3] == ':' && digits(s + i + 4, 2, &om) && oh <= 23 && om <= 59)
		sign = s[i] == '+' ? 1 : -1;
	else
		return oldest;
	int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
	return (struct stamp){t - sign * (oh * 3600 + om * 60), nsec};
}

static int stamp_cmp(const struct stamp *a, const struct stamp *b)
{
	if (a->sec != b->sec)
		return a->sec < b->sec ? -1 : 1;
	return a->nsec < b->nsec ? -1 : a->nsec > b->nsec;
}

/* ---- hashing and tables ---------------------------------------------------- */

static uint64_t hash_ip(const struct podmap *m, const struct pc_addr *a)
{
	return hash_bytes(m->seed + a->family, a->b, a->family == ADDR_V4 ? 4 : 16);
}

static uint64_t hash_uid(const struct podmap *m, const char *uid)
{
	return hash_bytes(m->seed, uid, strnlen(uid, KUBE_UID_MAX));
}

static bool htab_init(struct htab *t, size_t buckets)
{
	t->b = calloc(buckets, sizeof(t->b[0]));
	t->mask = buckets - 1;
	t->n = 0;
	return t->b != NULL;
}

static struct hlink *htab_chain(const struct htab *t, uint64_t hash)
{
	return t->b[hash & t->mask];
}

static void htab_grow(struct htab *t)
{
	size_t nb = (t->mask + 1) * 2;
	struct hlink **b = calloc(nb, sizeof(b[0]));
	if (b == NULL)
		return;
	for (size_t i = 0; i <= t->mask; i++) {
		struct hlink *l = t->b[i], *next;
		for (; l != NULL; l = next) {
			next = l->next;
			l->next = b[l->hash & (nb - 1)];
			b[l->hash & (nb - 1)] = l;
		}
	}
	free(t->b);
	t->b = b;
	t->mask = nb - 1;
}

static void htab_insert(struct htab *t, struct hlink *l)
{
	if (t->n > t->mask && t->mask < SIZE_MAX / 4)
		htab_grow(t);
	l->next = t->b[l->hash & t->mask];
	t->b[l->hash & t->mask] = l;
	t->n++;
}

static void htab_unlink(struct htab *t, struct hlink *l)
{
	struct hlink **pp = &t->b[l->hash & t->mask];
	while (*pp != l)
		pp = &(*pp)->next;
	*pp = l->next;
	t->n--;
}

static struct pod_rec *find_pod(const struct podmap *m, const char *uid, uint64_t h)
{
	for (struct hlink *l = htab_chain(&m->pods, h); l != NULL; l = l->next) {
		struct pod_rec *r = (struct pod_rec *)l;
		if (l->hash == h && strncmp(r->info->uid, uid, KUBE_UID_MAX) == 0)
			return r;
	}
	return NULL;
}

static struct ip_entry *find_ip(const struct podmap *m, const struct pc_addr *a, uint64_t h)
{
	for (struct hlink *l = htab_chain(&m->ips, h); l != NULL; l = l->next) {
		struct ip_entry *e = (struct ip_entry *)l;
		if (l->hash == h && addr_equal(&e->addr, a))
			return e;
	}
	return NULL;
}

/* ---- claims and owners ----------------------------------------------------- */

/* a beats b for an address: not terminating, then created later, then claimed later. */
static bool claim_beats(const struct claim *a, const struct claim *b)
{
	if (a->pod->terminating != b->pod->terminating)
		return !a->pod->terminating;
	int c = stamp_cmp(&a->pod->created, &b->pod->created);
	if (c != 0)
		return c > 0;
	return a->seq > b->seq;
}

static void claim_link(struct podmap *m, struct claim *c, struct pod_rec *r, struct ip_entry *e)
{
	c->pod = r;
	c->ent = e;
	c->seq = ++m->seq;
	c->next = e->claims;
	e->claims = c;
	e->refused = false;
}

static void claim_unlink(struct claim *c)
{
	struct claim **pp = &c->ent->claims;
	while (*pp != c)
		pp = &(*pp)->next;
	*pp = c->next;
	memset(c, 0, sizeof(*c));
}

/* Re-elect e's owner; free e when no claim is left.  Under the write lock. */
static void elect(struct podmap *m, struct ip_entry *e)
{
	e->owner = NULL;
	for (struct claim *c = e->claims; c != NULL; c = c->next)
		if (e->owner == NULL || claim_beats(c, e->owner))
			e->owner = c;
	if (e->claims == NULL) {
		htab_unlink(&m->ips, &e->link);
		free(e);
	}
}

/* Unlink r from both tables and re-elect its addresses.  Under the write lock. */
static void rec_drop(struct podmap *m, struct pod_rec *r)
{
	for (size_t i = 0; i < KUBE_MAX_POD_IPS; i++) {
		struct ip_entry *e = r->claims[i].ent;
		if (e == NULL)
			continue;
		claim_unlink(&r->claims[i]);
		elect(m, e);
	}
	htab_unlink(&m->pods, &r->link);
	__atomic_store_n(&m->n_pods, m->pods.n, __ATOMIC_RELAXED);
}

/* ::ffff:a.b.c.d is a.b.c.d (RFC 4291 §2.5.5.2); unused bytes zeroed. */
static bool norm_addr(const struct pc_addr *in, struct pc_addr *out)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	memset(out, 0, sizeof(*out));
	if (in->family == ADDR_V6 && memcmp(in->b, mapped, 12) != 0) {
		*out = *in;
		return true;
	}
	if (in->family != ADDR_V4 && in->family != ADDR_V6)
		return false;
	out->family = ADDR_V4;
	memcpy(out->b, in->family == ADDR_V4 ? in->b : in->b + 12, 4);
	return true;
}

/* The pod's addresses, normalised and deduplicated. */
static size_t pod_addrs(const struct kube_pod *pod, struct pc_addr *out)
{
	size_t n = 0;
	for (size_t i = 0; i < pod->n_ips && i < KUBE_MAX_POD_IPS; i++) {
		struct pc_addr a;
		bool dup = false;
		if (!norm_addr(&pod->ips[i], &a))
			continue;
		for (size_t j = 0; j < n && !dup; j++)
			dup = addr_equal(&out[j], &a);
		if (!dup)
			out[n++] = a;
	}
	return n;
}

/* ---- the map --------------------------------------------------------------- */

struct podmap *podmap_new(size_t max_pods)
{
	struct podmap *m = calloc(1, sizeof(*m));
	pthread_rwlockattr_t attr;

	if (m == NULL)
		return NULL;
	m->max_pods = max_pods != 0 ? max_pods : 65536;
	m->seed = (uint64_t)(uintptr_t)m * 0x9e3779b97f4a7c15ULL;
	if (!htab_init(&m->pods, 64) || !htab_init(&m->ips, 64))
		goto fail;
	if (pthread_rwlockattr_init(&attr) != 0)
		goto fail;
	/* Readers hold the lock for one lookup; the one writer must not starve behind them. */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	int rc = pthread_rwlock_init(&m->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (rc != 0)
		goto fail;
	return m;
fail:
	free(m->pods.b);
	free(m->ips.b);
	free(m);
	return NULL;
}

void podmap_free(struct podmap *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i <= m->pods.mask; i++) {
		struct hlink *l = m->pods.b[i], *next;
		for (; l != NULL; l = next) {
			next = l->next;
			pod_info_unref(((struct pod_rec *)l)->info);
			free(l);
		}
	}
	for (size_t i = 0; i <= m->ips.mask; i++) {
		struct hlink *l = m->ips.b[i], *next;
		for (; l != NULL; l = next) {
			next = l->next;
			free(l);
		}
	}
	free(m->pods.b);
	free(m->ips.b);
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

size_t podmap_count(struct podmap *m)
{
	return __atomic_load_n(&m->n_pods, __ATOMIC_RELAXED);
}

/* Fail closed on the addresses of a pod the map could not take. */
static void refuse(struct podmap *m, const struct pc_addr *ips, size_t n)
{
	pthread_rwlock_wrlock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		struct ip_entry *e = find_ip(m, &ips[i], hash_ip(m, &ips[i]));
		if (e != NULL)
			e->refused = true;
	}
	pthread_rwlock_unlock(&m->lock);
}

static bool eligible(const struct kube_pod *pod, size_t n_ips)
{
	return !pod->host_network && pod->phase != KUBE_PHASE_SUCCEEDED &&
	       pod->phase != KUBE_PHASE_FAILED && n_ips > 0;
}

static struct claim *claim_on(struct pod_rec *r, const struct pc_addr *a)
{
	for (size_t i = 0; i < KUBE_MAX_POD_IPS; i++)
		if (r->claims[i].ent != NULL && addr_equal(&r->claims[i].ent->addr, a))
			return &r->claims[i];
	return NULL;
}

/* r now claims exactly ips (fresh[i]: a new entry for ips[i], or NULL).  Under the write lock. */
static void reclaim(struct podmap *m, struct pod_rec *r, const struct pc_addr *ips, size_t n,
                    struct ip_entry **fresh)
{
	struct ip_entry *touched[2 * KUBE_MAX_POD_IPS];
	size_t nt = 0;

	for (size_t i = 0; i < KUBE_MAX_POD_IPS; i++) {
		struct ip_entry *e = r->claims[i].ent;
		bool keep = false;
		for (size_t j = 0; e != NULL && j < n && !keep; j++)
			keep = addr_equal(&e->addr, &ips[j]);
		if (e != NULL && !keep) {
			claim_unlink(&r->claims[i]);
			touched[nt++] = e;
		}
	}
	for (size_t j = 0; j < n; j++) {
		struct claim *c = claim_on(r, &ips[j]);
		if (c != NULL) {
			touched[nt++] = c->ent;
			continue;
		}
		struct ip_entry *e = fresh[j];
		if (e != NULL) {
			htab_insert(&m->ips, &e->link);
			fresh[j] = NULL;
		} else {
			e = find_ip(m, &ips[j], hash_ip(m, &ips[j]));
		}
		for (c = r->claims; c->ent != NULL; c++)
			;
		claim_link(m, c, r, e);
		touched[nt++] = e;
	}
	/* Each entry once: an address is either dropped or (kept or added), never both. */
	for (size_t i = 0; i < nt; i++)
		elect(m, touched[i]);
}

int podmap_apply(struct podmap *m, const struct kube_pod *pod, uint64_t gen)
{
	struct pc_addr ips[KUBE_MAX_POD_IPS];
	struct ip_entry *fresh[KUBE_MAX_POD_IPS] = {NULL};
	size_t n = pod_addrs(pod, ips);
	bool nomem = false;

	if (pod->uid[0] == '\0' || !eligible(pod, n)) {
		podmap_remove(m, pod->uid);
		return PODMAP_REMOVED;
	}
	uint64_t h = hash_uid(m, pod->uid);
	struct pod_rec *r = find_pod(m, pod->uid, h), *fresh_rec = NULL;
	if (r == NULL && m->pods.n >= m->max_pods) {
		refuse(m, ips, n);
		return PODMAP_FULL;
	}
	struct pod_info *info = info_new(pod, ips, n);
	nomem = info == NULL;
	if (r == NULL && !nomem) {
		fresh_rec = calloc(1, sizeof(*fresh_rec));
		nomem = fresh_rec == NULL;
	}
	for (size_t i = 0; i < n && !nomem; i++) {
		uint64_t hi = hash_ip(m, &ips[i]);
		if (find_ip(m, &ips[i], hi) != NULL)
			continue;
		fresh[i] = calloc(1, sizeof(*fresh[i]));
		nomem = fresh[i] == NULL;
		if (!nomem) {
			fresh[i]->link.hash = hi;
			fresh[i]->addr = ips[i];
		}
	}
	if (nomem) {
		/* Fail closed: no stale identity for this pod, none for its addresses. */
		free(info);
		free(fresh_rec);
		for (size_t i = 0; i < n; i++)
			free(fresh[i]);
		podmap_remove(m, pod->uid);
		refuse(m, ips, n);
		return PODMAP_NOMEM;
	}

	pthread_rwlock_wrlock(&m->lock);
	if (r == NULL) {
		r = fresh_rec;
		r->link.hash = h;
		htab_insert(&m->pods, &r->link);
		__atomic_store_n(&m->n_pods, m->pods.n, __ATOMIC_RELAXED);
	}
	struct pod_info *old = r->info;
	r->info = info;
	r->gen = gen;
	r->terminating = pod->terminating;
	r->created = parse_stamp(info->created);
	reclaim(m, r, ips, n, fresh);
	pthread_rwlock_unlock(&m->lock);
	pod_info_unref(old);
	return PODMAP_MAPPED;
}

void podmap_remove(struct podmap *m, const char *uid)
{
	struct pod_rec *r = find_pod(m, uid, hash_uid(m, uid));
	if (r == NULL)
		return;
	pthread_rwlock_wrlock(&m->lock);
	rec_drop(m, r);
	pthread_rwlock_unlock(&m->lock);
	pod_info_unref(r->info);
	free(r);
}

size_t podmap_sweep(struct podmap *m, const char *ns, uint64_t gen)
{
	size_t removed = 0;

	pthread_rwlock_wrlock(&m->lock);
	for (size_t i = 0; i <= m->pods.mask; i++) {
		struct hlink *l = m->pods.b[i], *next;
		for (; l != NULL; l = next) {
			struct pod_rec *r = (struct pod_rec *)l;
			next = l->next;
			if (r->gen >= gen || (ns != NULL && strcmp(r->info->ns, ns) != 0))
				continue;
			rec_drop(m, r);
			pod_info_unref(r->info);
			free(r);
			removed++;
		}
	}
	pthread_rwlock_unlock(&m->lock);
	return removed;
}

struct pod_info *podmap_lookup(struct podmap *m, const struct pc_addr *ip)
{
	struct pc_addr a;
	struct pod_info *p = NULL;

	if (ip == NULL || !norm_addr(ip, &a))
		return NULL;
	uint64_t h = hash_ip(m, &a);
	pthread_rwlock_rdlock(&m->lock);
	struct ip_entry *e = find_ip(m, &a, h);
	if (e != NULL && !e->refused && e->owner != NULL)
		p = pod_info_ref(e->owner->pod->info);
	pthread_rwlock_unlock(&m->lock);
	return p;
}
