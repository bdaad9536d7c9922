/* Audit log: one writer thread that writes whole lines (the formats: audit_ecs.c). */
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
#include <sys/random.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "thread.h"

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
	atomic_ullong next_id; /* audit_log_next_id */
	uint64_t id_prefix;    /* random, drawn at create */
	enum audit_format format; /* set once at start-up, before any worker runs */
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
	thread_role("pc-audit", 1);
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
	/* Ids only need to differ between processes: no entropy is waited for. */
	if (getrandom(&l->id_prefix, sizeof(l->id_prefix), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(l->id_prefix)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		l->id_prefix = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
		               ((uint64_t)getpid() << 32);
	}
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

uint64_t audit_log_next_id(struct audit_log *l)
{
	return l ? atomic_fetch_add_explicit(&l->next_id, 1, memory_order_relaxed) + 1 : 0;
}

uint64_t audit_log_id_prefix(const struct audit_log *l)
{
	return l ? l->id_prefix : 0;
}

void audit_log_set_format(struct audit_log *l, enum audit_format f)
{
	if (l != NULL)
		l->format = f;
}

enum audit_format audit_log_format(const struct audit_log *l)
{
	return l ? l->format : AUDIT_FMT_ECS;
}
