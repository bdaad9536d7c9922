/* Unit tests for proxy/audit.c: ECS JSON formatting, escaping, and the writer thread. */
#include "audit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "jsonw.h"

/* ---- a tiny strict JSON reader: validates and flattens a record to dotted keys ---- */

struct jfield {
	char path[96];
	char type;       /* 's' string, 'n' integer, 'a' array of strings */
	char val[16384]; /* decoded string; array items joined with '|' */
};

struct jdoc {
	struct jfield f[80]; /* an OCSF record has about 65 leaves */
	size_t n;
};

struct jp {
	const unsigned char *s, *end;
	struct jdoc *d;
};

static int jp_ws(struct jp *p)
{
	while (p->s < p->end && (*p->s == ' ' || *p->s == '\t'))
		p->s++;
	return 0;
}

static void put_utf8(char *out, size_t *o, size_t cap, unsigned cp)
{
	char t[4];
	size_t k;
	if (cp < 0x80) {
		t[0] = (char)cp;
		k = 1;
	} else if (cp < 0x800) {
		t[0] = (char)(0xc0 | cp >> 6);
		t[1] = (char)(0x80 | (cp & 0x3f));
		k = 2;
	} else {
		t[0] = (char)(0xe0 | cp >> 12);
		t[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		t[2] = (char)(0x80 | (cp & 0x3f));
		k = 3;
	}
	for (size_t i = 0; i < k && *o + 1 < cap; i++)
		out[(*o)++] = t[i];
}

/* Length of a valid UTF-8 sequence at s (or 0). */
static size_t t_utf8(const unsigned char *s, const unsigned char *end)
{
	unsigned char c = s[0];
	size_t need;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 1;
	else if (c >= 0xe0 && c <= 0xef) {
		need = 2;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	} else
		return 0;
	if (end - s < (ptrdiff_t)need + 1 || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i <= need; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return need + 1;
}

static int jp_string(struct jp *p, char *out, size_t cap)
{
	size_t o = 0;
	if (p->s >= p->end || *p->s != '"')
		return -1;
	p->s++;
	while (p->s < p->end && *p->s != '"') {
		unsigned char c = *p->s;
		if (c < 0x20)
			return -1; /* raw control byte */
		if (c == '\\') {
			if (p->end - p->s < 2)
				return -1;
			char e = (char)p->s[1];
			p->s += 2;
			const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
			const char *hit = e ? strchr(from, e) : NULL;
			if (hit != NULL) {
				if (o + 1 < cap)
					out[o++] = to[hit - from];
				continue;
			}
			if (e != 'u' || p->end - p->s < 4)
				return -1;
			unsigned cp = 0;
			for (int i = 0; i < 4; i++) {
				char h = (char)p->s[i];
				cp <<= 4;
				if (h >= '0' && h <= '9')
					cp |= (unsigned)(h - '0');
				else if (h >= 'a' && h <= 'f')
					cp |= (unsigned)(h - 'a' + 10);
				else if (h >= 'A' && h <= 'F')
					cp |= (unsigned)(h - 'A' + 10);
				else
					return -1;
			}
			p->s += 4;
			if (cp >= 0xd800 && cp <= 0xdfff)
				return -1; /* the formatter never needs surrogates */
			put_utf8(out, &o, cap, cp);
			continue;
		}
		size_t k = t_utf8(p->s, p->end);
		if (k == 0)
			return -1;
		for (size_t i = 0; i < k; i++)
			if (o + 1 < cap)
				out[o++] = (char)p->s[i];
		p->s += k;
	}
	if (p->s >= p->end)
		return -1;
	p->s++;
	out[o] = '\0';
	return 0;
}

static struct jfield *jp_add(struct jp *p, const char *path, char type)
{
	if (p->d->n >= sizeof(p->d->f) / sizeof(p->d->f[0]))
		return NULL;
	for (size_t i = 0; i < p->d->n; i++)
		if (strcmp(p->d->f[i].path, path) == 0)
			return NULL; /* duplicate key */
	struct jfield *f = &p->d->f[p->d->n++];
	snprintf(f->path, sizeof(f->path), "%s", path);
	f->type = type;
	f->val[0] = '\0';
	return f;
}

static int jp_object(struct jp *p, const char *prefix);

static int jp_value(struct jp *p, const char *path)
{
	jp_ws(p);
	if (p->s >= p->end)
		return -1;
	if (*p->s == '{')
		return jp_object(p, path);
	if (*p->s == '"') {
		struct jfield *f = jp_add(p, path, 's');
		return f ? jp_string(p, f->val, sizeof(f->val)) : -1;
	}
	if (*p->s == '[') {
		struct jfield *f = jp_add(p, path, 'a');
		char item[1024];
		if (f == NULL)
			return -1;
		p->s++;
		jp_ws(p);
		if (p->s < p->end && *p->s == ']') {
			p->s++;
			return 0;
		}
		for (unsigned idx = 0;; idx++) {
			jp_ws(p);
			if (p->s < p->end && *p->s == '{') {
				/* An array of objects (OCSF): its members as path[i].key. */
				char sub[256];
				snprintf(sub, sizeof(sub), "%s[%u]", path, idx);
				if (jp_object(p, sub) != 0)
					return -1;
				item[0] = '\0';
			} else if (jp_string(p, item, sizeof(item)) != 0) {
				return -1;
			}
			if (f->val[0] && item[0])
				strcat(f->val, "|");
			strcat(f->val, item);
			jp_ws(p);
			if (p->s < p->end && *p->s == ',') {
				p->s++;
				continue;
			}
			if (p->s < p->end && *p->s == ']') {
				p->s++;
				return 0;
			}
			return -1;
		}
	}
	if (*p->s == '-' || (*p->s >= '0' && *p->s <= '9')) {
		struct jfield *f = jp_add(p, path, 'n');
		size_t o = 0;
		if (f == NULL)
			return -1;
		if (*p->s == '-')
			f->val[o++] = (char)*p->s++;
		if (p->s >= p->end || *p->s < '0' || *p->s > '9')
			return -1;
		if (*p->s == '0' && p->s + 1 < p->end && p->s[1] >= '0' && p->s[1] <= '9')
			return -1; /* leading zero */
		while (p->s < p->end && *p->s >= '0' && *p->s <= '9' && o < 30)
			f->val[o++] = (char)*p->s++;
		f->val[o] = '\0';
		return 0;
	}
	return -1;
}

static int jp_object(struct jp *p, const char *prefix)
{
	char k[64], path[96];
	p->s++; /* '{' */
	jp_ws(p);
	if (p->s < p->end && *p->s == '}') {
		p->s++;
		return -1; /* the formatter never writes an empty object */
	}
	for (;;) {
		jp_ws(p);
		if (jp_string(p, k, sizeof(k)) != 0)
			return -1;
		snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", k);
		jp_ws(p);
		if (p->s >= p->end || *p->s++ != ':')
			return -1;
		if (jp_value(p, path) != 0)
			return -1;
		jp_ws(p);
		if (p->s < p->end && *p->s == ',') {
			p->s++;
			continue;
		}
		if (p->s < p->end && *p->s == '}') {
			p->s++;
			return 0;
		}
		return -1;
	}
}

/* Parse one line: exactly one object, then '\n', then the end. */
static int jparse(const char *s, size_t len, struct jdoc *d)
{
	struct jp p = {(const unsigned char *)s, (const unsigned char *)s + len, d};
	d->n = 0;
	if (len < 3 || s[len - 1] != '\n' || memchr(s, '\n', len - 1) != NULL || s[0] != '{')
		return -1;
	p.end--; /* the newline */
	if (jp_object(&p, "") != 0)
		return -1;
	return p.s == p.end ? 0 : -1;
}

static const struct jfield *jget(const struct jdoc *d, const char *path)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->f[i].path, path) == 0)
			return &d->f[i];
	return NULL;
}

/* ---- the ECS field list ---- */

struct ecs_field {
	char name[96];
	char type[24];
};

static struct ecs_field *ecs;
static size_t n_ecs;

/* Rows "...,...,...,Field,Type,..." of one fields.csv-shaped file (the first five columns are
 * never quoted). */
static void load_fields(const char *path, size_t cap)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[8192];
	while (fgets(line, sizeof(line), f) != NULL && n_ecs < cap) {
		char *col[5];
		char *p = line;
		int i;
		for (i = 0; i < 5 && p; i++) {
			col[i] = p;
			p = strchr(p, ',');
			if (p)
				*p++ = '\0';
		}
		if (i < 5 || strcmp(col[0], "ECS_Version") == 0)
			continue;
		snprintf(ecs[n_ecs].name, sizeof(ecs[n_ecs].name), "%s", col[3]);
		snprintf(ecs[n_ecs].type, sizeof(ecs[n_ecs].type), "%s", col[4]);
		n_ecs++;
	}
	fclose(f);
}

/* ECS 9.4's event.category -> expected event.type pairs (event_categorization.csv). */
static char ecs_pairs[256][2][32];
static size_t n_pairs;

static void load_ecs(void)
{
	if (ecs != NULL)
		return;
	size_t cap = 4096;
	ecs = calloc(cap, sizeof(*ecs));
	assert_non_null(ecs);
	load_fields(ECS_FIELDS_CSV, cap);
	assert_true(n_ecs > 1000);
	size_t before = n_ecs;
	load_fields(ECS_CUSTOM_CSV, cap);
	assert_true(n_ecs > before);
	FILE *f = fopen(ECS_CATEGORIZATION_CSV, "r");
	assert_non_null(f);
	char line[256];
	while (fgets(line, sizeof(line), f) != NULL && n_pairs < 256) {
		char ver[32], cat[32], typ[32];
		if (sscanf(line, "%31[^,],%31[^,],%31[^,\n]", ver, cat, typ) != 3 ||
		    strcmp(ver, "ECS_Version") == 0)
			continue;
		snprintf(ecs_pairs[n_pairs][0], 32, "%s", cat);
		snprintf(ecs_pairs[n_pairs][1], 32, "%s", typ);
		n_pairs++;
	}
	fclose(f);
	assert_true(n_pairs > 50);
}

static bool pair_expected(const char *cat, size_t cl, const char *typ, size_t tl)
{
	for (size_t i = 0; i < n_pairs; i++)
		if (strlen(ecs_pairs[i][0]) == cl && strncmp(ecs_pairs[i][0], cat, cl) == 0 &&
		    strlen(ecs_pairs[i][1]) == tl && strncmp(ecs_pairs[i][1], typ, tl) == 0)
			return true;
	return false;
}

/* Every event.type is one ECS expects with every event.category of the record. */
static void check_categorization(const struct jdoc *d);

static const char *ecs_type(const char *name)
{
	for (size_t i = 0; i < n_ecs; i++)
		if (strcmp(ecs[i].name, name) == 0)
			return ecs[i].type;
	return NULL;
}

static bool is_rfc3339_us(const char *s)
{
	/* YYYY-MM-DDTHH:MM:SS.uuuuuuZ */
	static const char pat[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
	if (strlen(s) != sizeof(pat) - 1)
		return false;
	for (size_t i = 0; pat[i]; i++)
		if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
			return false;
	return true;
}

/* Every key is an ECS 9.4 field (labels.* under the labels object) with a value of its type. */
static void check_ecs(const struct jdoc *d)
{
	load_ecs();
	for (size_t i = 0; i < d->n; i++) {
		const struct jfield *f = &d->f[i];
		const char *t;
		if (strncmp(f->path, "labels.", 7) == 0) {
			t = ecs_type("labels");
			assert_non_null(t);
			assert_string_equal(t, "object");
			assert_int_equal(f->type, 's'); /* labels are keyword values */
			continue;
		}
		t = ecs_type(f->path);
		if (t == NULL)
			fail_msg("key %s is not an ECS 9.4 field", f->path);
		if (strcmp(t, "keyword") == 0 || strcmp(t, "wildcard") == 0) {
			assert_true(f->type == 's' || f->type == 'a');
		} else if (strcmp(t, "match_only_text") == 0) {
			assert_int_equal(f->type, 's'); /* message */
		} else if (strcmp(t, "long") == 0) {
			assert_int_equal(f->type, 'n');
		} else if (strcmp(t, "date") == 0) {
			assert_int_equal(f->type, 's');
			assert_true(is_rfc3339_us(f->val));
		} else if (strcmp(t, "ip") == 0) {
			unsigned char b[16];
			assert_int_equal(f->type, 's');
			assert_true(inet_pton(AF_INET, f->val, b) == 1 ||
			            inet_pton(AF_INET6, f->val, b) == 1);
		} else {
			fail_msg("key %s has ECS type %s the formatter should not use", f->path, t);
		}
	}
	check_categorization(d);
}

static void check_categorization(const struct jdoc *d)
{
	const struct jfield *cat = jget(d, "event.category"), *typ = jget(d, "event.type");
	assert_non_null(cat);
	assert_non_null(typ);
	/* Arrays are "a|b|c" in the parsed document. */
	for (const char *c = cat->val; *c;) {
		size_t cl = strcspn(c, "|");
		for (const char *t = typ->val; *t;) {
			size_t tl = strcspn(t, "|");
			if (!pair_expected(c, cl, t, tl))
				fail_msg("event.type %.*s is not expected with event.category %.*s",
				         (int)tl, t, (int)cl, c);
			t += tl + (t[tl] == '|');
		}
		c += cl + (c[cl] == '|');
	}
}

/* ---- formatting ---- */

#define TS_2024 1704164645678901234ULL /* 2024-01-02T03:04:05.678901234Z */

static const struct pc_addr SRC4 = {ADDR_V4, {10, 42, 0, 7}};
static const struct pc_addr DST6 = {ADDR_V6,
                                    {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};

static void test_format_refusal_minimal(void **state)
{
	struct audit_rec r = {.ts_ns = TS_2024, .reason = R_HOST_NOT_ALLOWED};
	char buf[2048];
	size_t n = audit_format(&r, "gw-1", buf, sizeof(buf));
	const char *want =
	    "{\"@timestamp\":\"2024-01-02T03:04:05.678901Z\",\"ecs\":{\"version\":\"9.4.0\"},"
	    "\"message\":\"connection refused before a request: host_not_allowed\","
	    "\"event\":{\"kind\":\"event\",\"category\":[\"network\"],"
	    "\"type\":[\"connection\",\"denied\"],\"action\":\"connect\",\"outcome\":\"failure\","
	    "\"reason\":\"host_not_allowed\",\"dataset\":\"portcullis.audit\","
	    "\"module\":\"portcullis\",\"start\":\"2024-01-02T03:04:05.678901Z\","
	    "\"end\":\"2024-01-02T03:04:05.678901Z\",\"duration\":0},"
	    "\"network\":{\"transport\":\"tcp\",\"protocol\":\"http\",\"direction\":\"outbound\"},"
	    "\"observer\":{\"hostname\":\"gw-1\",\"product\":\"portcullis\",\"vendor\":"
	    "\"portcullis\","
	    "\"type\":\"proxy\",\"version\":\"" PORTCULLIS_VERSION "\"}}\n";
	assert_string_equal(buf, want);
	assert_int_equal(n, strlen(want));
	struct jdoc d;
	assert_int_equal(jparse(buf, n, &d), 0);
	check_ecs(&d);
}

/*
 * A closed tunnel: @timestamp and event.end are the close, event.start the
 * accept (duration before it), the ids, the community id and the JA4.
 */
static void test_format_tunnel_full(void **state)
{
	struct audit_rec r = {
	    .ts_ns = TS_2024,
	    .duration_ns = 1234567890123ULL,
	    .tunnel_end = true,
	    .allowed = true,
	    .reason = R_CLIENT_CLOSED,
	    .id_prefix = 0x0123456789abcdefULL,
	    .event_id = 7,
	    .conn_id = 5,
	    .community_id = "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
	    .src = &SRC4,
	    .src_port = 51234,
	    .dst_domain = "deb.debian.org",
	    .dst_ip = &DST6,
	    .dst_port = 443,
	    .method = "CONNECT",
	    .status = 200,
	    .bytes_up = 1000,
	    .bytes_down = 5000000000ULL,
	    .rule = "deb.debian.org",
	    .tier = "standard",
	    .would_deny = "port_not_allowed",
	    .user_agent = "curl/8.14.1",
	    .sni = "deb.debian.org",
	    .ja4 = "t13d1516h2_8daaf6152771_e5627efa2ab1",
	};
	char buf[4096];
	size_t n = audit_format(&r, NULL, buf, sizeof(buf));
	const char *want =
	    "{\"@timestamp\":\"2024-01-02T03:04:05.678901Z\",\"ecs\":{\"version\":\"9.4.0\"},"
	    "\"message\":\"CONNECT deb.debian.org:443 tunnel closed: client_closed, 1000 bytes up, "
	    "5000000000 down\","
	    "\"event\":{\"kind\":\"event\",\"category\":[\"network\"],"
	    "\"type\":[\"connection\",\"end\",\"allowed\"],\"action\":\"tunnel\","
	    "\"outcome\":\"success\",\"reason\":\"client_closed\","
	    "\"id\":\"0123456789abcdef0000000000000007\",\"dataset\":\"portcullis.audit\","
	    "\"module\":\"portcullis\",\"start\":\"2024-01-02T02:43:31.111011Z\","
	    "\"end\":\"2024-01-02T03:04:05.678901Z\",\"duration\":1234567890123},"
	    "\"trace\":{\"id\":\"0123456789abcdef0000000000000005\"},"
	    "\"source\":{\"ip\":\"10.42.0.7\",\"port\":51234,\"bytes\":1000},"
	    "\"destination\":{\"domain\":\"deb.debian.org\",\"ip\":\"2001:db8::1\",\"port\":443,"
	    "\"bytes\":5000000000},"
	    "\"network\":{\"transport\":\"tcp\",\"protocol\":\"http\",\"direction\":\"outbound\","
	    "\"community_id\":\"1:LQU9qZlK+B5F3KDmev6m5PMibrg=\"},"
	    "\"http\":{\"request\":{\"method\":\"CONNECT\"},\"response\":{\"status_code\":200}},"
	    "\"user_agent\":{\"original\":\"curl/8.14.1\"},"
	    "\"tls\":{\"client\":{\"server_name\":\"deb.debian.org\","
	    "\"ja4\":\"t13d1516h2_8daaf6152771_e5627efa2ab1\"}},"
	    "\"rule\":{\"name\":\"deb.debian.org\",\"ruleset\":\"standard\"},"
	    "\"labels\":{\"would_deny\":\"port_not_allowed\"},"
	    "\"observer\":{\"product\":\"portcullis\",\"vendor\":\"portcullis\","
	    "\"type\":\"proxy\",\"version\":\"" PORTCULLIS_VERSION "\"}}\n";
	assert_string_equal(buf, want);
	assert_int_equal(n, strlen(want));
	struct jdoc d;
	assert_int_equal(jparse(buf, n, &d), 0);
	check_ecs(&d);
}

/* Through a load balancer: the header's client is source, the balancer source.nat, the AWS
 * VPC endpoint ID a keyword label. */
static void test_format_proxied(void **state)
{
	static const struct pc_addr lb = {ADDR_V4, {10, 0, 16, 5}};
	struct audit_rec r = {
	    .ts_ns = TS_2024,
	    .reason = R_HOST_NOT_ALLOWED,
	    .src = &SRC4,
	    .src_port = 40007,
	    .src_nat = &lb,
	    .src_nat_port = 51514,
	    .aws_vpce_id = "vpce-08d2bf15fac5001c9",
	    .status = 403,
	};
	char buf[4096];
	size_t n = audit_format(&r, "gw-1", buf, sizeof(buf));
	assert_true(n > 0);
	assert_non_null(strstr(buf, "\"source\":{\"ip\":\"10.42.0.7\",\"port\":40007,"
	                            "\"nat\":{\"ip\":\"10.0.16.5\",\"port\":51514}}"));
	assert_non_null(strstr(buf, "\"labels\":{\"aws_vpce_id\":\"vpce-08d2bf15fac5001c9\"}"));
	struct jdoc d;
	assert_int_equal(jparse(buf, n, &d), 0);
	check_ecs(&d);
	/* Without them, neither appears. */
	r.src_nat = NULL;
	r.aws_vpce_id = NULL;
	n = audit_format(&r, "gw-1", buf, sizeof(buf));
	assert_null(strstr(buf, "nat"));
	assert_null(strstr(buf, "labels"));
}

/* Start and interim records of a tunnel, and a plain-HTTP exchange: their categorisation. */
static void test_format_phases(void **state)
{
	static const struct {
		enum audit_phase phase;
		const char *method;
		bool end;
		const char *category, *type, *action;
	} cases[] = {
	    {AUDIT_START, "CONNECT", false, "network", "connection|start|allowed", "tunnel"},
	    {AUDIT_INTERIM, "CONNECT", false, "network", "connection|info", "tunnel"},
	    {AUDIT_FINAL, "CONNECT", true, "network", "connection|end|allowed", "tunnel"},
	    {AUDIT_FINAL, "GET", true, "network|web", "access", "http-request"},
	    {AUDIT_START, "GET", false, "network", "connection|start|allowed", "http-request"},
	};
	char buf[4096];
	struct jdoc d;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct audit_rec r = {
		    .ts_ns = TS_2024,
		    .start_ns = TS_2024 - 300000000000ULL,
		    .duration_ns = 300000000000ULL,
		    .phase = cases[i].phase,
		    .tunnel_end = cases[i].end,
		    .allowed = true,
		    .reason = cases[i].end ? R_CLIENT_CLOSED : R_ALLOWED,
		    .src = &SRC4,
		    .src_port = 40000,
		    .method = cases[i].method,
		    .dst_domain = "example.com",
		    .dst_port = 443,
		};
		size_t n = audit_format(&r, "gw", buf, sizeof(buf));
		assert_true(n > 0);
		assert_int_equal(jparse(buf, n, &d), 0);
		check_ecs(&d);
		assert_string_equal(jget(&d, "event.category")->val, cases[i].category);
		assert_string_equal(jget(&d, "event.type")->val, cases[i].type);
		assert_string_equal(jget(&d, "event.action")->val, cases[i].action);
		assert_string_equal(jget(&d, "event.start")->val, "2024-01-02T02:59:05.678901Z");
		assert_string_equal(jget(&d, "event.end")->val, "2024-01-02T03:04:05.678901Z");
		assert_string_equal(jget(&d, "@timestamp")->val, "2024-01-02T03:04:05.678901Z");
		assert_non_null(jget(&d, "source.bytes"));
	}
}

/* OCSF: the class, activity and type_uid of every record kind; times in ms; ids; JA4 unmapped. */
static void test_format_ocsf(void **state)
{
	static const struct {
		enum audit_phase phase;
		const char *method;
		bool end, allowed;
		const char *cls, *activity, *type_uid;
	} cases[] = {
	    {AUDIT_FINAL, "CONNECT", false, false, "4001", "5", "400105"},
	    {AUDIT_FINAL, NULL, false, false, "4001", "5", "400105"},
	    {AUDIT_START, "CONNECT", false, true, "4001", "1", "400101"},
	    {AUDIT_INTERIM, "CONNECT", false, true, "4001", "6", "400106"},
	    {AUDIT_FINAL, "CONNECT", true, true, "4001", "2", "400102"},
	    {AUDIT_FINAL, "GET", true, true, "4002", "3", "400203"},
	    {AUDIT_FINAL, "POST", false, false, "4002", "6", "400206"},
	    {AUDIT_FINAL, "PATCH", true, true, "4002", "99", "400299"},
	};
	char buf[4096];
	static struct jdoc d;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct audit_rec r = {
		    .ts_ns = TS_2024,
		    .start_ns = TS_2024 - 2500000000ULL,
		    .duration_ns = 2500000000ULL,
		    .phase = cases[i].phase,
		    .tunnel_end = cases[i].end,
		    .allowed = cases[i].allowed,
		    .reason = cases[i].allowed ? R_CLIENT_CLOSED : R_HOST_NOT_ALLOWED,
		    .id_prefix = 1,
		    .event_id = 2,
		    .conn_id = 3,
		    .src = &SRC4,
		    .src_port = 40000,
		    .method = cases[i].method,
		    .dst_domain = "example.com",
		    .dst_ip = &DST6,
		    .dst_port = 443,
		    .status = 403,
		    .tls_version = "1.3",
		    .sni = "example.com",
		    .ja4 = "t13d1516h2_8daaf6152771_e5627efa2ab1",
		    .user_agent = "ua\"x",
		};
		size_t n = audit_format_ocsf(&r, "gw", buf, sizeof(buf));
		assert_true(n > 0);
		if (jparse(buf, n, &d) != 0)
			fail_msg("not parsed: %s", buf);
		assert_string_equal(jget(&d, "class_uid")->val, cases[i].cls);
		assert_string_equal(jget(&d, "activity_id")->val, cases[i].activity);
		assert_string_equal(jget(&d, "type_uid")->val, cases[i].type_uid);
		assert_string_equal(jget(&d, "category_uid")->val, "4");
		assert_string_equal(jget(&d, "time")->val, "1704164645678");
		assert_string_equal(jget(&d, "start_time")->val, "1704164643178");
		assert_string_equal(jget(&d, "duration")->val, "2500");
		assert_string_equal(jget(&d, "metadata.version")->val, "1.1.0");
		assert_string_equal(jget(&d, "metadata.uid")->val, "00000000000000010000000000000002");
		assert_string_equal(jget(&d, "metadata.correlation_uid")->val,
		                    "00000000000000010000000000000003");
		assert_string_equal(jget(&d, "severity_id")->val, cases[i].allowed ? "1" : "2");
		assert_string_equal(jget(&d, "src_endpoint.ip")->val, "10.42.0.7");
		assert_string_equal(jget(&d, "dst_endpoint.ip")->val, "2001:db8::1");
		assert_string_equal(jget(&d, "tls.version")->val, "1.3");
		assert_string_equal(jget(&d, "unmapped.ja4_fingerprint_list[0].value")->val,
		                    "t13d1516h2_8daaf6152771_e5627efa2ab1");
		assert_string_equal(jget(&d, "unmapped.ja4_fingerprint_list[0].type_id")->val, "1");
		if (strcmp(cases[i].cls, "4002") == 0) {
			assert_string_equal(jget(&d, "http_response.code")->val, "403");
			assert_string_equal(jget(&d, "http_request.user_agent")->val, "ua\"x");
		}
	}
}

/* A request that carried an OIDC token: the job in labels.oidc_*, sub in user.id and
 * related.user, ECS-valid; in OCSF under unmapped.oidc.  A refused token: only its hash. */
static void test_format_oidc(void **state)
{
	struct audit_rec r = {
	    .ts_ns = TS_2024,
	    .tunnel_end = true,
	    .allowed = true,
	    .reason = R_CLIENT_CLOSED,
	    .src = &SRC4,
	    .src_port = 40000,
	    .dst_domain = "example.com",
	    .dst_port = 443,
	    .method = "CONNECT",
	    .status = 200,
	    .tier = "trusted",
	    .oidc_token = "0123456789abcdef",
	    .oidc_issuer = "https://gitlab.example.com",
	    .oidc_subject = "project_path:g/app:ref_type:branch:ref:main",
	    .oidc_project = "g/app",
	    .oidc_ref = "main",
	    .oidc_pipeline = "9001",
	    .oidc_job = "700001",
	    .oidc_rule = "protected",
	};
	char buf[4096];
	static struct jdoc d;
	size_t n = audit_format(&r, NULL, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(jparse(buf, n, &d), 0);
	check_ecs(&d);
	assert_string_equal(jget(&d, "user.id")->val, "project_path:g/app:ref_type:branch:ref:main");
	assert_non_null(strstr(buf, "\"related\":{\"user\":[\"project_path:g/app:ref_type:branch:ref:"
	                            "main\"]}"));
	assert_string_equal(jget(&d, "labels.oidc_issuer")->val, "https://gitlab.example.com");
	assert_string_equal(jget(&d, "labels.oidc_project")->val, "g/app");
	assert_string_equal(jget(&d, "labels.oidc_ref")->val, "main");
	assert_string_equal(jget(&d, "labels.oidc_pipeline_id")->val, "9001");
	assert_string_equal(jget(&d, "labels.oidc_job_id")->val, "700001");
	assert_string_equal(jget(&d, "labels.oidc_rule")->val, "protected");
	assert_string_equal(jget(&d, "labels.oidc_token_sha256")->val, "0123456789abcdef");
	n = audit_format_ocsf(&r, "gw", buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(jparse(buf, n, &d), 0);
	assert_string_equal(jget(&d, "unmapped.oidc.project")->val, "g/app");
	assert_string_equal(jget(&d, "unmapped.oidc.job_id")->val, "700001");
	assert_string_equal(jget(&d, "unmapped.oidc.token_sha256")->val, "0123456789abcdef");
	/* refused: the hash alone */
	struct audit_rec q = {.ts_ns = TS_2024, .reason = R_OIDC_SIGNATURE_INVALID, .src = &SRC4,
	                      .src_port = 40001, .method = "CONNECT", .status = 403,
	                      .oidc_token = "fedcba9876543210"};
	n = audit_format(&q, NULL, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(jparse(buf, n, &d), 0);
	check_ecs(&d);
	assert_string_equal(jget(&d, "labels.oidc_token_sha256")->val, "fedcba9876543210");
	assert_null(jget(&d, "labels.oidc_issuer"));
	assert_null(jget(&d, "user.id"));
}

/* A counted record: action, start/end, the count as a keyword label. */
static void test_format_aggregate(void **state)
{
	struct audit_rec r = {
	    .ts_ns = TS_2024 + 900000000ULL,
	    .duration_ns = 900000000ULL,
	    .reason = R_HOST_NOT_ALLOWED,
	    .src = &SRC4,
	    .src_port = 40000,
	    .status = 403,
	    .tier = "ci",
	    .aggregated = 12345,
	    .start_ns = TS_2024,
	};
	char buf[4096];
	size_t n = audit_format(&r, "gw-1", buf, sizeof(buf));
	const char *want =
	    "{\"@timestamp\":\"2024-01-02T03:04:06.578901Z\",\"ecs\":{\"version\":\"9.4.0\"},"
	    "\"message\":\"12345 refusals (host_not_allowed) aggregated\","
	    "\"event\":{\"kind\":\"event\",\"category\":[\"network\"],"
	    "\"type\":[\"connection\",\"denied\"],\"action\":\"refusals-aggregated\","
	    "\"outcome\":\"failure\",\"reason\":\"host_not_allowed\","
	    "\"dataset\":\"portcullis.audit\",\"module\":\"portcullis\","
	    "\"start\":\"2024-01-02T03:04:05.678901Z\",\"end\":\"2024-01-02T03:04:06.578901Z\","
	    "\"duration\":900000000},"
	    "\"source\":{\"ip\":\"10.42.0.7\",\"port\":40000},"
	    "\"network\":{\"transport\":\"tcp\",\"protocol\":\"http\",\"direction\":\"outbound\"},"
	    "\"http\":{\"response\":{\"status_code\":403}},"
	    "\"rule\":{\"ruleset\":\"ci\"},"
	    "\"labels\":{\"aggregated_refusals\":\"12345\"},"
	    "\"observer\":{\"hostname\":\"gw-1\",\"product\":\"portcullis\",\"vendor\":"
	    "\"portcullis\",\"type\":\"proxy\",\"version\":\"" PORTCULLIS_VERSION "\"}}\n";
	assert_string_equal(buf, want);
	assert_int_equal(n, strlen(want));
	struct jdoc d;
	assert_int_equal(jparse(buf, n, &d), 0);
	check_ecs(&d);
}

/* Every combination of set / unset optional fields: valid JSON, ECS keys, presence rules. */
static void test_format_combinations(void **state)
{
	static const char *methods[] = {NULL, "CONNECT", "GET"};
	char buf[4096];
	struct jdoc *d = malloc(sizeof(*d));
	assert_non_null(d);
	for (unsigned m = 0; m < 3; m++) {
		for (unsigned bits = 0; bits < (1u << 14); bits++) {
			struct audit_rec r = {.ts_ns = TS_2024 + bits,
			                      .reason = (enum reason)(bits % R__COUNT)};
			r.tunnel_end = bits & 1;
			r.allowed = bits & 2;
			r.src = bits & 4 ? &SRC4 : NULL;
			r.src_port = bits & 8 ? 40000 : 0;
			r.dst_domain = bits & 16 ? "example.com" : NULL;
			r.dst_ip = bits & 32 ? &DST6 : NULL;
			r.dst_port = bits & 64 ? 8443 : 0;
			r.status = bits & 128 ? 403 : 0;
			r.bytes_up = bits & 256 ? 7 : 0;
			r.rule = bits & 512 ? "r" : NULL;
			r.tier = bits & 1024 ? "t" : NULL;
			r.would_deny = bits & 2048 ? "host_not_allowed" : NULL;
			r.sni = bits & 4096 ? "example.com" : NULL;
			const char *host = bits & 8192 ? "gw" : NULL;
			r.method = methods[m];
			size_t n = audit_format(&r, host, buf, sizeof(buf));
			assert_true(n > 0);
			assert_int_equal(jparse(buf, n, d), 0);
			if (bits < 64 || bits % 97 == 0)
				check_ecs(d);
			bool bytes = r.tunnel_end || r.bytes_up;
			assert_true((jget(d, "source.ip") != NULL) == (r.src != NULL));
			assert_true((jget(d, "source.port") != NULL) == (r.src_port != 0));
			assert_true((jget(d, "source.bytes") != NULL) == bytes);
			assert_true((jget(d, "destination.bytes") != NULL) == bytes);
			assert_true((jget(d, "destination.domain") != NULL) ==
			            (r.dst_domain != NULL));
			assert_true((jget(d, "destination.ip") != NULL) == (r.dst_ip != NULL));
			assert_true((jget(d, "destination.port") != NULL) == (r.dst_port != 0));
			assert_true((jget(d, "http.request.method") != NULL) == (r.method != NULL));
			assert_true((jget(d, "http.response.status_code") != NULL) ==
			            (r.status != 0));
			assert_true((jget(d, "rule.name") != NULL) == (r.rule != NULL));
			assert_true((jget(d, "rule.ruleset") != NULL) == (r.tier != NULL));
			assert_true((jget(d, "labels.would_deny") != NULL) ==
			            (r.would_deny != NULL));
			assert_true((jget(d, "tls.client.server_name") != NULL) == (r.sni != NULL));
			assert_true((jget(d, "observer.hostname") != NULL) == (host != NULL));
			const struct jfield *f = jget(d, "event.type");
			const char *want = !r.allowed     ? "connection|denied"
			                   : !r.tunnel_end ? "connection|allowed"
			                   : m == 2        ? "access"
			                                   : "connection|end|allowed";
			assert_string_equal(f->val, want);
			assert_non_null(jget(d, "event.start"));
			assert_non_null(jget(d, "event.end"));
			f = jget(d, "event.action");
			assert_string_equal(f->val, m == 2         ? "http-request"
			                            : r.tunnel_end ? "tunnel"
			                                           : "connect");
			if (bits < 64 || bits % 97 == 0)
				check_categorization(d);
			assert_string_equal(jget(d, "event.outcome")->val,
			                    r.allowed ? "success" : "failure");
			assert_string_equal(jget(d, "event.reason")->val, reason_name(r.reason));
			assert_non_null(jget(d, "event.duration"));
			assert_non_null(jget(d, "@timestamp"));
		}
	}
	free(d);
}

static void test_format_timestamps(void **state)
{
	static const struct {
		uint64_t ns;
		const char *want;
	} cases[] = {
	    {0, "1970-01-01T00:00:00.000000Z"},
	    {999, "1970-01-01T00:00:00.000000Z"},
	    {1000, "1970-01-01T00:00:00.000001Z"},
	    {951868799999999999ULL, "2000-02-29T23:59:59.999999Z"},
	    {TS_2024, "2024-01-02T03:04:05.678901Z"},
	};
	char buf[2048];
	struct jdoc d;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct audit_rec r = {.ts_ns = cases[i].ns};
		size_t n = audit_format(&r, "h", buf, sizeof(buf));
		assert_int_equal(jparse(buf, n, &d), 0);
		assert_string_equal(jget(&d, "@timestamp")->val, cases[i].want);
	}
}

/* The formatted value of destination.domain for a given input. */
static void fmt_domain(const char *in, char *raw, size_t rawcap, char *decoded, size_t deccap)
{
	static char buf[65536];
	struct audit_rec r = {.ts_ns = 1, .dst_domain = in};
	size_t n = audit_format(&r, "h", buf, sizeof(buf));
	assert_true(n > 0);
	const char *k = strstr(buf, "\"domain\":\"");
	assert_non_null(k);
	k += strlen("\"domain\":");
	const char *e = strstr(k, "},\"network\"");
	assert_non_null(e);
	assert_true((size_t)(e - k) < rawcap);
	memcpy(raw, k, (size_t)(e - k));
	raw[e - k] = '\0';
	static struct jdoc d;
	assert_int_equal(jparse(buf, n, &d), 0);
	const char *v = jget(&d, "destination.domain")->val;
	assert_true(strlen(v) < deccap);
	memcpy(decoded, v, strlen(v) + 1);
}

static void test_escaping(void **state)
{
	static const struct {
		const char *in, *raw, *decoded;
	} cases[] = {
	    {"plain.example", "\"plain.example\"", "plain.example"},
	    {"a\"b\\c/d", "\"a\\\"b\\\\c/d\"", "a\"b\\c/d"},
	    {"\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\"", "\b\f\n\r\t"},
	    {"\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"", "\x01\x1f\x7f"},
	    {"}\",\"x\":\"", "\"}\\\",\\\"x\\\":\\\"\"", "}\",\"x\":\""},
	    /* valid UTF-8: é € U+1F600 copied as is */
	    {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
	     "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"},
	    /* lone continuation, 0xff, overlong '/', surrogate, truncated, above U+10FFFF */
	    {"\x80", "\"\\ufffd\"", "\xef\xbf\xbd"},
	    {"a\xff"
	     "b",
	     "\"a\\ufffdb\"",
	     "a\xef\xbf\xbd"
	     "b"},
	    {"\xc0\xaf", "\"\\ufffd\\ufffd\"", "\xef\xbf\xbd\xef\xbf\xbd"},
	    {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	    {"\xe2\x82", "\"\\ufffd\\ufffd\"", "\xef\xbf\xbd\xef\xbf\xbd"},
	    {"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"",
	     "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	    {"", "\"\"", ""},
	    /* line and paragraph separators, NEL: valid JSON raw, but line readers (Python's
	     * splitlines, pre-ES2019 JavaScript) split or choke on them; escaped */
	    {"a\xe2\x80\xa8" "b\xe2\x80\xa9" "c\xc2\x85" "d", "\"a\\u2028b\\u2029c\\u0085d\"",
	     "a\xe2\x80\xa8" "b\xe2\x80\xa9" "c\xc2\x85" "d"},
	};
	char raw[512], dec[512];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fmt_domain(cases[i].in, raw, sizeof(raw), dec, sizeof(dec));
		assert_string_equal(raw, cases[i].raw);
		assert_string_equal(dec, cases[i].decoded);
	}
}

/* Every single byte value, and random garbage: the output is always valid UTF-8 JSON. */
static void test_escaping_fuzz(void **state)
{
	char in[64], raw[1024], dec[1024];
	for (int c = 1; c < 256; c++) {
		in[0] = (char)c;
		in[1] = '\0';
		fmt_domain(in, raw, sizeof(raw), dec, sizeof(dec));
	}
	unsigned seed = 12345;
	for (int i = 0; i < 20000; i++) {
		size_t len = (size_t)(rand_r(&seed) % 40);
		for (size_t k = 0; k < len; k++) {
			in[k] = (char)(rand_r(&seed) % 255 + 1);
		}
		in[len] = '\0';
		fmt_domain(in, raw, sizeof(raw), dec, sizeof(dec)); /* parses: asserted inside */
	}
}

static void test_long_strings(void **state)
{
	size_t len = 10000;
	char *dom = malloc(len + 1);
	assert_non_null(dom);
	for (size_t i = 0; i < len; i++)
		dom[i] = (i % 64 == 63) ? '.' : 'a';
	dom[len] = '\0';
	struct audit_rec r = {.ts_ns = 1, .dst_domain = dom, .sni = dom};
	struct jdoc *d = malloc(sizeof(*d));
	assert_non_null(d);
	/* Too long for the buffer: the client's strings are cut (256 bytes each), and marked. */
	char small[4096];
	size_t n = audit_format(&r, "h", small, sizeof(small));
	assert_true(n > 0 && n < sizeof(small));
	assert_int_equal(jparse(small, n, d), 0);
	const struct jfield *dd = jget(d, "destination.domain"), *sn = jget(d, "tls.client.server_name");
	assert_non_null(dd);
	assert_non_null(sn);
	assert_int_equal(strnlen(dd->val, sizeof(dd->val)), 256);
	assert_memory_equal(dd->val, dom, 256);
	assert_int_equal(strnlen(sn->val, sizeof(sn->val)), 256);
	assert_string_equal(jget(d, "labels.truncated")->val, "true");
	char *big = malloc(65536);
	assert_non_null(big);
	n = audit_format(&r, "h", big, 65536);
	assert_true(n > 2 * len);
	assert_int_equal(jparse(big, n, d), 0);
	assert_string_equal(jget(d, "destination.domain")->val, dom);
	assert_string_equal(jget(d, "tls.client.server_name")->val, dom);
	assert_null(jget(d, "labels.truncated"));
	free(d);
	free(big);
	free(dom);
}

/* jsonw_text cut at every length: between characters, never inside an escape or a sequence. */
static void test_text_cut(void **state)
{
	static const char in[] = "a\"\\\x01\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xff\xe2\x82z\t";
	char whole[256], dec_whole[256];
	struct jsonw w;
	jsonw_init(&w, whole, sizeof(whole));
	jsonw_text(&w, in);
	size_t wn = jsonw_end(&w);
	assert_true(wn > 2);
	assert_false(w.cut);
	struct jp p = {(const unsigned char *)whole, (const unsigned char *)whole + wn, NULL};
	assert_int_equal(jp_string(&p, dec_whole, sizeof(dec_whole)), 0);
	for (size_t max = 0; max <= wn; max++) {
		char out[256], dec[256];
		jsonw_init(&w, out, sizeof(out));
		w.text_max = max;
		jsonw_text(&w, in);
		size_t n = jsonw_end(&w);
		assert_true(n >= 2 && n - 2 <= max);
		assert_int_equal(w.cut, n < wn);
		/* The cut output is a prefix of the whole one, and a JSON string of its own. */
		assert_memory_equal(out, whole, n - 1);
		p = (struct jp){(const unsigned char *)out, (const unsigned char *)out + n, NULL};
		assert_int_equal(jp_string(&p, dec, sizeof(dec)), 0);
		assert_true(p.s == p.end);
		assert_memory_equal(dec, dec_whole, strlen(dec));
	}
}

#define LINE_MAX_BYTES AUDIT_LINE_MAX

/* n bytes of c, NUL-terminated, in a static pool (freed at exit). */
static char *fill(int c, size_t n)
{
	static char pool[64 * 1024];
	static size_t used;
	assert_true(used + n + 1 <= sizeof(pool));
	char *s = pool + used;
	memset(s, c, n);
	s[n] = '\0';
	used += n + 1;
	return s;
}

/*
 * Every client-controlled string at the longest its capture lets through, made of the
 * bytes that escape widest: 255 '\' in a DN (RFC 2253 escapes stay printable), 16 SANs of
 * printable '"' (4 KiB together), a User-Agent of obs-text, 8 pod labels of 511-byte
 * "key:value" (values are not checked by the Kubernetes parser), an ALPN of control bytes.
 */
static void worst_record(struct audit_rec *r, const char *method)
{
	static const struct pc_addr lb = {ADDR_V6, {0xfd, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
	                                            14, 15}};
	static const char *sans[16], *lk[8], *lv[8];
	if (sans[0] == NULL) {
		for (int i = 0; i < 16; i++)
			sans[i] = fill('"', 255);
		for (int i = 0; i < 8; i++) {
			lk[i] = fill('k', 63);
			lv[i] = fill('\xff', 447);
		}
	}
	*r = (struct audit_rec){
	    .ts_ns = TS_2024,
	    .duration_ns = UINT64_MAX,
	    .tunnel_end = true,
	    .allowed = true,
	    .reason = R_TLS_ECH,
	    .id_prefix = UINT64_MAX,
	    .event_id = UINT64_MAX,
	    .conn_id = UINT64_MAX,
	    .community_id = "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
	    .src = &DST6,
	    .src_port = 65535,
	    .src_nat = &lb,
	    .src_nat_port = 65535,
	    .aws_vpce_id = fill('a', 64),
	    .dst_domain = fill('a', 253),
	    .dst_ip = &DST6,
	    .dst_port = 65535,
	    .method = method,
	    .status = 999,
	    .bytes_up = UINT64_MAX,
	    .bytes_down = UINT64_MAX,
	    .rule = fill('a', 253),
	    .tier = fill('t', 63),
	    .would_deny = "source_connection_limit",
	    .url_domain = fill('a', 253),
	    .url_path = fill('"', 511),
	    .url_port = 65535,
	    .user_agent = fill('\xff', 256),
	    .sni = fill('a', 253),
	    .tls_version = "0x0304",
	    .tls_next_protocol = fill('\x01', 63),
	    .ja4 = "t13d1516h2_8daaf6152771_e5627efa2ab1",
	    .x509_subject = fill('\\', 255),
	    .x509_issuer = fill('\\', 255),
	    .x509_serial = fill('F', 95),
	    .x509_cn = fill('"', 71),
	    .x509_sha256 = fill('f', 64),
	    .x509_not_before = 1,
	    .x509_not_after = INT32_MAX,
	    .n_x509_sans = 16,
	    .user_id = fill('a', 2048),
	    .pod_ns = fill('\xff', 63),
	    .pod_name = fill('\xff', 253),
	    .pod_uid = fill('\xff', 63),
	    .n_pod_labels = 8,
	};
	memcpy(r->x509_sans, sans, sizeof(sans));
	memcpy(r->pod_label_keys, lk, sizeof(lk));
	memcpy(r->pod_label_values, lv, sizeof(lv));
}

/*
 * Whatever the client sends, its record fits the line: cut (and marked), one valid JSON
 * object, never dropped.  Both formats.
 */
static void test_worst_case_fits_line(void **state)
{
	static const char *const methods[] = {"CONNECT", "GET", "PATCH"};
	static char buf[LINE_MAX_BYTES];
	static struct jdoc d;
	for (int f = 0; f < 2; f++) {
		for (size_t m = 0; m < 3; m++) {
			struct audit_rec r;
			worst_record(&r, methods[m]);
			size_t n = audit_format_as(f ? AUDIT_FMT_OCSF : AUDIT_FMT_ECS, &r, fill('"', 64),
			                           buf, sizeof(buf));
			if (n == 0)
				fail_msg("%s %s: the record does not fit %d bytes", f ? "ocsf" : "ecs",
				         methods[m], LINE_MAX_BYTES);
			if (jparse(buf, n, &d) != 0)
				fail_msg("not parsed: %s", buf);
			/* Marked exactly when the whole record would not have fitted. */
			static char whole[64 * 1024];
			size_t wn = audit_format_as(f ? AUDIT_FMT_OCSF : AUDIT_FMT_ECS, &r, fill('"', 64),
			                            whole, sizeof(whole));
			print_message("%s %s: %zu bytes whole, %zu written\n", f ? "ocsf" : "ecs",
			              methods[m], wn, n);
			const struct jfield *mark =
			    jget(&d, f ? "unmapped.truncated" : "labels.truncated");
			if (wn < sizeof(buf)) {
				assert_null(mark);
				assert_int_equal(n, wn);
			} else {
				assert_non_null(mark);
				assert_string_equal(mark->val, "true");
			}
			/* Cut to nothing, every field at its longest still fits 3 KiB. */
			static char small[3072];
			size_t sn = audit_format_as(f ? AUDIT_FMT_OCSF : AUDIT_FMT_ECS, &r, fill('"', 64),
			                            small, sizeof(small));
			print_message("  in %zu bytes: %zu written\n", sizeof(small), sn);
			assert_true(sn > 0);
			assert_int_equal(jparse(small, sn, &d), 0);
			assert_true(wn >= sizeof(small));
			assert_non_null(jget(&d, f ? "unmapped.truncated" : "labels.truncated"));
			assert_int_equal(jparse(buf, n, &d), 0);
			const struct jfield *id = jget(&d, f ? "metadata.uid" : "event.id");
			assert_non_null(id);
			assert_string_equal(id->val, "ffffffffffffffffffffffffffffffff");
			if (f == 0)
				check_ecs(&d);
		}
	}
}

/*
 * The room an exchange reserves at admission (conn_audit_reserve: its record so far, the
 * widest numbers, plus AUDIT_RESERVE_SLACK) holds its final record, cut if need be, whatever
 * the ClientHello adds afterwards: here a Chrome-like GREASE ECH refusal (the long hint), a
 * 253-byte SNI and a 63-byte ALPN of control bytes, the JA4, an IPv6 address, a would-deny.
 */
static void test_final_fits_reservation(void **state)
{
	static char buf[AUDIT_LINE_MAX];
	static struct jdoc d;
	for (int f = 0; f < 2; f++) {
		enum audit_format fmt = f ? AUDIT_FMT_OCSF : AUDIT_FMT_ECS;
		struct audit_rec r = {
		    .ts_ns = TS_2024,
		    .duration_ns = UINT64_MAX,
		    .tunnel_end = true,
		    .allowed = true,
		    .reason = R_UPSTREAM_CLOSED,
		    .id_prefix = 1,
		    .event_id = UINT64_MAX,
		    .conn_id = 3,
		    .community_id = "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
		    .src = &SRC4,
		    .src_port = 40000,
		    .dst_domain = "a.example",
		    .dst_port = 443,
		    .method = "CONNECT",
		    .status = 200,
		    .bytes_up = UINT64_MAX,
		    .bytes_down = UINT64_MAX,
		    .rule = "a.example",
		    .tier = "standard",
		    .user_agent = "curl/8.14.1",
		};
		size_t reserved = audit_format_as(fmt, &r, "gw", buf, sizeof(buf)) + AUDIT_RESERVE_SLACK;
		r.tunnel_end = r.allowed = false;
		r.reason = R_TLS_ECH;
		r.duration_ns = r.bytes_up = r.bytes_down = 0;
		r.event_id = 2;
		r.dst_ip = &DST6;
		r.sni = fill('a', 253);
		r.tls_version = "1.3";
		r.tls_next_protocol = fill('\x01', 63);
		r.ja4 = "t13d1516h2_8daaf6152771_e5627efa2ab1";
		r.would_deny = "source_connection_limit";
		size_t whole = audit_format_as(fmt, &r, "gw", buf, sizeof(buf));
		print_message("%s: reserved %zu, final record %zu\n", f ? "ocsf" : "ecs", reserved,
		              whole);
		size_t n = audit_format_as(fmt, &r, "gw", buf, reserved + 1);
		if (n == 0)
			fail_msg("%s: the final record does not fit its %zu reserved bytes",
			         f ? "ocsf" : "ecs", reserved);
		assert_int_equal(jparse(buf, n, &d), 0);
		const struct jfield *reason = jget(&d, f ? "unmapped.reason" : "event.reason");
		assert_non_null(reason);
		assert_string_equal(reason->val, "tls_ech");
	}
}

/* A pod label cut to its 511-byte "key:value" is cut between characters, not inside one. */
static void test_label_cut_utf8(void **state)
{
	static char v[600], buf[4096];
	static struct jdoc d;
	memset(v, 'a', 505);
	memcpy(v + 505, "\xc3\xa9tail", 7);
	struct audit_rec r = {.ts_ns = 1, .pod_name = "p", .n_pod_labels = 1};
	r.pod_label_keys[0] = "team";
	r.pod_label_values[0] = v;
	size_t n = audit_format(&r, "h", buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(jparse(buf, n, &d), 0);
	const struct jfield *l = jget(&d, "orchestrator.resource.label");
	assert_non_null(l);
	char want[600];
	snprintf(want, sizeof(want), "team:%.505s", v);
	assert_string_equal(l->val, want); /* not "...a\ufffd" */
}

/* Too small: 0 and not one byte written past n; one byte for the NUL is required. */
static void test_buffer_too_small(void **state)
{
	struct audit_rec r = {.ts_ns = TS_2024,
	                      .reason = R_DNS_ERROR,
	                      .src = &SRC4,
	                      .dst_domain = "x\"y.example",
	                      .method = "CONNECT",
	                      .status = 502};
	char ref[2048];
	size_t full = audit_format(&r, "gw", ref, sizeof(ref));
	assert_true(full > 100);
	assert_int_equal(audit_format(&r, "gw", NULL, 100), 0);
	for (size_t n = 0; n <= full + 1; n++) {
		char buf[2048 + 16];
		memset(buf, 0xAA, sizeof(buf));
		size_t got = audit_format(&r, "gw", buf, n);
		if (n <= full) {
			/* Nothing, or the record with its strings cut to fit, marked. */
			static struct jdoc d;
			assert_true(got == 0 || got < n);
			if (got > 0) {
				assert_int_equal(jparse(buf, got, &d), 0);
				assert_string_equal(jget(&d, "labels.truncated")->val, "true");
				assert_int_equal(buf[got], '\0');
			}
		} else {
			assert_int_equal(got, full);
			assert_memory_equal(buf, ref, full + 1);
		}
		for (size_t i = n; i < sizeof(buf); i++)
			assert_int_equal((unsigned char)buf[i], 0xAA);
	}
}

/* ---- the writer ---- */

static char tmpdir[256];

static int setup_tmp(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/pc-audit-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown_tmp(void **state)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		*len = 0;
		return calloc(1, 1);
	}
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap + 1);
	size_t k;
	while ((k = fread(b + n, 1, cap - n, f)) > 0) {
		n += k;
		if (n == cap) {
			cap *= 2;
			b = realloc(b, cap + 1);
		}
	}
	fclose(f);
	b[n] = '\0';
	*len = n;
	return b;
}

/* Lines of the form {"t":T,"i":I,"p":"<pad>"} where pad is (I*7 + T) % 300 'x's. */
static size_t make_line(char *buf, size_t cap, int t, int i)
{
	static char xs[301];
	if (xs[0] == '\0')
		memset(xs, 'x', sizeof(xs) - 1);
	int pad = (i * 7 + t) % 300;
	int k = snprintf(buf, cap, "{\"t\":%d,\"i\":%d,\"p\":\"%.*s\"}\n", t, i, pad, xs);
	return (size_t)k;
}

/* Check every line is whole and count them into seen[t * per + i]; returns the line count. */
static size_t check_lines(const char *data, size_t len, unsigned char *seen, int threads, int per)
{
	size_t lines = 0;
	const char *p = data, *end = data + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		assert_non_null(nl); /* no partial last line */
		int t, i, used = 0;
		assert_int_equal(sscanf(p, "{\"t\":%d,\"i\":%d,\"p\":\"%n", &t, &i, &used), 2);
		assert_true(used > 0);
		assert_true(t >= 0 && t < threads && i >= 0 && i < per);
		char want[512];
		size_t wl = make_line(want, sizeof(want), t, i);
		assert_int_equal((size_t)(nl + 1 - p), wl);
		assert_memory_equal(p, want, wl);
		seen[t * per + i]++;
		lines++;
		p = nl + 1;
	}
	return lines;
}

#define W_THREADS 4
#define W_PER     2500

struct wctx {
	struct audit_log *l;
	int t;
};

static void *submitter(void *arg)
{
	struct wctx *c = arg;
	char line[512];
	for (int i = 0; i < W_PER; i++) {
		size_t n = make_line(line, sizeof(line), c->t, i);
		if (audit_log_submit(c->l, line, n) != 0)
			return (void *)1;
	}
	return NULL;
}

static void test_writer_concurrent(void **state)
{
	char path[512], err[256];
	snprintf(path, sizeof(path), "%s/audit.log", tmpdir);
	struct audit_log *l = audit_log_create(path, 8u << 20, err, sizeof(err));
	assert_non_null(l);
	assert_true(audit_log_available(l));
	pthread_t th[W_THREADS];
	struct wctx c[W_THREADS];
	for (int t = 0; t < W_THREADS; t++) {
		c[t] = (struct wctx){l, t};
		assert_int_equal(pthread_create(&th[t], NULL, submitter, &c[t]), 0);
	}
	for (int t = 0; t < W_THREADS; t++) {
		void *rv;
		pthread_join(th[t], &rv);
		assert_null(rv);
	}
	assert_int_equal(audit_log_dropped(l), 0);
	audit_log_destroy(l);

	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0077 & ~0640, 0); /* 0640 at most */
	size_t len;
	char *data = slurp(path, &len);
	unsigned char *seen = calloc(W_THREADS * W_PER, 1);
	assert_int_equal(check_lines(data, len, seen, W_THREADS, W_PER), W_THREADS * W_PER);
	for (int k = 0; k < W_THREADS * W_PER; k++)
		assert_int_equal(seen[k], 1);
	free(seen);
	free(data);
}

static void wait_file_len(const char *path, size_t want)
{
	for (int i = 0; i < 500; i++) {
		struct stat st;
		if (stat(path, &st) == 0 && (size_t)st.st_size >= want)
			return;
		usleep(10000);
	}
	fail_msg("%s never reached %zu bytes", path, want);
}

/* Rotation: rename, reopen; every line submitted after the reopen lands in the new file. */
static void test_writer_reopen(void **state)
{
	char path[512], old[512], err[256], line[512];
	snprintf(path, sizeof(path), "%s/rot.log", tmpdir);
	snprintf(old, sizeof(old), "%s/rot.log.1", tmpdir);
	struct audit_log *l = audit_log_create(path, 1u << 20, err, sizeof(err));
	assert_non_null(l);
	size_t pre_bytes = 0;
	for (int i = 0; i < 1000; i++) {
		size_t n = make_line(line, sizeof(line), 0, i);
		pre_bytes += n;
		assert_int_equal(audit_log_submit(l, line, n), 0);
	}
	/* Half of the rotations happen while the writer may still be busy with the first lines. */
	wait_file_len(path, pre_bytes / 2);
	assert_int_equal(rename(path, old), 0);
	audit_log_reopen(l);
	for (int i = 0; i < 1000; i++) {
		size_t n = make_line(line, sizeof(line), 1, i);
		assert_int_equal(audit_log_submit(l, line, n), 0);
	}
	audit_log_destroy(l);

	unsigned char *seen = calloc(2 * 1000, 1);
	size_t la, lb;
	char *a = slurp(old, &la), *b = slurp(path, &lb);
	size_t na = check_lines(a, la, seen, 2, 1000);
	size_t nb = check_lines(b, lb, seen, 2, 1000);
	assert_int_equal(na + nb, 2000);
	for (int k = 0; k < 2000; k++)
		assert_int_equal(seen[k], 1);
	/* every post-rotation line (t = 1) is in the new file */
	memset(seen, 0, 2000);
	check_lines(b, lb, seen, 2, 1000);
	for (int k = 1000; k < 2000; k++)
		assert_int_equal(seen[k], 1);
	assert_true(na >= 500);
	free(seen);
	free(a);
	free(b);
}

/* An idle writer notices a reopen request by itself (within about a second). */
static void test_writer_reopen_idle(void **state)
{
	char path[512], old[512], err[256];
	snprintf(path, sizeof(path), "%s/idle.log", tmpdir);
	snprintf(old, sizeof(old), "%s/idle.log.1", tmpdir);
	struct audit_log *l = audit_log_create(path, 4096, err, sizeof(err));
	assert_non_null(l);
	assert_int_equal(rename(path, old), 0);
	audit_log_reopen(l);
	struct stat st;
	int i;
	for (i = 0; i < 300 && stat(path, &st) != 0; i++)
		usleep(10000);
	assert_true(i < 300);
	audit_log_destroy(l);
}

struct drain {
	int fd;
	size_t bytes;
};

static void *drainer(void *arg)
{
	struct drain *d = arg;
	char buf[65536];
	ssize_t k;
	while ((k = read(d->fd, buf, sizeof(buf))) != 0) {
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			break;
		d->bytes += (size_t)k;
	}
	return NULL;
}

/* A reader that does not read: only the writer blocks; the queue fills; submit says -1. */
static void test_writer_full(void **state)
{
	char path[512], err[256], line[128];
	snprintf(path, sizeof(path), "%s/fifo", tmpdir);
	assert_int_equal(mkfifo(path, 0600), 0);
	int rfd = open(path, O_RDONLY | O_NONBLOCK);
	assert_true(rfd >= 0);
	struct audit_log *l = audit_log_create(path, 4096, err, sizeof(err));
	assert_non_null(l);
	memset(line, 'y', sizeof(line));
	line[sizeof(line) - 1] = '\n';

	size_t ok = 0, refused = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 200000 && refused < 10; i++) {
		if (audit_log_submit(l, line, sizeof(line)) == 0) {
			ok++;
		} else {
			refused++;
			assert_false(audit_log_available(l));
		}
		if (i % 64 == 0)
			usleep(100); /* let the writer fill the pipe */
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(refused, 10);
	assert_int_equal(audit_log_dropped(l), 10);
	/* the pipe (64 KiB) plus the queue (4 KiB) took the rest */
	assert_true(ok * sizeof(line) >= 4096);
	assert_true(t1.tv_sec - t0.tv_sec < 10);            /* submit never blocked on the pipe */
	assert_true(audit_log_submit(l, line, 5000) == -1); /* larger than the whole queue */

	/* Now read: destroy flushes everything and the reader sees EOF. */
	int fl = fcntl(rfd, F_GETFL);
	fcntl(rfd, F_SETFL, fl & ~O_NONBLOCK);
	struct drain d = {rfd, 0};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, drainer, &d), 0);
	audit_log_destroy(l);
	pthread_join(th, NULL);
	close(rfd);
	assert_int_equal(d.bytes, ok * sizeof(line));
}

/* Room promised to a record to come is never taken by others: the record always fits. */
static void test_writer_reservations(void **state)
{
	char path[512], err[256], line[128], big[900];
	snprintf(path, sizeof(path), "%s/fifo-res", tmpdir);
	assert_int_equal(mkfifo(path, 0600), 0);
	int rfd = open(path, O_RDONLY | O_NONBLOCK);
	assert_true(rfd >= 0);
	struct audit_log *l = audit_log_create(path, 4096, err, sizeof(err));
	assert_non_null(l);
	memset(line, 'y', sizeof(line));
	line[sizeof(line) - 1] = '\n';
	memset(big, 'z', sizeof(big));
	big[sizeof(big) - 1] = '\n';

	assert_true(audit_log_reserve(l, 1024));
	/* refusals fill the pipe and the queue up to the promised room, never into it */
	/* until the pipe is full and the writer blocked: refused 20 times in a row over >= 200 ms */
	int refused = 0;
	for (int i = 0; i < 400000 && refused < 20; i++) {
		if (audit_log_submit(l, line, sizeof(line)) != 0) {
			refused++;
			usleep(10000);
		} else {
			refused = 0;
		}
	}
	assert_int_equal(refused, 20);
	assert_false(audit_log_available(l));
	assert_false(audit_log_reserve(l, 100)); /* nothing more is promised now */
	/* the promised record goes in, even a little longer than promised if there is room */
	assert_int_equal(audit_log_submit_reserved(l, big, sizeof(big), 1024), 0);
	assert_int_equal(audit_log_submit(l, line, sizeof(line)), -1);
	/* a reservation given back unused frees its room */
	int fl = fcntl(rfd, F_GETFL);
	fcntl(rfd, F_SETFL, fl & ~O_NONBLOCK);
	struct drain d = {rfd, 0};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, drainer, &d), 0);
	int i;
	for (i = 0; i < 500 && !audit_log_reserve(l, 2000); i++)
		usleep(10000);
	assert_true(i < 500);
	audit_log_unreserve(l, 2000);
	assert_true(audit_log_available(l));
	audit_log_destroy(l);
	pthread_join(th, NULL);
	close(rfd);
}

/* "-" writes to stdout; a missing newline is added; reopen is a no-op; empty lines are skipped. */
static void test_writer_stdout(void **state)
{
	int p[2], saved;
	char err[256];
	assert_int_equal(pipe(p), 0);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	assert_true(saved >= 0);
	dup2(p[1], STDOUT_FILENO);
	close(p[1]);
	struct audit_log *l = audit_log_create("-", 4096, err, sizeof(err));
	if (l != NULL) {
		(void)!audit_log_submit(l, "{\"a\":1}", 7);
		audit_log_reopen(l);
		(void)!audit_log_submit(l, "", 0);
		(void)!audit_log_submit(l, "{\"b\":2}\n", 8);
		audit_log_destroy(l);
	}
	dup2(saved, STDOUT_FILENO);
	close(saved);
	assert_non_null(l);
	char buf[64] = "";
	ssize_t k = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	assert_int_equal(k, 16);
	assert_string_equal(buf, "{\"a\":1}\n{\"b\":2}\n");
}

static void test_writer_bad_path(void **state)
{
	char err[256] = "";
	assert_null(audit_log_create("/nonexistent-dir/x/audit.log", 4096, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent-dir/x/audit.log"));
	assert_null(audit_log_create("-", 0, err, sizeof(err)));
	audit_log_destroy(NULL);
	assert_int_equal(audit_log_dropped(NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format_refusal_minimal),
	    cmocka_unit_test(test_format_tunnel_full),
	    cmocka_unit_test(test_format_phases),
	    cmocka_unit_test(test_format_ocsf),
	    cmocka_unit_test(test_format_aggregate),
	    cmocka_unit_test(test_format_oidc),
	    cmocka_unit_test(test_format_proxied),
	    cmocka_unit_test(test_format_combinations),
	    cmocka_unit_test(test_format_timestamps),
	    cmocka_unit_test(test_escaping),
	    cmocka_unit_test(test_escaping_fuzz),
	    cmocka_unit_test(test_long_strings),
	    cmocka_unit_test(test_buffer_too_small),
	    cmocka_unit_test(test_worst_case_fits_line),
	    cmocka_unit_test(test_text_cut),
	    cmocka_unit_test(test_final_fits_reservation),
	    cmocka_unit_test(test_label_cut_utf8),
	    cmocka_unit_test_setup_teardown(test_writer_concurrent, setup_tmp, teardown_tmp),
	    cmocka_unit_test_setup_teardown(test_writer_reopen, setup_tmp, teardown_tmp),
	    cmocka_unit_test_setup_teardown(test_writer_reopen_idle, setup_tmp, teardown_tmp),
	    cmocka_unit_test_setup_teardown(test_writer_full, setup_tmp, teardown_tmp),
	    cmocka_unit_test_setup_teardown(test_writer_reservations, setup_tmp, teardown_tmp),
	    cmocka_unit_test(test_writer_stdout),
	    cmocka_unit_test(test_writer_bad_path),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	free(ecs);
	return rc;
}
