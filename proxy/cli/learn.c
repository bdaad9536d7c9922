/* portcullis learn: read audit records, suggest rules per tier as a fragment or a diff. */
#include "learn.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "audit_rec.h"
#include "fileio.h"
#include "hash.h"
#include "learn_stats.h"
#include "policy.h"
#include "policyfile.h"
#include "warn.h"

enum { LX_OK = 0, LX_INPUT = 1, LX_USAGE = 2 };

struct opts {
	const char *policy, *tier, *since;
	uint64_t min_count;
	unsigned wildcard_threshold;
	uint64_t stable_runs;
	bool diff;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: portcullis learn -c POLICY [--tier NAME] [--since TIMESTAMP] "
	           "[--min-count N]\n"
	           "                        [--wildcard-threshold N] [--stable-runs N] [--diff] "
	           "[FILE...]\n"
	           "  FILE: audit logs (ECS JSON lines), gzip or plain; none or - = standard input\n"
	           "  prints a policy fragment, or with --diff a unified diff against POLICY\n"
	           "exit: 0 done, 1 an input or a tier's diff failed, 2 usage or invalid policy\n");
}

/* ---- reading ---- */

struct reader_stats {
	uint64_t lines, bad;
};

/* Stream one input (gzip or plain: zlib reads both) line by line into the stats. */
static int read_input(const char *name, const struct opts *o, struct learn_stats *st,
                      struct reader_stats *rs)
{
	gzFile z = strcmp(name, "-") == 0 ? gzdopen(dup(STDIN_FILENO), "rb") : gzopen(name, "rb");
	if (z == NULL) {
		fprintf(stderr, "learn: %s: %s\n", name, strerror(errno ? errno : ENOMEM));
		return LX_INPUT;
	}
	gzbuffer(z, 1 << 17);
	size_t cap = AUDIT_REC_MAX_LINE + 2, len = 0;
	char *line = malloc(cap), err[200];
	bool skipping = false; /* inside a line longer than the limit */
	int rc = LX_OK, c;
	if (line == NULL) {
		gzclose(z);
		return LX_INPUT;
	}
	for (;;) {
		char buf[1 << 16];
		int n = gzread(z, buf, sizeof(buf));
		if (n < 0) {
			int zerr;
			fprintf(stderr, "learn: %s: %s\n", name, gzerror(z, &zerr));
			rc = LX_INPUT;
			break;
		}
		for (int i = 0; i <= n; i++) {
			bool eol = i < n ? buf[i] == '\n' : (n == 0 && len > 0);
			if (i == n && !eol)
				break;
			if (!eol) {
				if (len + 1 < cap)
					line[len++] = buf[i];
				else
					skipping = true;
				continue;
			}
			rs->lines++;
			struct audit_rec r;
			if (skipping || audit_rec_parse(line, len, &r, err, sizeof(err)) != 0) {
				if (rs->bad++ < 5)
					fprintf(stderr, "learn: %s: line %llu: %s\n", name,
					        (unsigned long long)rs->lines,
					        skipping ? "longer than the limit" : err);
			} else if ((o->since == NULL || strcmp(r.timestamp, o->since) >= 0) &&
			           (o->tier == NULL || strcmp(r.tier, o->tier) == 0)) {
				if (learn_stats_add(st, &r) != 0) {
					fprintf(stderr, "learn: out of memory\n");
					rc = LX_INPUT;
					goto out;
				}
			} else {
				st->skipped++;
			}
			len = 0;
			skipping = false;
		}
		if (n == 0)
			break;
	}
out:
	c = gzclose(z);
	if (c != Z_OK && rc == LX_OK) {
		fprintf(stderr, "learn: %s: read error\n", name);
		rc = LX_INPUT;
	}
	free(line);
	return rc;
}

/* ---- suggestions ---- */

enum verdict_kind {
	V_SUGGEST,   /* reached, not allowed by the current policy: add it */
	V_ALLOWED,   /* reached and already allowed */
	V_FEW,       /* under --min-count */
	V_BLOCKED,   /* records show a blocked range: never */
	V_LITERAL,   /* an IP address: never */
	V_PORT,      /* not a TLS port of the tier: never */
	V_REFUSED,   /* only refusals (enforce): not learned */
	V_NO_TIER,   /* the tier is not in the policy */
};

struct cand {
	const struct learn_dest *d;
	enum verdict_kind v;
	int wild;        /* index into wildcards, or -1 */
	bool covered;    /* under a chosen wildcard of the same port */
};

struct wildcard {
	char suffix[HOST_NAME_MAX_LEN + 1];
	uint16_t port;
	size_t names;
	bool suggest; /* some member is V_SUGGEST */
	bool covered; /* under a wider chosen wildcard */
	uint64_t count, would_deny;
	char first[40], last[40];
};

static bool tls_port(const struct policy_tier *t, uint16_t port)
{
	for (size_t i = 0; i < t->n_tls_ports; i++)
		if (t->tls_ports[i] == port)
			return true;
	return false;
}

static enum verdict_kind judge(const struct policy *p, int pt, const struct learn_dest *d,
                               const struct opts *o)
{
	struct pc_host h;
	if (pt < 0)
		return V_NO_TIER;
	if (d->blocked > 0)
		return V_BLOCKED;
	if (host_canon(d->host, strlen(d->host), &h) != HOST_OK || h.kind != HOST_NAME)
		return V_LITERAL;
	if (!tls_port(policy_tier(p, (size_t)pt), d->port))
		return V_PORT;
	if (d->count == 0)
		return V_REFUSED;
	if (d->count < o->min_count)
		return V_FEW;
	struct verdict v;
	policy_decide_host(p, pt, &h, d->port, &v); /* the daemon's decision */
	return v.allow && !v.would_deny ? V_ALLOWED : V_SUGGEST;
}

static int cand_cmp(const void *x, const void *y)
{
	const struct cand *a = x, *b = y;
	int c = strcmp(a->d->host, b->d->host);
	return c != 0 ? c : (int)a->d->port - (int)b->d->port;
}

/* The parent a wildcard would name: host without its first label; NULL when not allowed. */
static const char *parent_of(const char *host)
{
	const char *dot = strchr(host, '.');
	if (dot == NULL || strchr(dot + 1, '.') == NULL)
		return NULL; /* "*.com" is not a pattern */
	return policy_is_public_suffix(dot + 1) ? NULL : dot + 1;
}

/* A set of (port, suffix) hashes: chosen wildcards, for covering tests. */
struct hset {
	uint64_t *v;
	size_t cap;
};

static uint64_t wkey(uint16_t port, const char *suffix)
{
	return hash_bytes(0x77696c64ull ^ port, suffix, strlen(suffix)) | 1;
}

static bool hset_has(const struct hset *s, uint64_t k)
{
	for (size_t j = (size_t)hash_mix64(k) & (s->cap - 1); s->v[j] != 0; j = (j + 1) & (s->cap - 1))
		if (s->v[j] == k)
			return true;
	return false;
}

static void hset_put(struct hset *s, uint64_t k)
{
	size_t j = (size_t)hash_mix64(k) & (s->cap - 1);
	while (s->v[j] != 0 && s->v[j] != k)
		j = (j + 1) & (s->cap - 1);
	s->v[j] = k;
}

/* Is some proper suffix of name (from its second label) a chosen wildcard on port? */
static bool under_wildcard(const struct hset *s, const char *name, uint16_t port)
{
	for (const char *d = strchr(name, '.'); d != NULL; d = strchr(d + 1, '.'))
		if (hset_has(s, wkey(port, d + 1)))
			return true;
	return false;
}

static int wild_cmp(const void *x, const void *y)
{
	const struct wildcard *a = x, *b = y;
	int c = strcmp(a->suffix, b->suffix);
	return c != 0 ? c : (int)a->port - (int)b->port;
}

/*
 * Wildcards: names (suggested or allowed) grouped by (parent, port); a group
 * of at least `threshold` distinct names under a parent below the public
 * suffix becomes *.parent.  Returns how many were chosen (in *out).
 */
static size_t choose_wildcards(struct cand *c, size_t n, unsigned threshold,
                               struct wildcard **out, struct hset *chosen)
{
	struct wildcard *w = calloc(n ? n : 1, sizeof(*w));
	size_t nw = 0;
	*out = w;
	if (w == NULL || threshold == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const char *par = (c[i].v == V_SUGGEST || c[i].v == V_ALLOWED) ? parent_of(c[i].d->host)
		                                                               : NULL;
		if (par == NULL)
			continue;
		snprintf(w[nw].suffix, sizeof(w[nw].suffix), "%s", par);
		w[nw++].port = c[i].d->port;
	}
	qsort(w, nw, sizeof(*w), wild_cmp);
	size_t k = 0;
	for (size_t i = 0; i < nw;) {
		size_t j = i;
		while (j < nw && wild_cmp(&w[i], &w[j]) == 0)
			j++;
		if (j - i >= threshold) {
			w[k] = w[i];
			w[k++].names = j - i;
		}
		i = j;
	}
	for (size_t i = 0; i < k; i++)
		hset_put(chosen, wkey(w[i].port, w[i].suffix));
	for (size_t i = 0; i < k; i++)
		w[i].covered = under_wildcard(chosen, w[i].suffix, w[i].port);
	return k;
}

static void srcs_text(const struct learn_dest *d, char *buf, size_t cap)
{
	uint64_t n = learn_srcs_count(&d->srcs);
	snprintf(buf, cap, "%s%llu source%s", d->srcs.hll ? "~" : "", (unsigned long long)n,
	         n == 1 ? "" : "s");
}

static const char *why_not(enum verdict_kind v)
{
	switch (v) {
	case V_BLOCKED:
		return "records show a blocked range";
	case V_LITERAL:
		return "an IP address";
	case V_PORT:
		return "not a port of the tier's tls.require_tls_ports";
	case V_REFUSED:
		return "only refusals (enforce mode), never let through";
	case V_FEW:
		return "fewer requests than --min-count";
	default:
		return "";
	}
}

/* The rules of one tier, as YAML lines (with comments) at indentation `item` / `cont`. */
struct rules_out {
	char **lines;
	size_t n, cap;
};

static int out_line(struct rules_out *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int out_line(struct rules_out *r, const char *fmt, ...)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		char **v = realloc(r->lines, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		r->lines = v;
		r->cap = cap;
	}
	va_list ap;
	va_start(ap, fmt);
	int rc = vasprintf(&r->lines[r->n], fmt, ap);
	va_end(ap);
	if (rc < 0)
		return -1;
	r->n++;
	return 0;
}

static void out_free(struct rules_out *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->lines[i]);
	free(r->lines);
	memset(r, 0, sizeof(*r));
}

/*
 * One tier's rules: every reached destination (only_new: only what the policy
 * does not allow yet), wildcards first, then names, each with a comment of
 * its counts; what is never suggested as comments.  ind = the dash's column.
 */
static const char *plural(uint64_t n)
{
	return n == 1 ? "" : "s";
}

static int tier_rules(struct cand *c, size_t n, struct wildcard *w, size_t nw, bool only_new,
                      unsigned ind, struct rules_out *r)
{
	char s[48];
	int rc = 0;
	for (size_t i = 0; i < nw && rc == 0; i++) {
		if (w[i].covered || (only_new && !w[i].suggest))
			continue;
		rc |= out_line(r, "%*s# *.%s:%u: %zu names, %llu request%s (%llu would-deny), %s .. %s",
		               ind, "", w[i].suffix, w[i].port, w[i].names,
		               (unsigned long long)w[i].count, plural(w[i].count),
		               (unsigned long long)w[i].would_deny, w[i].first, w[i].last);
		rc |= out_line(r, "%*s- host: \"*.%s\"", ind, "", w[i].suffix);
		rc |= out_line(r, "%*s  ports: [%u]", ind, "", w[i].port);
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct learn_dest *d = c[i].d;
		bool rule = c[i].v == V_SUGGEST || c[i].v == V_ALLOWED;
		if (c[i].covered || (rule && only_new && c[i].v != V_SUGGEST))
			continue;
		srcs_text(d, s, sizeof(s));
		if (!rule) {
			if (!only_new && c[i].v != V_NO_TIER)
				rc |= out_line(r, "%*s# not suggested: %s:%u (%s; %llu request%s)", ind,
				               "", d->host, d->port, why_not(c[i].v),
				               (unsigned long long)(d->count + d->refused + d->blocked),
				               plural(d->count + d->refused + d->blocked));
			continue;
		}
		rc |= out_line(r, "%*s# %s:%u: %llu request%s (%llu would-deny), %s, %s .. %s", ind, "",
		               d->host, d->port, (unsigned long long)d->count, plural(d->count),
		               (unsigned long long)d->would_deny, s, d->first, d->last);
		rc |= out_line(r, "%*s- host: \"%s\"", ind, "", d->host);
		rc |= out_line(r, "%*s  ports: [%u]", ind, "", d->port);
	}
	return rc;
}

/* ---- one tier's analysis ---- */

struct tier_plan {
	int pt; /* policy tier index, -1 when absent */
	struct cand *c;
	size_t n;
	struct wildcard *w;
	size_t nw;
	size_t n_new; /* rules the diff adds */
	struct hset chosen;
};

static int plan_tier(const struct policy *p, const struct learn_stats *st, size_t ti,
                     const struct opts *o, struct tier_plan *tp)
{
	memset(tp, 0, sizeof(*tp));
	tp->pt = -1;
	for (size_t i = 0; i < policy_tier_count(p); i++)
		if (strcmp(policy_tier(p, i)->name, st->tiers[ti].name) == 0)
			tp->pt = (int)i;
	tp->c = calloc(st->tiers[ti].dests ? st->tiers[ti].dests : 1, sizeof(*tp->c));
	tp->chosen.cap = 16;
	while (tp->chosen.cap < 4 * (st->tiers[ti].dests + 1))
		tp->chosen.cap *= 2;
	tp->chosen.v = calloc(tp->chosen.cap, sizeof(uint64_t));
	if (tp->c == NULL || tp->chosen.v == NULL)
		return -1;
	for (size_t i = 0; i < st->cap; i++) {
		const struct learn_dest *d = st->tab[i];
		if (d == NULL || d->tier != ti)
			continue;
		tp->c[tp->n].d = d;
		tp->c[tp->n].wild = -1;
		tp->c[tp->n++].v = judge(p, tp->pt, d, o);
	}
	qsort(tp->c, tp->n, sizeof(*tp->c), cand_cmp);
	tp->nw = choose_wildcards(tp->c, tp->n, o->wildcard_threshold, &tp->w, &tp->chosen);
	if (tp->w == NULL)
		return -1;
	for (size_t i = 0; i < tp->n; i++) {
		struct cand *c = &tp->c[i];
		if (c->v != V_SUGGEST && c->v != V_ALLOWED)
			continue;
		c->covered = under_wildcard(&tp->chosen, c->d->host, c->d->port);
		if (!c->covered) {
			tp->n_new += c->v == V_SUGGEST;
			continue;
		}
		/* Fold its counts into the widest uncovered wildcard that holds it. */
		for (size_t k = 0; k < tp->nw; k++) {
			struct wildcard *w = &tp->w[k];
			size_t sl = strlen(w->suffix), hl = strlen(c->d->host);
			if (w->covered || w->port != c->d->port || hl <= sl + 1 ||
			    strcmp(c->d->host + hl - sl, w->suffix) != 0 || c->d->host[hl - sl - 1] != '.')
				continue;
			w->suggest |= c->v == V_SUGGEST;
			w->count += c->d->count;
			w->would_deny += c->d->would_deny;
			if (w->first[0] == '\0' || strcmp(c->d->first, w->first) < 0)
				snprintf(w->first, sizeof(w->first), "%s", c->d->first);
			if (strcmp(c->d->last, w->last) > 0)
				snprintf(w->last, sizeof(w->last), "%s", c->d->last);
			break;
		}
	}
	for (size_t k = 0; k < tp->nw; k++)
		tp->n_new += !tp->w[k].covered && tp->w[k].suggest;
	return 0;
}

static void plan_free(struct tier_plan *tp)
{
	free(tp->c);
	free(tp->w);
	free(tp->chosen.v);
}

/* ---- output ---- */

static void stability(const struct learn_stats *st, const struct opts *o, FILE *f, const char *pre)
{
	for (size_t i = 0; i < st->n_tiers; i++) {
		const struct learn_tier *t = &st->tiers[i];
		fprintf(f,
		        "%stier %s: %llu runs since the last new destination (%s), %llu runs, %llu "
		        "destinations: %s\n",
		        pre, t->name, (unsigned long long)t->runs_since_new, t->last_new,
		        (unsigned long long)t->runs, (unsigned long long)t->dests,
		        t->runs_since_new >= o->stable_runs ? "stable" : "not stable yet");
	}
}

static int print_fragment(const struct policy *p, const struct learn_stats *st,
                          const struct opts *o, struct tier_plan *plans)
{
	printf("# portcullis learn: %llu records from %s to %s\n", (unsigned long long)st->used,
	       st->first, st->last);
	printf("# A run is one pod, or one source address within one hour; a tier is stable after "
	       "%llu runs without a new destination.\n",
	       (unsigned long long)o->stable_runs);
	stability(st, o, stdout, "# ");
	printf("tiers:\n");
	for (size_t i = 0; i < st->n_tiers; i++) {
		struct rules_out r = {0};
		if (plans[i].pt < 0) {
			printf("  # %s: not a tier of %s, skipped\n", st->tiers[i].name, o->policy);
			continue;
		}
		if (tier_rules(plans[i].c, plans[i].n, plans[i].w, plans[i].nw, false, 6, &r) != 0) {
			out_free(&r);
			return -1;
		}
		bool any = false;
		for (size_t k = 0; k < r.n && !any; k++)
			any = strstr(r.lines[k], "- host:") != NULL;
		printf("  %s:\n    allow:%s\n", st->tiers[i].name, any ? "" : " []");
		for (size_t k = 0; k < r.n; k++)
			printf("%s\n", r.lines[k]);
		out_free(&r);
	}
	(void)p;
	return 0;
}

/* The policy file as lines (without their newlines). */
struct text {
	char *buf;
	char **line; /* line[1..n] */
	size_t n;
};

static int text_load(const char *path, struct text *t)
{
	size_t len;
	memset(t, 0, sizeof(*t));
	if (file_read_all(path, 1u << 20, &t->buf, &len) != FILEIO_OK)
		return -1;
	size_t n = 1;
	for (size_t i = 0; i < len; i++)
		n += t->buf[i] == '\n';
	t->line = calloc(n + 2, sizeof(*t->line));
	if (t->line == NULL)
		return -1;
	char *s = t->buf;
	for (size_t i = 0; i < len; i++) {
		if (t->buf[i] == '\n') {
			t->buf[i] = '\0';
			t->line[++t->n] = s;
			s = t->buf + i + 1;
		}
	}
	if (s < t->buf + len)
		t->line[++t->n] = s; /* no newline at the end */
	return 0;
}

static unsigned indent_of(const char *s)
{
	unsigned i = 0;
	while (s[i] == ' ')
		i++;
	return i;
}

static bool blank_or_comment(const char *s)
{
	s += indent_of(s);
	return *s == '\0' || *s == '#';
}

/* One edit of the file: after line `after`, delete `del` lines, insert `ins`. */
struct edit {
	size_t after, del;
	struct rules_out ins;
};

/* Where a tier's new rules go and how they are indented; false with a reason when it cannot. */
static bool place_rules(const struct policy *p, int pt, const struct text *t, struct edit *e,
                        unsigned *ind, const char **why)
{
	struct policy_tier_places pl;
	if (!policy_tier_places(p, pt, &pl))
		return false;
	if (pl.allow_line > 0 && pl.allow_line <= t->n) {
		const char *ln = t->line[pl.allow_line];
		if (strlen(ln) >= pl.allow_col && ln[pl.allow_col - 1] == '-' && pl.n_rules > 0) {
			const char *name;
			unsigned rl, rc;
			if (!policy_rule_place(p, pt, pl.n_rules - 1, &name, &rl, &rc))
				return false;
			*ind = pl.allow_col - 1;
			size_t last = rl;
			for (size_t i = rl + 1; i <= t->n; i++) {
				if (blank_or_comment(t->line[i]))
					continue;
				if (indent_of(t->line[i]) < rc - 1)
					break;
				last = i;
			}
			e->after = last;
			return true;
		}
		/* "allow: []": the line becomes "allow:" and the rules follow it. */
		const char *v = ln + pl.allow_col - 1;
		if (strncmp(v, "[]", 2) == 0 && blank_or_comment(v + 2)) {
			unsigned key = indent_of(ln);
			e->after = pl.allow_line - 1;
			e->del = 1;
			*ind = key + 2;
			if (out_line(&e->ins, "%.*s", (int)(v - ln), ln) != 0)
				return false;
			size_t n = strlen(e->ins.lines[0]);
			while (n > 0 && e->ins.lines[0][n - 1] == ' ')
				e->ins.lines[0][--n] = '\0';
			return true;
		}
		*why = "its allow list is written in flow style ([...])";
		return false;
	}
	if (pl.allow_line == 0 && pl.body_line > 0 && pl.body_line <= t->n &&
	    t->line[pl.body_line][pl.body_col - 1] != '{') {
		e->after = pl.key_line;
		*ind = pl.body_col - 1 + 2;
		return out_line(&e->ins, "%*sallow:", (int)pl.body_col - 1, "") == 0;
	}
	if (pl.allow_line == 0 && pl.body_line == 0 && pl.key_line <= t->n) {
		const char *ln = t->line[pl.key_line];
		const char *colon = strchr(ln + pl.key_col - 1, ':');
		if (colon != NULL && blank_or_comment(colon + 1)) {
			e->after = pl.key_line;
			*ind = pl.key_col - 1 + 4;
			return out_line(&e->ins, "%*sallow:", (int)pl.key_col - 1 + 2, "") == 0;
		}
	}
	*why = "its body is written in flow style ({...})";
	return false;
}

static int edit_cmp(const void *x, const void *y)
{
	const struct edit *a = x, *b = y;
	return a->after < b->after ? -1 : (a->after > b->after);
}

/* A unified diff of the edits (sorted, not overlapping) with 3 lines of context. */
static void print_diff(const char *path, const struct text *t, struct edit *e, size_t ne)
{
	const size_t C = 3;
	long delta = 0;
	printf("--- %s\n+++ %s\n", path, path);
	for (size_t g = 0; g < ne;) {
		size_t h = g + 1;
		while (h < ne && e[h].after <= e[h - 1].after + e[h - 1].del + 2 * C)
			h++;
		size_t s = e[g].after + 1 > C ? e[g].after + 1 - C : 1;
		size_t end = e[h - 1].after + e[h - 1].del + C;
		if (end > t->n)
			end = t->n;
		size_t old = end >= s ? end - s + 1 : 0, nw = old;
		for (size_t k = g; k < h; k++)
			nw = nw - e[k].del + e[k].ins.n;
		printf("@@ -%zu,%zu +%ld,%zu @@\n", old ? s : s - 1, old,
		       (long)(nw ? s : s - 1) + delta, nw);
		size_t i = s;
		for (size_t k = g; k < h; k++) {
			for (; i <= e[k].after; i++)
				printf(" %s\n", t->line[i]);
			for (size_t d = 0; d < e[k].del; d++, i++)
				printf("-%s\n", t->line[i]);
			for (size_t d = 0; d < e[k].ins.n; d++)
				printf("+%s\n", e[k].ins.lines[d]);
		}
		for (; i <= end; i++)
			printf(" %s\n", t->line[i]);
		delta += (long)nw - (long)old;
		g = h;
	}
}

static int make_diff(const struct policy *p, const struct learn_stats *st, const struct opts *o,
                     struct tier_plan *plans)
{
	struct text t;
	struct edit *e = calloc(st->n_tiers ? st->n_tiers : 1, sizeof(*e));
	size_t ne = 0;
	int rc = LX_OK;
	if (e == NULL || text_load(o->policy, &t) != 0) {
		fprintf(stderr, "learn: cannot read %s\n", o->policy);
		free(e);
		return LX_INPUT;
	}
	for (size_t i = 0; i < st->n_tiers; i++) {
		struct tier_plan *tp = &plans[i];
		const char *why = "out of memory";
		unsigned ind = 0;
		if (tp->pt < 0 || tp->n_new == 0)
			continue;
		if (!place_rules(p, tp->pt, &t, &e[ne], &ind, &why) ||
		    tier_rules(tp->c, tp->n, tp->w, tp->nw, true, ind, &e[ne].ins) != 0) {
			fprintf(stderr, "learn: tier %s: cannot make a diff: %s; the fragment lists "
			                "its rules\n", st->tiers[i].name, why);
			out_free(&e[ne].ins);
			memset(&e[ne], 0, sizeof(e[ne]));
			rc = LX_INPUT;
			continue;
		}
		ne++;
	}
	qsort(e, ne, sizeof(*e), edit_cmp);
	if (ne > 0)
		print_diff(o->policy, &t, e, ne);
	for (size_t i = 0; i < ne; i++)
		out_free(&e[i].ins);
	free(e);
	free(t.line);
	free(t.buf);
	return rc;
}

/*
 * Peak resident memory of this program (KiB): VmHWM of /proc/self/status,
 * which starts afresh at exec; getrusage's ru_maxrss also counts the parent's
 * memory at fork (a test harness's, say).  The latter when /proc is missing.
 */
static long peak_rss_kib(void)
{
	char line[128];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
			break;
	if (f != NULL)
		fclose(f);
	if (kib < 0) {
		struct rusage ru;
		getrusage(RUSAGE_SELF, &ru);
		kib = ru.ru_maxrss;
	}
	return kib;
}

/* ---- command line ---- */

static bool parse_count(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max)
		return false;
	*out = v;
	return true;
}

int learn_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"tier", required_argument, NULL, 't'},
	    {"since", required_argument, NULL, 's'},
	    {"min-count", required_argument, NULL, 'm'},
	    {"wildcard-threshold", required_argument, NULL, 'w'},
	    {"stable-runs", required_argument, NULL, 'r'},
	    {"diff", no_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct opts o = {.min_count = 1, .wildcard_threshold = 5, .stable_runs = 100};
	uint64_t v;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.policy = optarg;
			break;
		case 't':
			o.tier = optarg;
			break;
		case 's':
			o.since = optarg;
			break;
		case 'm':
			if (!parse_count(optarg, UINT64_MAX, &o.min_count))
				goto bad;
			break;
		case 'w':
			if (!parse_count(optarg, 1000000, &v))
				goto bad;
			o.wildcard_threshold = (unsigned)v;
			break;
		case 'r':
			if (!parse_count(optarg, UINT64_MAX, &o.stable_runs))
				goto bad;
			break;
		case 'd':
			o.diff = true;
			break;
		case 'h':
			usage(stdout);
			return LX_OK;
		default:
			goto bad;
		}
	}
	if (o.policy == NULL)
		goto bad;
	char sha[65];
	struct policy *p = policyfile_load(o.policy, false, sha);
	if (p == NULL)
		return LX_USAGE;
	struct learn_stats *st = malloc(sizeof(*st));
	struct reader_stats rs = {0};
	int rc = LX_OK;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (st == NULL || learn_stats_init(st) != 0) {
		free(st);
		policy_unref(p);
		return LX_INPUT;
	}
	if (optind == argc)
		rc |= read_input("-", &o, st, &rs);
	for (int i = optind; i < argc && rc == LX_OK; i++)
		rc |= read_input(argv[i], &o, st, &rs);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	struct tier_plan *plans = calloc(st->n_tiers ? st->n_tiers : 1, sizeof(*plans));
	for (size_t i = 0; plans != NULL && i < st->n_tiers; i++)
		if (plan_tier(p, st, i, &o, &plans[i]) != 0)
			rc = LX_INPUT;
	if (rc == LX_OK && plans != NULL)
		rc = o.diff ? make_diff(p, st, &o, plans) : (print_fragment(p, st, &o, plans) ? 1 : 0);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	long peak = peak_rss_kib();
	fprintf(stderr,
	        "learn: %llu lines, %llu records used, %llu skipped, %llu unreadable; %zu "
	        "destinations; %.2f s (%.0f records/s), max RSS %ld KiB\n",
	        (unsigned long long)rs.lines, (unsigned long long)st->used,
	        (unsigned long long)st->skipped, (unsigned long long)rs.bad, st->n, secs,
	        secs > 0 ? (double)rs.lines / secs : 0.0, peak);
	stability(st, &o, stderr, "learn: ");
	for (size_t i = 0; plans != NULL && i < st->n_tiers; i++)
		plan_free(&plans[i]);
	free(plans);
	learn_stats_fini(st);
	free(st);
	policy_unref(p);
	return rc;
bad:
	usage(stderr);
	return LX_USAGE;
}
