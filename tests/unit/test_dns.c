/* Unit tests for proxy/dns.c against a real UDP DNS responder on loopback and a real event loop. */
#include "dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- the responder: one thread, one UDP socket, answers by name ---- */

#define T_A     1
#define T_CNAME 5
#define T_AAAA  28

struct seen {
	char name[256];
	int type;
};

struct responder {
	int fd;
	int family;
	uint16_t port;
	pthread_t thread;
	atomic_bool stop;
	pthread_mutex_t mu;
	struct seen log[4096];
	size_t n_log;
};

static size_t put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return 2;
}

static size_t put32(uint8_t *p, unsigned long v)
{
	put16(p, (unsigned)(v >> 16));
	put16(p + 2, (unsigned)(v & 0xffff));
	return 4;
}

/* An RR owned by the question name (compression pointer to offset 12). */
static size_t rr(uint8_t *p, int type, unsigned long ttl, const void *data, size_t len)
{
	size_t o = 0;
	o += put16(p + o, 0xc00c);
	o += put16(p + o, (unsigned)type);
	o += put16(p + o, 1);
	o += put32(p + o, ttl);
	o += put16(p + o, (unsigned)len);
	memcpy(p + o, data, len);
	return o + len;
}

static size_t encode_name(uint8_t *p, const char *name)
{
	size_t o = 0;
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		p[o++] = (uint8_t)l;
		memcpy(p + o, name, l);
		o += l;
		name += l + (dot ? 1 : 0);
	}
	p[o++] = 0;
	return o;
}

static size_t rr_a(uint8_t *p, const char *ip, unsigned long ttl)
{
	uint8_t b[4];
	inet_pton(AF_INET, ip, b);
	return rr(p, T_A, ttl, b, 4);
}

static size_t rr_aaaa(uint8_t *p, const char *ip, unsigned long ttl)
{
	uint8_t b[16];
	inet_pton(AF_INET6, ip, b);
	return rr(p, T_AAAA, ttl, b, 16);
}

/* Fill the answer section for (name, type); returns rcode, or -1 to stay silent. */
static int answer(const char *name, int type, uint8_t *p, size_t *len, unsigned *count)
{
	size_t o = 0;
	unsigned n = 0;
	if (strcmp(name, "multi.test") == 0 || strcmp(name, "shared.test") == 0) {
		if (type == T_A) {
			o += rr_a(p + o, "192.0.2.1", 300);
			o += rr_a(p + o, "192.0.2.2", 300);
			o += rr_a(p + o, "192.0.2.1", 300); /* duplicate */
			n = 3;
		} else if (type == T_AAAA) {
			o += rr_aaaa(p + o, "2001:db8::1", 300);
			o += rr_aaaa(p + o, "2001:db8::2", 300);
			n = 2;
		}
	} else if (strcmp(name, "many.test") == 0) {
		for (int i = 1; type == T_A && i <= 20; i++, n++) {
			char ip[32];
			snprintf(ip, sizeof(ip), "198.51.100.%d", i);
			o += rr_a(p + o, ip, 300);
		}
	} else if (strcmp(name, "v6only.test") == 0) {
		if (type == T_AAAA) {
			o += rr_aaaa(p + o, "2001:db8::53", 300);
			n = 1;
		}
	} else if (strcmp(name, "ttl.test") == 0) {
		if (type == T_A) {
			o += rr_a(p + o, "192.0.2.10", 1);
			n = 1;
		}
	} else if (strcmp(name, "cname.test") == 0) {
		/* cname.test CNAME target.test (TTL 1); target.test A 192.0.2.20 (TTL 300) */
		uint8_t t[64];
		size_t tl = encode_name(t, "target.test");
		o += rr(p + o, T_CNAME, 1, t, tl);
		n = 1;
		if (type == T_A) {
			memcpy(p + o, t, tl);
			o += tl;
			o += put16(p + o, T_A);
			o += put16(p + o, 1);
			o += put32(p + o, 300);
			o += put16(p + o, 4);
			uint8_t b[4] = {192, 0, 2, 20};
			memcpy(p + o, b, 4);
			o += 4;
			n = 2;
		}
	} else if (strcmp(name, "nodata.test") == 0) {
		/* NOERROR, no answers */
	} else if (strcmp(name, "fail.test") == 0) {
		return 2; /* SERVFAIL */
	} else if (strcmp(name, "refused.test") == 0) {
		return 5;
	} else if (strcmp(name, "silent.test") == 0 || strcmp(name, "silent2.test") == 0) {
		return -1;
	} else {
		return 3; /* NXDOMAIN */
	}
	*len = o;
	*count = n;
	return 0;
}

static void respond(struct responder *rs, const uint8_t *q, size_t qlen,
                    const struct sockaddr *from, socklen_t fromlen)
{
	char name[256];
	size_t o = 12, nl = 0;
	if (qlen < 17)
		return;
	while (o < qlen && q[o] != 0) {
		size_t l = q[o++];
		if (l > 63 || o + l > qlen || nl + l + 1 >= sizeof(name))
			return;
		if (nl)
			name[nl++] = '.';
		for (size_t i = 0; i < l; i++) {
			char c = (char)q[o + i];
			name[nl++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
		}
		o += l;
	}
	name[nl] = '\0';
	o++;
	if (o + 4 > qlen)
		return;
	int type = q[o] << 8 | q[o + 1];
	size_t qend = o + 4;

	pthread_mutex_lock(&rs->mu);
	if (rs->n_log < sizeof(rs->log) / sizeof(rs->log[0])) {
		snprintf(rs->log[rs->n_log].name, sizeof(rs->log[0].name), "%s", name);
		rs->log[rs->n_log++].type = type;
	}
	pthread_mutex_unlock(&rs->mu);

	uint8_t out[2048];
	size_t alen = 0;
	unsigned count = 0;
	int rcode = answer(name, type, out + qend, &alen, &count);
	if (rcode < 0)
		return;
	memcpy(out, q, qend);
	out[2] = (uint8_t)(0x80 | (q[2] & 0x01)); /* QR, RD copied */
	out[3] = (uint8_t)(0x80 | rcode);         /* RA */
	put16(out + 4, 1);
	put16(out + 6, count);
	put16(out + 8, 0);
	put16(out + 10, 0);
	(void)!sendto(rs->fd, out, qend + alen, 0, from, fromlen);
}

static void *responder_main(void *arg)
{
	struct responder *rs = arg;
	while (!atomic_load(&rs->stop)) {
		struct pollfd pfd = {.fd = rs->fd, .events = POLLIN};
		if (poll(&pfd, 1, 20) <= 0)
			continue;
		uint8_t q[1500];
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t k = recvfrom(rs->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
		if (k > 0)
			respond(rs, q, (size_t)k, (struct sockaddr *)&from, fl);
	}
	return NULL;
}

static struct responder *responder_start(int family)
{
	struct responder *rs = calloc(1, sizeof(*rs));
	assert_non_null(rs);
	rs->family = family;
	rs->fd = socket(family, SOCK_DGRAM, 0);
	assert_true(rs->fd >= 0);
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t sl;
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*sin);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		sl = sizeof(*s6);
	}
	if (bind(rs->fd, (struct sockaddr *)&ss, sl) != 0) {
		close(rs->fd);
		free(rs);
		return NULL;
	}
	assert_int_equal(getsockname(rs->fd, (struct sockaddr *)&ss, &sl), 0);
	rs->port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
	                                   : ((struct sockaddr_in6 *)&ss)->sin6_port);
	pthread_mutex_init(&rs->mu, NULL);
	assert_int_equal(pthread_create(&rs->thread, NULL, responder_main, rs), 0);
	return rs;
}

static void responder_stop(struct responder *rs)
{
	if (rs == NULL)
		return;
	atomic_store(&rs->stop, true);
	pthread_join(rs->thread, NULL);
	close(rs->fd);
	pthread_mutex_destroy(&rs->mu);
	free(rs);
}

/* Queries seen for name (type 0: any). */
static int seen_count(struct responder *rs, const char *name, int type)
{
	int n = 0;
	pthread_mutex_lock(&rs->mu);
	for (size_t i = 0; i < rs->n_log; i++)
		if (strcmp(rs->log[i].name, name) == 0 && (type == 0 || rs->log[i].type == type))
			n++;
	pthread_mutex_unlock(&rs->mu);
	return n;
}

/* Any query whose name starts with prefix. */
static int seen_prefix(struct responder *rs, const char *prefix)
{
	int n = 0;
	pthread_mutex_lock(&rs->mu);
	for (size_t i = 0; i < rs->n_log; i++)
		if (strncmp(rs->log[i].name, prefix, strlen(prefix)) == 0)
			n++;
	pthread_mutex_unlock(&rs->mu);
	return n;
}

/* ---- the event loop side ---- */

struct fixture {
	struct responder *rs;
	struct event_base *base;
	struct policy_settings s;
	struct dns_resolver *r;
};

struct result {
	int calls;
	enum dns_result res;
	size_t n;
	struct pc_addr a[64];
	struct fixture *fx;
	bool destroy_in_cb; /* the callback destroys the resolver */
};

static bool in_lookup;
static int done, want;
static struct event_base *cur_base;

static void cb(void *arg, enum dns_result res, const struct pc_addr *addrs, size_t n)
{
	struct result *out = arg;
	assert_false(in_lookup); /* never synchronous */
	out->calls++;
	out->res = res;
	out->n = n;
	assert_true(n <= 64);
	if (n > 0)
		memcpy(out->a, addrs, n * sizeof(*addrs));
	assert_true((res == DNS_OK) == (n > 0));
	if (out->destroy_in_cb) {
		dns_resolver_destroy(out->fx->r);
		out->fx->r = NULL;
	}
	if (++done >= want)
		event_base_loopbreak(cur_base);
}

static struct dns_query *lookup(struct fixture *fx, const char *name, struct result *out)
{
	in_lookup = true;
	struct dns_query *q = dns_lookup(fx->r, name, cb, out);
	in_lookup = false;
	return q;
}

static unsigned long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000ULL +
	       (unsigned long long)ts.tv_nsec / 1000000ULL;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/* Run the loop until `callbacks` more callbacks ran or ms passed; returns the callbacks seen. */
static int run(struct fixture *fx, int callbacks, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	struct event *t = evtimer_new(fx->base, stop_cb, fx->base);
	done = 0;
	want = callbacks;
	cur_base = fx->base;
	evtimer_add(t, &tv);
	event_base_dispatch(fx->base); /* callbacks 0: only the timer stops it */
	event_free(t);
	return done;
}

static void settings_for(struct policy_settings *s, int family, uint16_t port)
{
	memset(s, 0, sizeof(*s));
	s->resolvers[0].addr.family = family == AF_INET ? ADDR_V4 : ADDR_V6;
	if (family == AF_INET)
		memcpy(s->resolvers[0].addr.b, (uint8_t[]){127, 0, 0, 1}, 4);
	else
		s->resolvers[0].addr.b[15] = 1;
	s->resolvers[0].port = port;
	s->n_resolvers = 1;
	/* Answers must not race a short timeout on a loaded machine; the tests of timeouts
	 * ask for 200 ms themselves (short_timeouts). */
	s->resolver_timeout_ms = 2000;
	s->resolver_attempts = 2;
	s->resolver_max_answers = 16;
}

static struct fixture *fixture_new(void)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char err[256] = "";
	assert_non_null(fx);
	fx->rs = responder_start(AF_INET);
	assert_non_null(fx->rs);
	fx->base = event_base_new();
	assert_non_null(fx->base);
	settings_for(&fx->s, AF_INET, fx->rs->port);
	fx->r = dns_resolver_create(fx->base, &fx->s, err, sizeof(err));
	if (fx->r == NULL)
		fail_msg("dns_resolver_create: %s", err);
	return fx;
}

static int setup(void **state)
{
	*state = fixture_new();
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	dns_resolver_destroy(fx->r);
	/* nothing of the resolver may still be registered with the loop */
	assert_int_equal(event_base_loop(fx->base, EVLOOP_NONBLOCK), 1);
	event_base_free(fx->base);
	responder_stop(fx->rs);
	free(fx);
	return 0;
}

static bool has_addr(const struct result *res, const char *ip)
{
	struct pc_addr a = {0};
	if (inet_pton(AF_INET, ip, a.b) == 1)
		a.family = ADDR_V4;
	else if (inet_pton(AF_INET6, ip, a.b) == 1)
		a.family = ADDR_V6;
	for (size_t i = 0; i < res->n; i++)
		if (res->a[i].family == a.family && memcmp(res->a[i].b, a.b, 16) == 0)
			return true;
	return false;
}

/* Reset the reuse of a resolver with new settings. */
static void recreate(struct fixture *fx)
{
	char err[256];
	dns_resolver_destroy(fx->r);
	fx->r = dns_resolver_create(fx->base, &fx->s, err, sizeof(err));
	assert_non_null(fx->r);
}

/* 200 ms x 2 attempts: for the tests that wait for c-ares to give up. */
static void short_timeouts(struct fixture *fx)
{
	fx->s.resolver_timeout_ms = 200;
	recreate(fx);
}

/* ---- tests ---- */

static void test_ok_several_answers(void **state)
{
	struct fixture *fx = *state;
	struct result res = {0};
	assert_int_equal(dns_last_answer_ms(fx->r), 0);
	unsigned long long t0 = mono_ms();
	assert_non_null(lookup(fx, "multi.test", &res));
	assert_int_equal(res.calls, 0);
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_int_equal(res.res, DNS_OK);
	assert_int_equal(res.n, 4); /* the duplicate A is dropped */
	assert_true(has_addr(&res, "192.0.2.1"));
	assert_true(has_addr(&res, "192.0.2.2"));
	assert_true(has_addr(&res, "2001:db8::1"));
	assert_true(has_addr(&res, "2001:db8::2"));
	assert_true(dns_last_answer_ms(fx->r) >= t0);
	assert_true(dns_last_answer_ms(fx->r) <= mono_ms());
	assert_int_equal(seen_count(fx->rs, "multi.test", T_A), 1);
	assert_int_equal(seen_count(fx->rs, "multi.test", T_AAAA), 1);
	/* A v6-only name: A is NODATA, AAAA answers */
	struct result r6 = {0};
	assert_non_null(lookup(fx, "v6only.test", &r6));
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_int_equal(r6.res, DNS_OK);
	assert_int_equal(r6.n, 1);
	assert_true(has_addr(&r6, "2001:db8::53"));
}

static void test_max_answers(void **state)
{
	struct fixture *fx = *state;
	fx->s.resolver_max_answers = 5;
	recreate(fx);
	struct result res = {0};
	assert_non_null(lookup(fx, "many.test", &res));
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_int_equal(res.res, DNS_OK);
	assert_int_equal(res.n, 5);
	for (size_t i = 0; i < res.n; i++) {
		assert_int_equal(res.a[i].family, ADDR_V4);
		assert_memory_equal(res.a[i].b, ((uint8_t[]){198, 51, 100}), 3);
		for (size_t j = 0; j < i; j++)
			assert_true(memcmp(res.a[i].b, res.a[j].b, 4) != 0);
	}
}

static void test_negative_answers(void **state)
{
	struct fixture *fx = *state;
	struct result nx = {0}, nodata = {0}, fail = {0}, refused = {0};
	assert_non_null(lookup(fx, "fail.test", &fail));
	assert_non_null(lookup(fx, "refused.test", &refused));
	assert_int_equal(run(fx, 2, 3000), 2);
	assert_int_equal(fail.res, DNS_ERROR);
	assert_int_equal(refused.res, DNS_ERROR);
	/* SERVFAIL / REFUSED are not "an answer" for /readyz */
	assert_int_equal(dns_last_answer_ms(fx->r), 0);

	assert_non_null(lookup(fx, "nx.test", &nx));
	assert_non_null(lookup(fx, "nodata.test", &nodata));
	assert_int_equal(run(fx, 2, 3000), 2);
	assert_int_equal(nx.res, DNS_NXDOMAIN);
	assert_int_equal(nodata.res, DNS_NODATA);
	assert_true(dns_last_answer_ms(fx->r) > 0);

	/* negative answers are not cached */
	struct result nx2 = {0};
	assert_non_null(lookup(fx, "nx.test", &nx2));
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_int_equal(nx2.res, DNS_NXDOMAIN);
	assert_int_equal(seen_count(fx->rs, "nx.test", T_A), 2);
}

static void test_timeout(void **state)
{
	struct fixture *fx = *state; /* timeout 200 ms x 2 attempts x 1 server */
	short_timeouts(fx);
	struct result res = {0};
	unsigned long long t0 = mono_ms();
	assert_non_null(lookup(fx, "silent.test", &res));
	assert_int_equal(run(fx, 1, 5000), 1);
	unsigned long long el = mono_ms() - t0;
	assert_int_equal(res.res, DNS_TIMEOUT);
	assert_true(el >= 350);
	assert_true(el <= 3000); /* 400 ms asked: wide, for a loaded machine */
	assert_true(seen_count(fx->rs, "silent.test", T_A) >= 2); /* retransmitted */
	assert_int_equal(dns_last_answer_ms(fx->r), 0);
	struct dns_stats st;
	dns_resolver_stats(fx->r, &st);
	assert_int_equal(st.timeouts, 1);
}

static void test_cancel(void **state)
{
	struct fixture *fx = *state;
	short_timeouts(fx);
	struct result a = {0}, b = {0}, c = {0}, d = {0}, warm = {0};
	/* cancelled before the loop ever ran */
	struct dns_query *qa = lookup(fx, "silent.test", &a);
	assert_non_null(qa);
	dns_cancel(qa);
	/* cancelled while in flight */
	struct dns_query *qb = lookup(fx, "silent2.test", &b);
	assert_non_null(qb);
	run(fx, 0, 50);
	dns_cancel(qb);
	/* two waiters share one query: cancelling one leaves the other */
	struct dns_query *qc = lookup(fx, "shared.test", &c);
	assert_non_null(lookup(fx, "shared.test", &d));
	dns_cancel(qc);
	/* a cache hit waiting for delivery */
	assert_non_null(lookup(fx, "multi.test", &warm));
	assert_int_equal(run(fx, 2, 3000), 2); /* d and warm */
	struct result hit = {0};
	struct dns_query *qh = lookup(fx, "multi.test", &hit);
	assert_non_null(qh);
	dns_cancel(qh);
	dns_cancel(NULL);
	/* long enough for c-ares to give up on the silent names (600 ms) */
	run(fx, 0, 900);
	assert_int_equal(a.calls, 0);
	assert_int_equal(b.calls, 0);
	assert_int_equal(c.calls, 0);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.res, DNS_OK);
	assert_int_equal(warm.calls, 1);
	assert_int_equal(hit.calls, 0);
	assert_int_equal(seen_count(fx->rs, "shared.test", T_A), 1);
}

static void test_destroy_in_flight(void **state)
{
	struct fixture *fx = *state;
	short_timeouts(fx);
	struct result warm = {0}, a = {0}, b = {0}, c = {0};
	assert_non_null(lookup(fx, "multi.test", &warm));
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_non_null(lookup(fx, "silent.test", &a)); /* in flight */
	assert_non_null(lookup(fx, "nx.test", &b));     /* answered, maybe not yet delivered */
	assert_non_null(lookup(fx, "multi.test", &c));  /* cache hit, not yet delivered */
	run(fx, 0, 20);
	assert_int_equal(a.calls, 0);
	dns_resolver_destroy(fx->r);
	fx->r = NULL;
	run(fx, 0, 800);
	assert_int_equal(a.calls, 0);
	assert_true(b.calls <= 1);
	assert_true(c.calls <= 1);
	int before = b.calls + c.calls;
	run(fx, 0, 50);
	assert_int_equal(b.calls + c.calls, before);
	fx->r = NULL;
}

/* A callback that destroys the resolver: the rest of the batch never runs. */
static void test_destroy_from_callback(void **state)
{
	struct fixture *fx = *state;
	short_timeouts(fx);
	struct result warm = {0};
	assert_non_null(lookup(fx, "multi.test", &warm));
	assert_int_equal(run(fx, 1, 3000), 1);
	struct result first = {.fx = fx, .destroy_in_cb = true}, second = {0}, third = {0};
	assert_non_null(lookup(fx, "multi.test", &first));
	assert_non_null(lookup(fx, "multi.test", &second));
	assert_non_null(lookup(fx, "silent.test", &third));
	run(fx, 1, 1000);
	assert_int_equal(first.calls, 1);
	assert_null(fx->r);
	run(fx, 0, 700);
	assert_int_equal(second.calls, 0);
	assert_int_equal(third.calls, 0);
}

static void test_cache_ttl(void **state)
{
	struct fixture *fx = *state;
	struct result r1 = {0}, r2 = {0}, r3 = {0};
	assert_non_null(lookup(fx, "ttl.test", &r1));
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_int_equal(r1.res, DNS_OK);
	assert_int_equal(seen_count(fx->rs, "ttl.test", T_A), 1);

	/* within the TTL (1 s): from the cache, still asynchronous */
	assert_non_null(lookup(fx, "TTL.test.", &r2));
	assert_int_equal(r2.calls, 0);
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_int_equal(r2.res, DNS_OK);
	assert_true(has_addr(&r2, "192.0.2.10"));
	assert_int_equal(seen_count(fx->rs, "ttl.test", T_A), 1);
	struct dns_stats st;
	dns_resolver_stats(fx->r, &st);
	assert_int_equal(st.cache_hits, 1);
	assert_int_equal(st.cache_entries, 1);

	/* after it: asked again */
	usleep(1200 * 1000);
	assert_non_null(lookup(fx, "ttl.test", &r3));
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_int_equal(r3.res, DNS_OK);
	assert_int_equal(seen_count(fx->rs, "ttl.test", T_A), 2);

	/* the smallest TTL counts, CNAMEs included: cname.test lives 1 s, not 300 */
	struct result c1 = {0}, c2 = {0}, c3 = {0};
	assert_non_null(lookup(fx, "cname.test", &c1));
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_int_equal(c1.res, DNS_OK);
	assert_true(has_addr(&c1, "192.0.2.20"));
	assert_non_null(lookup(fx, "cname.test", &c2));
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_int_equal(seen_count(fx->rs, "cname.test", T_A), 1);
	usleep(1200 * 1000);
	assert_non_null(lookup(fx, "cname.test", &c3));
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_int_equal(seen_count(fx->rs, "cname.test", T_A), 2);

	dns_cache_flush(fx->r);
	dns_resolver_stats(fx->r, &st);
	assert_int_equal(st.cache_entries, 0);
}

/* dns_lookup_cached: a fresh hit calls back at once; anything else calls nothing. */
struct sync_result {
	struct result r;
	struct dns_resolver *flush; /* the callback flushes the cache that holds the answer */
};

static void sync_cb(void *arg, enum dns_result res, const struct pc_addr *addrs, size_t n)
{
	struct sync_result *out = arg;
	if (out->flush != NULL)
		dns_cache_flush(out->flush); /* the answer must outlive its own entry */
	out->r.calls++;
	out->r.res = res;
	out->r.n = n;
	assert_true(n > 0 && n <= 64);
	memcpy(out->r.a, addrs, n * sizeof(*addrs));
}

static void test_cache_sync(void **state)
{
	struct fixture *fx = *state;
	struct sync_result s = {0};
	struct dns_stats st;

	/* nothing cached yet: false, no callback, no query */
	assert_false(dns_lookup_cached(fx->r, "multi.test", sync_cb, &s));
	assert_int_equal(s.r.calls, 0);
	assert_int_equal(seen_count(fx->rs, "multi.test", T_A), 0);

	/* multi.test lives 300 s in the cache: no stall of the machine ends it mid-test */
	struct result r1 = {0};
	assert_non_null(lookup(fx, "multi.test", &r1));
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_int_equal(r1.res, DNS_OK);
	dns_resolver_stats(fx->r, &st);
	unsigned long long lookups = st.lookups, hits = st.cache_hits;

	/* cached: answered inside the call, same name in any case and with a trailing dot */
	assert_true(dns_lookup_cached(fx->r, "MULTI.test.", sync_cb, &s));
	assert_int_equal(s.r.calls, 1);
	assert_int_equal(s.r.res, DNS_OK);
	assert_true(has_addr(&s.r, "192.0.2.1"));
	assert_true(has_addr(&s.r, "2001:db8::2"));
	assert_int_equal(seen_count(fx->rs, "multi.test", T_A), 1);
	dns_resolver_stats(fx->r, &st);
	assert_int_equal(st.lookups, lookups + 1);
	assert_int_equal(st.cache_hits, hits + 1);

	/* a callback that empties the cache still gets the whole answer (ASan checks the rest) */
	s.flush = fx->r;
	assert_true(dns_lookup_cached(fx->r, "multi.test", sync_cb, &s));
	assert_int_equal(s.r.calls, 2);
	assert_true(has_addr(&s.r, "192.0.2.1"));
	s.flush = NULL;
	assert_false(dns_lookup_cached(fx->r, "multi.test", sync_cb, &s));
	assert_int_equal(s.r.calls, 2);

	/* names dns_lookup answers or refuses without the cache never call back from here */
	assert_false(dns_lookup_cached(fx->r, "localhost", sync_cb, &s));
	assert_false(dns_lookup_cached(fx->r, "x.onion", sync_cb, &s));
	assert_false(dns_lookup_cached(fx->r, "192.0.2.1", sync_cb, &s));
	assert_false(dns_lookup_cached(fx->r, "bad name", sync_cb, &s));
	assert_false(dns_lookup_cached(NULL, "multi.test", sync_cb, &s));
	assert_false(dns_lookup_cached(fx->r, "multi.test", NULL, &s));
	assert_int_equal(s.r.calls, 2);

	/* an entry past its TTL (ttl.test: 1 s) is not an answer, and it leaves the cache */
	struct result r2 = {0};
	assert_non_null(lookup(fx, "ttl.test", &r2));
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_int_equal(r2.res, DNS_OK);
	usleep(1200 * 1000);
	assert_false(dns_lookup_cached(fx->r, "ttl.test", sync_cb, &s));
	assert_int_equal(s.r.calls, 2);
	dns_resolver_stats(fx->r, &st);
	assert_int_equal(st.cache_entries, 0);
}

static void test_shared_query(void **state)
{
	struct fixture *fx = *state;
	struct result r[5] = {{0}};
	for (int i = 0; i < 5; i++)
		assert_non_null(lookup(fx, "shared.test", &r[i]));
	assert_int_equal(run(fx, 5, 3000), 5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].n, 4);
	}
	assert_int_equal(seen_count(fx->rs, "shared.test", T_A), 1);
	struct dns_stats st;
	dns_resolver_stats(fx->r, &st);
	assert_int_equal(st.shared, 4);
	assert_int_equal(st.queries, 1);
}

/* Names c-ares would answer itself never reach the server; bad names do not start. */
static void test_special_names(void **state)
{
	struct fixture *fx = *state;
	struct result lh = {0}, sub = {0}, onion = {0};
	assert_non_null(lookup(fx, "localhost", &lh));
	assert_non_null(lookup(fx, "a.b.LOCALHOST.", &sub));
	assert_non_null(lookup(fx, "xyz.onion", &onion));
	assert_int_equal(run(fx, 3, 1000), 3);
	assert_int_equal(lh.res, DNS_NXDOMAIN);
	assert_int_equal(sub.res, DNS_NXDOMAIN);
	assert_int_equal(onion.res, DNS_NXDOMAIN);
	assert_int_equal(seen_prefix(fx->rs, ""), 0);
	assert_int_equal(dns_last_answer_ms(fx->r), 0);

	static const char *bad[] = {
	    "",    ".",   "1.2.3.4", "127.1", "0x7f.1", "example.123",         "a..b",
	    ".a",  "a b", "a\\.b",   "::1",   "[::1]",  "caf\xc3\xa9.example", "a/b",
	    "a@b",
	};
	struct result none = {0};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_null(lookup(fx, bad[i], &none));
	char big[300];
	memset(big, 'a', sizeof(big));
	big[299] = '\0';
	assert_null(lookup(fx, big, &none));
	for (int i = 63; i < 299; i += 64)
		big[i] = '.';
	big[253] = '\0'; /* 253 bytes, labels of 63 */
	assert_non_null(lookup(fx, big, &none));
	big[63] = 'a'; /* a 127-byte label */
	assert_null(lookup(fx, big, &none));
	assert_null(dns_lookup(NULL, "x.test", cb, &none));
	assert_null(dns_lookup(fx->r, NULL, cb, &none));
	run(fx, 1, 2000);
	assert_int_equal(none.calls, 1);
	assert_int_equal(none.res, DNS_NXDOMAIN);
}

/* LOCALDOMAIN, RES_OPTIONS and HOSTALIASES have no effect. */
static void test_environment_ignored(void **state)
{
	struct fixture *fx = *state;
	char aliases[] = "/tmp/pc-dns-aliases-XXXXXX";
	int afd = mkstemp(aliases);
	assert_true(afd >= 0);
	assert_true(write(afd, "alias multi.test\n", 17) == 17);
	close(afd);
	setenv("LOCALDOMAIN", "evil.example", 1);
	setenv("RES_OPTIONS", "ndots:15 attempts:9 timeout:30 retrans:30000 retry:9 rotate", 1);
	setenv("HOSTALIASES", aliases, 1);
	fx->s.resolver_timeout_ms = 200;
	recreate(fx);
	unsetenv("LOCALDOMAIN");
	unsetenv("RES_OPTIONS");
	/* c-ares reads HOSTALIASES at lookup time: it stays set for the lookups */

	struct result al = {0}, two = {0}, sil = {0};
	assert_non_null(lookup(fx, "alias", &al));
	assert_non_null(lookup(fx, "nx.test", &two));
	assert_int_equal(run(fx, 2, 3000), 2);
	assert_int_equal(al.res, DNS_NXDOMAIN); /* asked as is: "alias" is unknown */
	assert_int_equal(seen_count(fx->rs, "alias", 0), 2);
	assert_int_equal(seen_prefix(fx->rs, "alias."), 0);
	assert_int_equal(seen_prefix(fx->rs, "nx.test."), 0);
	assert_int_equal(seen_count(fx->rs, "multi.test", 0), 0);
	/* the policy's timeout and attempts still hold (RES_OPTIONS asked for 30 s x 9) */
	unsigned long long t0 = mono_ms();
	assert_non_null(lookup(fx, "silent.test", &sil));
	assert_int_equal(run(fx, 1, 5000), 1);
	assert_int_equal(sil.res, DNS_TIMEOUT);
	assert_true(mono_ms() - t0 < 5000); /* 400 ms asked; RES_OPTIONS would make it minutes */
	unsetenv("HOSTALIASES");
	unlink(aliases);
}

/* IPv6 server with its own port; and failover from a dead server to a live one. */
static void test_servers(void **state)
{
	struct fixture *fx = *state;
	struct responder *rs6 = responder_start(AF_INET6);
	if (rs6 != NULL) {
		settings_for(&fx->s, AF_INET6, rs6->port);
		recreate(fx);
		struct result r = {0};
		assert_non_null(lookup(fx, "multi.test", &r));
		assert_int_equal(run(fx, 1, 3000), 1);
		assert_int_equal(r.res, DNS_OK);
		assert_int_equal(seen_count(rs6, "multi.test", T_A), 1);
		assert_int_equal(seen_count(fx->rs, "multi.test", T_A), 0);
		responder_stop(rs6);
	} else {
		print_message("no IPv6 loopback: IPv6 server part skipped\n");
	}

	/* first server: a closed port on 127.0.0.1 (ICMP port unreachable); second: the responder
	 */
	int probe = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	assert_int_equal(bind(probe, (struct sockaddr *)&sin, sl), 0);
	assert_int_equal(getsockname(probe, (struct sockaddr *)&sin, &sl), 0);
	close(probe);
	settings_for(&fx->s, AF_INET, ntohs(sin.sin_port));
	fx->s.resolvers[1] = fx->s.resolvers[0];
	fx->s.resolvers[1].port = fx->rs->port;
	fx->s.n_resolvers = 2;
	recreate(fx);
	struct result r = {0};
	assert_non_null(lookup(fx, "many.test", &r));
	assert_int_equal(run(fx, 1, 3000), 1);
	assert_int_equal(r.res, DNS_OK);
	assert_int_equal(r.n, 16);

	/* no servers at all: refused at creation */
	char err[256] = "";
	fx->s.n_resolvers = 0;
	assert_null(dns_resolver_create(fx->base, &fx->s, err, sizeof(err)));
	assert_true(err[0] != '\0');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_ok_several_answers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_max_answers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_negative_answers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_destroy_in_flight, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_destroy_from_callback, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cache_ttl, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cache_sync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shared_query, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_special_names, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_environment_ignored, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_servers, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
