/* Audit log: ECS 9.4 JSON lines (pure formatter) and one writer thread that writes whole lines. */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ascii.h"

#define AUDIT_MAX_DEPTH        4
#define AUDIT_IDLE_WAKE_MS     1000 /* an idle writer still notices a reopen request this often */
#define AUDIT_ERROR_BACKOFF_MS 100
#define AUDIT_GIVE_UP_ERRORS   20 /* consecutive write errors after destroy before dropping */
/*
 * Batching: a writer woken for a first record waits this long (or until this
 * many bytes are queued) before it writes, so one wake-up and one write(2)
 * carry many records.  A record never waits longer than AUDIT_BATCH_MS plus
 * the write itself.
 */
#define AUDIT_BATCH_MS    5
#define AUDIT_BATCH_BYTES (64u * 1024u)

/* ---- formatting ---- */

/* Output cursor: everything is appended or nothing is (full latches). */
struct jbuf {
	char *p;
	size_t n;   /* capacity, the terminating NUL included */
	size_t len; /* bytes written, NUL excluded */
	bool full;
	int depth;
	bool comma[AUDIT_MAX_DEPTH]; /* an element was already written at this depth */
};

static void put(struct jbuf *b, const char *s, size_t len)
{
	if (b->full || len >= b->n - b->len) {
		b->full = true;
		return;
	}
	memcpy(b->p + b->len, s, len);
	b->len += len;
}

static void put_lit(struct jbuf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629 §4), or 0. s is NUL-terminated. */
static size_t utf8_seq(const unsigned char *s)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t need;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 1;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 2;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		if (c == 0xed)
			hi = 0x9f; /* UTF-16 surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3;
		if (c == 0xf0)
			lo = 0x90; /* overlong */
		if (c == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i <= need; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return need + 1;
}

/* The two-character escape of c (RFC 8259 §7), or 0. */
static char short_escape(unsigned char c)
{
	switch (c) {
	case '"':
		return '"';
	case '\\':
		return '\\';
	case '\b':
		return 'b';
	case '\f':
		return 'f';
	case '\n':
		return 'n';
	case '\r':
		return 'r';
	case '\t':
		return 't';
	default:
		return 0;
	}
}

/*
 * A JSON string (RFC 8259 §7): quotes and backslashes escaped, every control
 * byte and DEL as \u00XX, well-formed UTF-8 copied, any other byte as U+FFFD.
 */
static void put_str(struct jbuf *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	put(b, "\"", 1);
	while (*s != '\0' && !b->full) {
		const unsigned char *run = s;
		while (*s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\')
			s++;
		put(b, (const char *)run, (size_t)(s - run));
		if (*s == '\0')
			break;
		char e[6] = {'\\', short_escape(*s), 0, 0, 0, 0};
		size_t k;
		if (e[1] != 0) {
			put(b, e, 2);
			s++;
		} else if (*s < 0x20 || *s == 0x7f) {
			memcpy(e + 1, "u00", 3);
			e[4] = ascii_hex_digit(*s >> 4, false);
			e[5] = ascii_hex_digit(*s, false);
			put(b, e, 6);
			s++;
		} else if ((k = utf8_seq(s)) > 0) {
			put(b, (const char *)s, k);
			s += k;
		} else {
			put(b, "\\ufffd", 6);
			s++;
		}
	}
	put(b, "\"", 1);
}

static void put_u64(struct jbuf *b, uint64_t v)
{
	char t[24];
	if (v > INT64_MAX)
		v = INT64_MAX; /* ECS long is signed 64-bit */
	int k = snprintf(t, sizeof(t), "%llu", (unsigned long long)v);
	put(b, t, (size_t)k);
}

static void key(struct jbuf *b, const char *k)
{
	if (b->comma[b->depth])
		put(b, ",", 1);
	b->comma[b->depth] = true;
	put_str(b, k);
	put(b, ":", 1);
}

static void obj_open(struct jbuf *b, const char *k)
{
	key(b, k);
	put(b, "{", 1);
	b->comma[++b->depth] = false;
}

static void obj_close(struct jbuf *b)
{
	put(b, "}", 1);
	b->depth--;
}

static void kv_str(struct jbuf *b, const char *k, const char *v)
{
	key(b, k);
	put_str(b, v);
}

static void kv_u64(struct jbuf *b, const char *k, uint64_t v)
{
	key(b, k);
	put_u64(b, v);
}

static void kv_ip(struct jbuf *b, const char *k, const struct pc_addr *a)
{
	char t[ADDR_STRLEN];
	size_t n = addr_format(a, t, sizeof(t));
	if (n == 0 || n >= sizeof(t))
		return;
	key(b, k);
	put(b, "\"", 1);
	put(b, t, n);
	put(b, "\"", 1);
}

/* An RFC 3339 UTC time with microseconds under key k. */
static void kv_time(struct jbuf *b, const char *k, uint64_t ts_ns)
{
	time_t sec = (time_t)(ts_ns / 1000000000u);
	unsigned usec = (unsigned)(ts_ns % 1000000000u / 1000u);
	struct tm tm;
	char t[40];
	if (gmtime_r(&sec, &tm) == NULL) {
		b->full = true;
		return;
	}
	int n = snprintf(t, sizeof(t), "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900,
	                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
	key(b, k);
	put(b, "\"", 1);
	put(b, t, (size_t)n);
	put(b, "\"", 1);
}

static void put_event(struct jbuf *b, const struct audit_rec *r)
{
	bool connect = r->method == NULL || strcmp(r->method, "CONNECT") == 0;
	obj_open(b, "event");
	kv_str(b, "kind", "event");
	key(b, "category");
	put_lit(b, "[\"network\",\"web\"]");
	key(b, "type");
	put_lit(b, r->allowed ? "[\"connection\",\"allowed\"" : "[\"connection\",\"denied\"");
	put_lit(b, r->tunnel_end ? ",\"end\"]" : "]");
	kv_str(b, "action", r->aggregated > 0 ? "refusals-aggregated"
	                    : !connect        ? "http-request"
	                    : r->tunnel_end   ? "tunnel"
	                                      : "connect");
	kv_str(b, "outcome", r->allowed ? "success" : "failure");
	kv_str(b, "reason", reason_name(r->reason));
	kv_u64(b, "duration", r->duration_ns);
	if (r->aggregated > 0) {
		kv_time(b, "start", r->start_ns);
		kv_time(b, "end", r->end_ns);
	}
	obj_close(b);
}

static void put_endpoints(struct jbuf *b, const struct audit_rec *r)
{
	bool bytes = r->tunnel_end || r->bytes_up != 0 || r->bytes_down != 0;
	if (r->src != NULL || r->src_port != 0 || bytes) {
		obj_open(b, "source");
		if (r->src != NULL)
			kv_ip(b, "ip", r->src);
		if (r->src_port != 0)
			kv_u64(b, "port", r->src_port);
		if (bytes)
			kv_u64(b, "bytes", r->bytes_up);
		if (r->user_id != NULL) {
			obj_open(b, "user");
			kv_str(b, "id", r->user_id);
			obj_close(b);
		}
		obj_close(b);
	}
	if (r->dst_domain != NULL || r->dst_ip != NULL || r->dst_port != 0 || bytes) {
		obj_open(b, "destination");
		if (r->dst_domain != NULL)
			kv_str(b, "domain", r->dst_domain);
		if (r->dst_ip != NULL)
			kv_ip(b, "ip", r->dst_ip);
		if (r->dst_port != 0)
			kv_u64(b, "port", r->dst_port);
		if (bytes)
			kv_u64(b, "bytes", r->bytes_down);
		obj_close(b);
	}
	obj_open(b, "network");
	kv_str(b, "transport", "tcp");
	kv_str(b, "protocol", "http");
	kv_str(b, "direction", "outbound");
	obj_close(b);
}

/* A JSON array of strings under key k. */
static void kv_strs(struct jbuf *b, const char *k, const char *const *v, size_t n)
{
	key(b, k);
	put(b, "[", 1);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			put(b, ",", 1);
		put_str(b, v[i]);
	}
	put(b, "]", 1);
}

/* tls.client's certificate fields (ECS x509 and hash). */
static void put_x509(struct jbuf *b, const struct audit_rec *r)
{
	if (r->x509_sha256 != NULL && r->x509_sha256[0] != '\0') {
		obj_open(b, "hash");
		kv_str(b, "sha256", r->x509_sha256);
		obj_close(b);
	}
	obj_open(b, "x509");
	obj_open(b, "subject");
	kv_str(b, "distinguished_name", r->x509_subject);
	if (r->x509_cn != NULL)
		kv_strs(b, "common_name", &r->x509_cn, 1);
	obj_close(b);
	if (r->x509_issuer != NULL) {
		obj_open(b, "issuer");
		kv_str(b, "distinguished_name", r->x509_issuer);
		obj_close(b);
	}
	if (r->x509_serial != NULL)
		kv_str(b, "serial_number", r->x509_serial);
	if (r->x509_not_before > 0)
		kv_time(b, "not_before", (uint64_t)r->x509_not_before * 1000000000u);
	if (r->x509_not_after > 0)
		kv_time(b, "not_after", (uint64_t)r->x509_not_after * 1000000000u);
	size_t ns = r->n_x509_sans < 16 ? r->n_x509_sans : 16;
	if (ns > 0)
		kv_strs(b, "alternative_names", r->x509_sans, ns);
	obj_close(b);
}

static void put_details(struct jbuf *b, const struct audit_rec *r)
{
	if (r->method != NULL || r->status > 0) {
		obj_open(b, "http");
		if (r->method != NULL) {
			obj_open(b, "request");
			kv_str(b, "method", r->method);
			obj_close(b);
		}
		if (r->status > 0) {
			obj_open(b, "response");
			kv_u64(b, "status_code", (uint64_t)r->status);
			obj_close(b);
		}
		obj_close(b);
	}
	if (r->sni != NULL || r->tls_version != NULL || r->tls_next_protocol != NULL ||
	    r->x509_subject != NULL) {
		obj_open(b, "tls");
		if (r->tls_version != NULL) {
			kv_str(b, "version", r->tls_version);
			kv_str(b, "version_protocol", "tls");
		}
		if (r->tls_next_protocol != NULL)
			kv_str(b, "next_protocol", r->tls_next_protocol);
		if (r->sni != NULL || r->x509_subject != NULL) {
			obj_open(b, "client");
			if (r->sni != NULL)
				kv_str(b, "server_name", r->sni);
			if (r->x509_subject != NULL)
				put_x509(b, r);
			obj_close(b);
		}
		obj_close(b);
	}
	if (r->user_id != NULL) {
		obj_open(b, "related");
		key(b, "user");
		put(b, "[", 1);
		put_str(b, r->user_id);
		put(b, "]", 1);
		obj_close(b);
	}
	if (r->url_domain != NULL || r->url_path != NULL) {
		obj_open(b, "url");
		if (r->url_domain != NULL)
			kv_str(b, "domain", r->url_domain);
		if (r->url_path != NULL)
			kv_str(b, "path", r->url_path);
		if (r->url_port != 0)
			kv_u64(b, "port", r->url_port);
		obj_close(b);
	}
	if (r->rule != NULL || r->tier != NULL) {
		obj_open(b, "rule");
		if (r->rule != NULL)
			kv_str(b, "name", r->rule);
		if (r->tier != NULL)
			kv_str(b, "ruleset", r->tier);
		obj_close(b);
	}
	if (r->pod_name != NULL) {
		obj_open(b, "orchestrator");
		if (r->pod_ns != NULL)
			kv_str(b, "namespace", r->pod_ns);
		obj_open(b, "resource");
		kv_str(b, "type", "pod");
		kv_str(b, "name", r->pod_name);
		if (r->pod_uid != NULL)
			kv_str(b, "id", r->pod_uid);
		size_t nl = r->n_pod_labels < 8 ? r->n_pod_labels : 8;
		if (nl > 0) {
			key(b, "label"); /* ECS keyword array of "key:value" */
			put(b, "[", 1);
			for (size_t i = 0; i < nl; i++) {
				char kv[512];
				snprintf(kv, sizeof(kv), "%s:%s", r->pod_label_keys[i],
				         r->pod_label_values[i]);
				if (i > 0)
					put(b, ",", 1);
				put_str(b, kv);
			}
			put(b, "]", 1);
		}
		obj_close(b);
		obj_close(b);
	}
	if (r->would_deny != NULL || r->aggregated > 0) {
		obj_open(b, "labels");
		if (r->would_deny != NULL)
			kv_str(b, "would_deny", r->would_deny);
		if (r->aggregated > 0) {
			char n[24];
			snprintf(n, sizeof(n), "%llu", (unsigned long long)r->aggregated);
			kv_str(b, "aggregated_refusals", n); /* ECS labels are keywords */
			if (r->aggregated_overflow)
				kv_str(b, "aggregated_scope", "many-sources");
		}
		obj_close(b);
	}
}

size_t audit_format(const struct audit_rec *r, const char *hostname, char *buf, size_t n)
{
	struct jbuf b = {.p = buf, .n = n};
	if (r == NULL || buf == NULL || n == 0)
		return 0;
	put(&b, "{", 1);
	kv_time(&b, "@timestamp", r->ts_ns);
	obj_open(&b, "ecs");
	kv_str(&b, "version", "9.4.0");
	obj_close(&b);
	put_event(&b, r);
	put_endpoints(&b, r);
	put_details(&b, r);
	obj_open(&b, "observer");
	if (hostname != NULL)
		kv_str(&b, "hostname", hostname);
	kv_str(&b, "product", "portcullis");
	kv_str(&b, "vendor", "portcullis");
	kv_str(&b, "type", "proxy");
	kv_str(&b, "version", PORTCULLIS_VERSION);
	obj_close(&b);
	put(&b, "}\n", 2);
	if (b.full)
		return 0;
	buf[b.len] = '\0';
	return b.len;
}

/* ---- the writer ---- */

struct audit_log {
	int fd;
	bool is_stdout;
	char *path;
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* records queued, or stop */
	char *ring;        /* complete lines, head..head+used (mod cap) */
	size_t cap;
	size_t head;            /* under mu */
	size_t used;            /* under mu; includes the batch being written */
	atomic_size_t used_pub; /* copy of used + reserved for audit_log_available */
	size_t reserved;        /* under mu: room promised to records to come (allowed exchanges) */
	atomic_size_t queued_pub; /* copy of used for audit_log_pressed */
	bool idle;              /* under mu: the writer waits for a first record (wake it) */
	bool lingering;         /* under mu: the writer collects a batch (wake it when it is big) */
	size_t batch;           /* a batch this big is written at once (AUDIT_BATCH_BYTES, cap / 4) */
	atomic_bool stop;       /* destroy asked the writer to flush and exit */
	atomic_int reopen;      /* set by audit_log_reopen; async-signal-safe */
	atomic_ullong dropped;
	atomic_ullong write_errors;
	atomic_int last_errno;
	unsigned long long reopen_not_before_ms; /* writer only: back-off after a failed open */
};

static unsigned long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000ULL +
	       (unsigned long long)ts.tv_nsec / 1000000ULL;
}

static int open_output(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

/* Writer thread: between two batches, so no line is ever split across files. */
static void maybe_reopen(struct audit_log *l)
{
	if (atomic_load(&l->reopen) == 0 || l->is_stdout) {
		atomic_store(&l->reopen, 0);
		return;
	}
	unsigned long long now = mono_ms();
	if (now < l->reopen_not_before_ms)
		return;
	atomic_store(&l->reopen, 0);
	int fd = open_output(l->path);
	if (fd < 0) {
		/* Keep writing to the old file rather than lose records; retry in a second. */
		atomic_store(&l->last_errno, errno);
		atomic_fetch_add(&l->write_errors, 1);
		l->reopen_not_before_ms = now + 1000;
		atomic_store(&l->reopen, 1);
		return;
	}
	close(l->fd);
	l->fd = fd;
}

static size_t count_lines(const struct iovec *iov, int cnt)
{
	size_t n = 0;
	for (int i = 0; i < cnt; i++) {
		const char *p = iov[i].iov_base, *end = p + iov[i].iov_len;
		while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
			n++;
			p++;
		}
	}
	return n;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * Write the whole batch: loop over partial writes and EINTR; wait on EAGAIN;
 * retry other errors (the queue fills meanwhile and the proxy stops taking
 * connections).  Only after destroy, and after AUDIT_GIVE_UP_ERRORS failures
 * in a row, is the rest dropped (and counted).
 */
static void write_batch(struct audit_log *l, struct iovec *iov, int cnt)
{
	unsigned errors = 0;
	while (cnt > 0) {
		ssize_t w = writev(l->fd, iov, cnt);
		if (w > 0) {
			errors = 0;
			size_t left = (size_t)w;
			while (cnt > 0 && left >= iov[0].iov_len) {
				left -= iov[0].iov_len;
				iov++;
				cnt--;
			}
			if (cnt > 0) {
				iov[0].iov_base = (char *)iov[0].iov_base + left;
				iov[0].iov_len -= left;
			}
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = {.fd = l->fd, .events = POLLOUT};
			(void)poll(&pfd, 1, AUDIT_IDLE_WAKE_MS);
			continue;
		}
		atomic_store(&l->last_errno, w < 0 ? errno : EIO);
		atomic_fetch_add(&l->write_errors, 1);
		if (atomic_load(&l->stop) && ++errors >= AUDIT_GIVE_UP_ERRORS) {
			atomic_fetch_add(&l->dropped, count_lines(iov, cnt));
			return;
		}
		sleep_ms(AUDIT_ERROR_BACKOFF_MS);
		maybe_reopen(l); /* a rotation may cure it (e.g. file on a remounted volume) */
	}
}

static void deadline_ms(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Under mu: sleep until a record is queued (or stop), then give a batch AUDIT_BATCH_MS to grow. */
static void wait_for_records(struct audit_log *l)
{
	struct timespec ts;
	while (l->used == 0 && !atomic_load(&l->stop)) {
		deadline_ms(&ts, AUDIT_IDLE_WAKE_MS);
		l->idle = true;
		pthread_cond_timedwait(&l->cv, &l->mu, &ts);
		l->idle = false;
		if (atomic_load(&l->reopen) != 0 && l->used == 0) {
			pthread_mutex_unlock(&l->mu);
			maybe_reopen(l);
			pthread_mutex_lock(&l->mu);
		}
	}
	if (l->used == 0 || l->used >= l->batch || atomic_load(&l->stop))
		return;
	deadline_ms(&ts, AUDIT_BATCH_MS);
	l->lingering = true;
	while (l->used < l->batch && !atomic_load(&l->stop) &&
	       pthread_cond_timedwait(&l->cv, &l->mu, &ts) != ETIMEDOUT)
		;
	l->lingering = false;
}

static void *writer_main(void *arg)
{
	struct audit_log *l = arg;
	pthread_mutex_lock(&l->mu);
	for (;;) {
		wait_for_records(l);
		if (l->used == 0)
			break; /* stop, and everything is written */
		/* Take every queued line; producers only append after head + used. */
		size_t head = l->head, n = l->used;
		pthread_mutex_unlock(&l->mu);

		/* After taking the batch: lines queued after a reopen request go to the new file.
		 */
		maybe_reopen(l);
		struct iovec iov[2];
		size_t first = n < l->cap - head ? n : l->cap - head;
		iov[0].iov_base = l->ring + head;
		iov[0].iov_len = first;
		iov[1].iov_base = l->ring;
		iov[1].iov_len = n - first;
		write_batch(l, iov, n > first ? 2 : 1);

		pthread_mutex_lock(&l->mu);
		l->head = (head + n) % l->cap;
		l->used -= n;
		atomic_store(&l->used_pub, l->used + l->reserved);
		atomic_store(&l->queued_pub, l->used);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

static int start_writer(struct audit_log *l, char *errmsg, size_t errlen)
{
	pthread_condattr_t ca;
	sigset_t all, old;
	int rc = pthread_condattr_init(&ca);
	if (rc != 0)
		goto fail;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0)
		goto fail;
	/* No signal is ever delivered to the writer: SIGPIPE becomes EPIPE, SIGUSR1 goes to main.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&l->thread, NULL, writer_main, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		pthread_cond_destroy(&l->cv);
		goto fail;
	}
	l->started = true;
	return 0;
fail:
	snprintf(errmsg, errlen, "writer thread: %s", strerror(rc));
	return -1;
}

struct audit_log *audit_log_create(const char *output, size_t queue_bytes, char *errmsg,
                                   size_t errlen)
{
	struct audit_log *l = calloc(1, sizeof(*l));
	if (l == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return NULL;
	}
	l->fd = -1;
	if (pthread_mutex_init(&l->mu, NULL) != 0) {
		snprintf(errmsg, errlen, "mutex: %s", strerror(errno));
		free(l);
		return NULL;
	}
	if (queue_bytes < 2) {
		snprintf(errmsg, errlen, "audit queue of %zu bytes is too small", queue_bytes);
		goto fail;
	}
	l->cap = queue_bytes;
	l->batch = queue_bytes / 4 < AUDIT_BATCH_BYTES ? queue_bytes / 4 : AUDIT_BATCH_BYTES;
	l->ring = malloc(queue_bytes);
	if (l->ring == NULL) {
		snprintf(errmsg, errlen, "audit queue of %zu bytes: out of memory", queue_bytes);
		goto fail;
	}
	if (output == NULL || strcmp(output, "-") == 0) {
		l->is_stdout = true;
		l->fd = STDOUT_FILENO;
		if (fcntl(l->fd, F_GETFL) < 0) {
			snprintf(errmsg, errlen, "stdout: %s", strerror(errno));
			goto fail;
		}
	} else {
		l->path = strdup(output);
		if (l->path == NULL) {
			snprintf(errmsg, errlen, "out of memory");
			goto fail;
		}
		l->fd = open_output(output);
		if (l->fd < 0) {
			snprintf(errmsg, errlen, "%s: %s", output, strerror(errno));
			goto fail;
		}
	}
	if (start_writer(l, errmsg, errlen) != 0)
		goto fail;
	return l;
fail:
	audit_log_destroy(l);
	return NULL;
}

/* The room for a record beyond what is promised to others: unreserved room (mu held). */
static size_t room(const struct audit_log *l)
{
	size_t taken = l->used + l->reserved;
	return taken < l->cap ? l->cap - taken : 0;
}

bool audit_log_reserve(struct audit_log *l, size_t bytes)
{
	if (l == NULL)
		return false;
	pthread_mutex_lock(&l->mu);
	/* The same line as audit_log_available: what is promised counts as queued. */
	bool ok = !atomic_load(&l->stop) && l->used + l->reserved + bytes < l->cap - l->cap / 10;
	if (ok) {
		l->reserved += bytes;
		atomic_store(&l->used_pub, l->used + l->reserved);
	}
	pthread_mutex_unlock(&l->mu);
	return ok;
}

void audit_log_unreserve(struct audit_log *l, size_t bytes)
{
	if (l == NULL || bytes == 0)
		return;
	pthread_mutex_lock(&l->mu);
	l->reserved -= bytes <= l->reserved ? bytes : l->reserved;
	atomic_store(&l->used_pub, l->used + l->reserved);
	pthread_mutex_unlock(&l->mu);
}

int audit_log_submit(struct audit_log *l, const char *line, size_t len)
{
	return audit_log_submit_reserved(l, line, len, 0);
}

int audit_log_submit_reserved(struct audit_log *l, const char *line, size_t len, size_t reserved)
{
	if (l == NULL || line == NULL) {
		audit_log_unreserve(l, reserved);
		return -1;
	}
	bool add_nl = len > 0 && line[len - 1] != '\n';
	size_t need = len + (add_nl ? 1 : 0);
	pthread_mutex_lock(&l->mu);
	/* The reservation is given back first: it is this record's room. */
	l->reserved -= reserved <= l->reserved ? reserved : l->reserved;
	if (len == 0) {
		atomic_store(&l->used_pub, l->used + l->reserved);
		pthread_mutex_unlock(&l->mu);
		return 0;
	}
	if (atomic_load(&l->stop) || need > room(l)) {
		atomic_store(&l->used_pub, l->used + l->reserved);
		pthread_mutex_unlock(&l->mu);
		atomic_fetch_add(&l->dropped, 1);
		return -1;
	}
	size_t tail = (l->head + l->used) % l->cap;
	size_t first = len < l->cap - tail ? len : l->cap - tail;
	memcpy(l->ring + tail, line, first);
	memcpy(l->ring, line + first, len - first);
	if (add_nl)
		l->ring[(tail + len) % l->cap] = '\n';
	size_t before = l->used;
	l->used += need;
	atomic_store(&l->used_pub, l->used + l->reserved);
	atomic_store(&l->queued_pub, l->used);
	/*
	 * Wake the writer only when it sleeps with nothing queued, or when the
	 * batch it is collecting just grew big enough; otherwise it is writing
	 * and takes this record with the next batch.  One signal per wake-up.
	 */
	bool wake = (l->idle && before == 0) ||
		    (l->lingering && before < l->batch && l->used >= l->batch);
	if (wake)
		l->idle = false;
	pthread_mutex_unlock(&l->mu);
	if (wake)
		pthread_cond_signal(&l->cv);
	return 0;
}

bool audit_log_available(const struct audit_log *l)
{
	if (l == NULL)
		return false;
	return atomic_load(&l->used_pub) < l->cap - l->cap / 10;
}

bool audit_log_pressed(const struct audit_log *l)
{
	return l != NULL && atomic_load_explicit(&l->queued_pub, memory_order_relaxed) >= l->cap / 8;
}

void audit_log_reopen(struct audit_log *l)
{
	if (l != NULL)
		atomic_store(&l->reopen, 1);
}

void audit_log_destroy(struct audit_log *l)
{
	if (l == NULL)
		return;
	if (l->started) {
		pthread_mutex_lock(&l->mu);
		atomic_store(&l->stop, true);
		pthread_mutex_unlock(&l->mu);
		pthread_cond_signal(&l->cv);
		pthread_join(l->thread, NULL);
		pthread_cond_destroy(&l->cv);
	}
	if (!l->is_stdout && l->fd >= 0)
		close(l->fd);
	pthread_mutex_destroy(&l->mu);
	free(l->ring);
	free(l->path);
	free(l);
}

uint64_t audit_log_dropped(const struct audit_log *l)
{
	return l ? atomic_load(&l->dropped) : 0;
}

uint64_t audit_log_write_errors(const struct audit_log *l)
{
	return l ? atomic_load(&l->write_errors) : 0;
}

int audit_log_last_errno(const struct audit_log *l)
{
	return l ? atomic_load(&l->last_errno) : 0;
}
