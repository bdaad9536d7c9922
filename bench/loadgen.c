/* bench load generator: tunnel setup rate and latency (closed and open loop), TLS setup, HTTPS
 * requests through an intercepting proxy, bulk throughput, idle tunnels. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/*
 * One thread, one libevent loop, a fixed set of connection slots; each slot
 * runs the scenario's state machine over non-blocking sockets and loops
 * back to a fresh connection as soon as one finishes (closed loop: the
 * concurrency is fixed), except in the open scenario, where a schedule
 * starts them.  Results are one JSON object per line on stdout.
 *
 *   setup  connect, CONNECT host:port (unless --direct), read the 200,
 *          64-byte echo round trip, close.  Rate and latency of the whole.
 *   open   the same exchange in an open loop: arrival k is due at
 *          t0 + k/--rate whatever the earlier ones are doing (a timerfd on
 *          absolute CLOCK_MONOTONIC times, so the schedule is not rounded
 *          to epoll's milliseconds), each on a free slot of a --pool; an
 *          arrival that finds no free slot is counted as missed, not
 *          queued.  Latency runs from the scheduled arrival time, not from
 *          when the loadgen got round to it (no coordinated omission).
 *          Arrivals stop at --duration; those in flight are waited for (up
 *          to --timeout each), so the slow tail is not dropped.
 *   tls    the same with a TLS handshake (SNI host) inside the tunnel and
 *          the echo through TLS.
 *   icpt   HTTPS requests through a tunnel, as a client of an intercepting
 *          proxy sees them: TLS inside the tunnel (SNI host, ALPN http/1.1,
 *          the certificate verified against --cafile for the name host, no
 *          resumption), then --requests K requests `GET --path` one after
 *          the other on that connection (keep-alive), each response read
 *          whole (status 200, Content-Length body), then close.  The rate
 *          and latencies count requests: the first request's latency runs
 *          from the connect (it includes the TCP, CONNECT and TLS set-up a
 *          client pays for it), the others' from when they were sent.
 *   bulk   --streams tunnels moving bytes one way (--direction down: the
 *          upstream's source port sends; up: we send to its sink port)
 *          for --duration; throughput over the window after --warmup.
 *          Zero-copy by default (sendfile(2) out, recv(MSG_TRUNC) in);
 *          --copy moves the bytes through user space like a real client.
 *   idle   open --tunnels tunnels (CONNECT + one echo, so every tunnel is
 *          relaying), print {"event":"idle_ready",...}, hold them for
 *          --hold seconds, then check each with one more echo.
 *
 * --proxy-tls: the proxy is an https:// proxy (a TLS listener): a TLS
 * handshake with it comes first, everything after it goes through that
 * session (the tls scenario's inner handshake too, TLS inside TLS), and bulk
 * copies through user space (no sendfile through TLS).  Not for idle.
 */

#define ECHO_LEN 64
#define BULK_CHUNK (4u << 20)
#define BULK_FILE_BYTES (16u << 20)
#define COPY_CHUNK (256u << 10)
#define RESP_MAX 1024
#define SWEEP_MS 200

enum scenario { SC_SETUP, SC_TLS, SC_BULK, SC_IDLE, SC_ICPT };

enum st {
	ST_FREE,       /* no connection */
	ST_CONNECTING, /* TCP connect in progress */
	ST_PROXY_HS,   /* --proxy-tls: TLS handshake with the proxy */
	ST_SEND_REQ,   /* writing the CONNECT request */
	ST_READ_RESP,  /* reading the proxy's response head */
	ST_TLS_HS,     /* TLS handshake inside the tunnel */
	ST_SEND_ECHO,  /* writing the echo payload */
	ST_READ_ECHO,  /* reading it back */
	ST_BULK,       /* moving bulk bytes */
	ST_IDLE,       /* holding an open tunnel */
	ST_DEAD,       /* idle scenario: this tunnel failed */
	ST_SEND_HTTP,  /* icpt: writing a request */
	ST_READ_HTTP,  /* icpt: reading its response */
};

static const char *const st_names[] = {"free",      "connecting", "proxy_tls", "send_req",
				       "read_resp", "tls",        "send_echo", "read_echo",
				       "bulk",      "idle",       "dead",      "send_http",
				       "read_http"};

struct slot {
	struct lg *lg;
	int fd;
	SSL *ssl;  /* TLS inside the tunnel (the tls scenario) */
	SSL *pssl; /* --proxy-tls: TLS to the proxy; ssl runs over it */
	enum st st;
	struct event *ev;
	bool ev_pending;
	bool verifying;   /* idle: the final echo check */
	bool counted;     /* open: this arrival was scheduled inside the measurement window */
	uint64_t t_start; /* open: the scheduled arrival time */
	uint64_t t_began, t_conn, t_up; /* --trace: slot_start ran, TCP connected, tunnel up */
	uint64_t t_req;   /* icpt: when the current request's latency started */
	int reqs;         /* icpt: requests completed on this connection */
	uint64_t body_left; /* icpt: response body bytes still to read */
	size_t off;
	size_t blen;
	off_t foff;
	char buf[RESP_MAX];
};

struct lg {
	/* configuration */
	enum scenario sc;
	bool via_proxy;
	bool proxy_tls; /* the proxy is an https:// proxy */
	struct sockaddr_in peer; /* the proxy, or the upstream when direct */
	char host[256];
	int port;
	int concurrency;
	double duration, warmup, hold, timeout;
	FILE *trace; /* --trace: one line per exchange counted in the latencies */
	int tunnels, open_inflight;
	bool upload;
	bool copy; /* bulk: copy through user space like an ordinary client (no sendfile/MSG_TRUNC) */
	bool open; /* setup exchange, open loop (--scenario open, or --rate) */
	double rate; /* open: arrivals per second */
	int pool;    /* open: connection slots */
	int requests; /* icpt: requests per connection */
	const char *cafile; /* icpt: verify the server's certificate against this bundle */
	char path[512];     /* icpt: the request target */
	char req[1024];     /* icpt: the request, formatted once */
	size_t req_len;
	char tags[1024];
	/* state */
	struct event_base *base;
	SSL_CTX *tls;
	SSL_CTX *ptls; /* --proxy-tls */
	int memfd;
	char *trunc_buf;
	struct slot *slots;
	int n_slots;
	uint64_t t0, t_warm, t_end;
	bool stopping;
	/* results */
	uint64_t done_total, done_window, errors;
	uint64_t sessions_total; /* icpt: connections that completed all their requests */
	uint64_t bytes_total, bytes_window;
	uint64_t *lat;
	size_t n_lat, cap_lat;
	char first_error[160];
	/* open loop */
	int tfd;
	struct event *arrive_ev;
	uint64_t next_k;
	bool arrivals_over;
	int *free_idx;
	int n_free;
	uint64_t arrivals_window, missed_window, missed_total;
	uint64_t *lag; /* how late each in-window arrival was started, against its schedule */
	size_t n_lag, cap_lag;
	/* idle */
	int next_open, n_open_inflight, opened, failed, alive, checked, dropped;
	uint64_t t_ready;
	struct event *hold_ev;
	struct event *sweep_ev;
	struct event *end_ev;
};

static void slot_step(struct slot *s);
static void slot_start(struct slot *s);

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t sec_ns(double s)
{
	return (uint64_t)(s * 1e9);
}

/* ---- slot plumbing ---- */

static void ev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct slot *s = arg;
	(void)fd;
	(void)what;
	s->ev_pending = false;
	slot_step(s);
}

static void arm(struct slot *s, short what)
{
	if (s->ev_pending)
		event_del(s->ev);
	event_assign(s->ev, s->lg->base, s->fd, what, ev_cb, s);
	event_add(s->ev, NULL);
	s->ev_pending = true;
}

static void slot_teardown(struct slot *s)
{
	if (s->ev_pending) {
		event_del(s->ev);
		s->ev_pending = false;
	}
	if (s->ssl != NULL) {
		SSL_shutdown(s->ssl); /* close_notify, not waiting for the peer's */
		SSL_free(s->ssl);     /* its BIO over pssl does not free pssl */
		s->ssl = NULL;
	}
	if (s->pssl != NULL) {
		SSL_shutdown(s->pssl);
		SSL_free(s->pssl);
		s->pssl = NULL;
	}
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
}

static void note_error(struct lg *lg, const struct slot *s, const char *what, int err)
{
	lg->errors++;
	if (lg->first_error[0] == '\0')
		snprintf(lg->first_error, sizeof(lg->first_error), "%s in state %s%s%s", what,
			 st_names[s->st], err ? ": " : "", err ? strerror(err) : "");
}

static void open_next(struct lg *lg);
static void open_release(struct slot *s);

static void restart_cb(evutil_socket_t fd, short what, void *arg)
{
	struct slot *s = arg;
	(void)fd;
	(void)what;
	if (s->st == ST_FREE && !s->lg->stopping)
		slot_start(s);
}

/* One connection of a scenario failed: record it and go on. */
static void slot_fail(struct slot *s, const char *what, int err)
{
	struct lg *lg = s->lg;
	bool was_idle_open = lg->sc == SC_IDLE && !s->verifying && s->st != ST_IDLE;
	bool was_verify = lg->sc == SC_IDLE && s->verifying;
	bool was_idle_hold = lg->sc == SC_IDLE && !s->verifying && s->st == ST_IDLE;
	note_error(lg, s, what, err);
	slot_teardown(s);
	if (lg->sc != SC_IDLE) {
		s->st = ST_FREE;
		if (lg->open) {
			open_release(s);
			return;
		}
		/* Restart from the loop, not from here: a connect that fails at once must not recurse. */
		if (!lg->stopping) {
			struct timeval zero = {0, 0};
			event_base_once(lg->base, -1, EV_TIMEOUT, restart_cb, s, &zero);
		}
		return;
	}
	s->st = ST_DEAD;
	if (was_idle_open) {
		lg->failed++;
		lg->n_open_inflight--;
		open_next(lg);
	} else if (was_verify) {
		lg->checked++;
		if (lg->checked == lg->opened - lg->dropped)
			event_base_loopexit(lg->base, NULL);
	} else if (was_idle_hold) {
		lg->dropped++;
	}
}

/* ---- I/O helpers: plain or TLS; >0 bytes, 0 would block (armed), <0 failed (slot gone) ---- */

static SSL *io_ssl(const struct slot *s)
{
	return s->ssl != NULL ? s->ssl : s->pssl;
}

static ssize_t io_send(struct slot *s, const char *p, size_t n)
{
	SSL *ssl = io_ssl(s);
	if (ssl == NULL) {
		ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL);
		if (w >= 0)
			return w;
		if (errno == EAGAIN || errno == EINTR) {
			arm(s, EV_WRITE);
			return 0;
		}
		slot_fail(s, "send", errno);
		return -1;
	}
	ERR_clear_error();
	int w = SSL_write(ssl, p, (int)n);
	if (w > 0)
		return w;
	int e = SSL_get_error(ssl, w);
	if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
		arm(s, e == SSL_ERROR_WANT_WRITE ? EV_WRITE : EV_READ);
		return 0;
	}
	slot_fail(s, "SSL_write", 0);
	return -1;
}

static ssize_t io_recv(struct slot *s, char *p, size_t n)
{
	SSL *ssl = io_ssl(s);
	if (ssl == NULL) {
		ssize_t r = recv(s->fd, p, n, 0);
		if (r > 0)
			return r;
		if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			arm(s, EV_READ);
			return 0;
		}
		slot_fail(s, r == 0 ? "unexpected EOF" : "recv", r == 0 ? 0 : errno);
		return -1;
	}
	ERR_clear_error();
	int r = SSL_read(ssl, p, (int)n);
	if (r > 0)
		return r;
	int e = SSL_get_error(ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		arm(s, e == SSL_ERROR_WANT_WRITE ? EV_WRITE : EV_READ);
		return 0;
	}
	char what[120];
	snprintf(what, sizeof(what), "SSL_read: %s",
		 e == SSL_ERROR_ZERO_RETURN ? "close_notify"
		 : e == SSL_ERROR_SYSCALL   ? "EOF or socket error"
		 : ERR_peek_error() != 0    ? ERR_reason_error_string(ERR_peek_error())
					    : "SSL error");
	slot_fail(s, what, 0);
	return -1;
}

/* ---- the state machine ---- */

static void slot_start(struct slot *s)
{
	struct lg *lg = s->lg;
	if (!lg->open)
		s->t_start = now_ns(); /* open: the arrival's scheduled time, set by the caller */
	s->t_began = lg->trace != NULL ? now_ns() : 0;
	s->t_conn = s->t_up = 0;
	s->off = s->blen = 0;
	s->verifying = false;
	s->reqs = 0;
	s->st = ST_CONNECTING;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		slot_fail(s, "socket", errno);
		return;
	}
	int one = 1;
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s->fd, (const struct sockaddr *)&lg->peer, sizeof(lg->peer)) != 0 &&
	    errno != EINPROGRESS) {
		slot_fail(s, "connect", errno);
		return;
	}
	arm(s, EV_WRITE);
}

static void begin_echo(struct slot *s)
{
	for (size_t i = 0; i < ECHO_LEN; i++)
		s->buf[i] = (char)('a' + (i + (size_t)s->t_start) % 26);
	s->off = 0;
	s->st = ST_SEND_ECHO;
}

static void begin_tls(struct slot *s)
{
	s->ssl = SSL_new(s->lg->tls);
	bool io_ok = false;
	if (s->ssl != NULL && s->pssl == NULL) {
		io_ok = SSL_set_fd(s->ssl, s->fd) == 1;
	} else if (s->ssl != NULL) {
		/* TLS inside TLS: the inner session reads and writes through the outer one. */
		BIO *b = BIO_new(BIO_f_ssl());
		if (b != NULL) {
			BIO_set_ssl(b, s->pssl, BIO_NOCLOSE);
			SSL_set_bio(s->ssl, b, b);
			io_ok = true;
		}
	}
	if (io_ok && s->lg->cafile != NULL && SSL_set1_host(s->ssl, s->lg->host) != 1)
		io_ok = false;
	if (!io_ok || SSL_set_tlsext_host_name(s->ssl, s->lg->host) != 1) {
		slot_fail(s, "SSL_new", 0);
		return;
	}
	s->st = ST_TLS_HS;
}

/* The tunnel (or the direct connection) is up. */
static void tunnel_up(struct slot *s)
{
	struct lg *lg = s->lg;
	if (lg->trace != NULL)
		s->t_up = now_ns();
	switch (lg->sc) {
	case SC_SETUP:
	case SC_IDLE: begin_echo(s); break;
	case SC_TLS:
	case SC_ICPT: begin_tls(s); break;
	case SC_BULK: s->st = ST_BULK; s->foff = 0; break;
	}
}

static void push_sample(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 65536;
		uint64_t *nv = realloc(*v, nc * sizeof(*nv));
		if (nv == NULL)
			return; /* out of memory: this sample is lost, the run goes on */
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = x;
}

static void iteration_done(struct slot *s)
{
	struct lg *lg = s->lg;
	uint64_t t = now_ns();
	slot_teardown(s);
	s->st = ST_FREE;
	lg->done_total++;
	/* Closed loop: what completed inside the window.  Open loop: what was scheduled inside
	 * it, however late it completed (the arrivals in flight at the end are waited for). */
	bool in = lg->open ? s->counted : t >= lg->t_warm && t <= lg->t_end;
	if (in) {
		lg->done_window++;
		push_sample(&lg->lat, &lg->n_lat, &lg->cap_lat, t - s->t_start);
		if (lg->trace != NULL) /* µs: when it was due (CLOCK_MONOTONIC), then each step */
			fprintf(lg->trace, "%.1f %.1f %.1f %.1f %.1f\n", (double)s->t_start / 1e3,
			        (double)(s->t_began - s->t_start) / 1e3,
			        (double)(s->t_conn - s->t_start) / 1e3,
			        (double)(s->t_up - s->t_start) / 1e3,
			        (double)(t - s->t_start) / 1e3);
	}
	if (lg->open)
		open_release(s);
	else if (!lg->stopping)
		slot_start(s);
}

static void idle_opened(struct slot *s)
{
	struct lg *lg = s->lg;
	if (s->verifying) {
		lg->alive++;
		lg->checked++;
		slot_teardown(s);
		s->st = ST_FREE;
		if (lg->checked == lg->opened - lg->dropped)
			event_base_loopexit(lg->base, NULL);
		return;
	}
	s->st = ST_IDLE;
	arm(s, EV_READ); /* anything readable now means the proxy dropped the tunnel */
	lg->opened++;
	lg->n_open_inflight--;
	open_next(lg);
}

static bool send_connect(struct slot *s);

static bool step_connecting(struct slot *s)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err != 0) {
		slot_fail(s, "connect", err);
		return false;
	}
	if (s->lg->trace != NULL)
		s->t_conn = now_ns();
	if (!s->lg->via_proxy) {
		tunnel_up(s);
		return true;
	}
	if (s->lg->proxy_tls && s->pssl == NULL) {
		s->pssl = SSL_new(s->lg->ptls);
		if (s->pssl == NULL || SSL_set_fd(s->pssl, s->fd) != 1) {
			slot_fail(s, "SSL_new (proxy)", 0);
			return false;
		}
		SSL_set_connect_state(s->pssl);
		s->st = ST_PROXY_HS;
		return true;
	}
	return send_connect(s);
}

/* --proxy-tls: the handshake with the proxy, then the CONNECT through it. */
static bool step_proxy_tls(struct slot *s)
{
	ERR_clear_error();
	int r = SSL_do_handshake(s->pssl);
	if (r == 1)
		return send_connect(s);
	int e = SSL_get_error(s->pssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		arm(s, e == SSL_ERROR_WANT_WRITE ? EV_WRITE : EV_READ);
		return false;
	}
	char what[120];
	snprintf(what, sizeof(what), "TLS handshake with the proxy: %s",
		 ERR_reason_error_string(ERR_peek_error()));
	slot_fail(s, what, 0);
	return false;
}

static bool send_connect(struct slot *s)
{
	int n = snprintf(s->buf, sizeof(s->buf), "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
			 s->lg->host, s->lg->port, s->lg->host, s->lg->port);
	s->blen = (size_t)n;
	s->off = 0;
	s->st = ST_SEND_REQ;
	return true;
}

/* Returns false when the slot is waiting or gone. */
static bool step_read_resp(struct slot *s)
{
	struct lg *lg = s->lg;
	ssize_t r = io_recv(s, s->buf + s->blen, sizeof(s->buf) - 1 - s->blen);
	if (r <= 0)
		return false;
	s->blen += (size_t)r;
	s->buf[s->blen] = '\0';
	char *end = strstr(s->buf, "\r\n\r\n");
	if (end == NULL) {
		if (s->blen >= sizeof(s->buf) - 1) {
			slot_fail(s, "response head too long", 0);
			return false;
		}
		return true;
	}
	if (strncmp(s->buf, "HTTP/1.", 7) != 0 || strncmp(s->buf + 8, " 200", 4) != 0) {
		char what[64];
		snprintf(what, sizeof(what), "proxy answered %.12s", s->buf);
		slot_fail(s, what, 0);
		return false;
	}
	size_t extra = s->blen - (size_t)(end + 4 - s->buf);
	if (extra > 0) {
		if (lg->sc != SC_BULK || lg->upload) {
			slot_fail(s, "bytes after the 200", 0);
			return false;
		}
		lg->bytes_total += extra;
	}
	tunnel_up(s);
	return true;
}

/* icpt: the next request on this connection; the first one's latency runs from the connect. */
static void begin_request(struct slot *s)
{
	s->t_req = s->reqs == 0 ? s->t_start : now_ns();
	s->off = s->blen = 0;
	s->body_left = UINT64_MAX; /* the head is not read yet */
	s->st = ST_SEND_HTTP;
}

/* icpt: a response was read whole. Returns true when the slot goes on with its next request. */
static bool request_done(struct slot *s)
{
	struct lg *lg = s->lg;
	uint64_t t = now_ns();
	s->reqs++;
	lg->done_total++;
	if (t >= lg->t_warm && t <= lg->t_end) {
		lg->done_window++;
		push_sample(&lg->lat, &lg->n_lat, &lg->cap_lat, t - s->t_req);
	}
	if (s->reqs < lg->requests) {
		begin_request(s);
		return true;
	}
	lg->sessions_total++;
	slot_teardown(s);
	s->st = ST_FREE;
	if (!lg->stopping)
		slot_start(s);
	return false;
}

/* icpt: read the response head (into buf), check it, then read and drop its body. */
static bool step_read_http(struct slot *s)
{
	static char scratch[16384];
	struct lg *lg = s->lg;
	if (s->body_left == UINT64_MAX) {
		ssize_t r = io_recv(s, s->buf + s->blen, sizeof(s->buf) - 1 - s->blen);
		if (r <= 0)
			return false;
		s->blen += (size_t)r;
		s->buf[s->blen] = '\0';
		char *end = strstr(s->buf, "\r\n\r\n");
		if (end == NULL) {
			if (s->blen >= sizeof(s->buf) - 1) {
				slot_fail(s, "response head too long", 0);
				return false;
			}
			return true;
		}
		char what[160];
		if (strncmp(s->buf, "HTTP/1.1 200 ", 13) != 0) {
			int n = (int)strcspn(s->buf, "\r\n");
			snprintf(what, sizeof(what), "response to request %d: %.*s", s->reqs + 1,
				 n > 100 ? 100 : n, s->buf);
			slot_fail(s, what, 0);
			return false;
		}
		long long cl = -1;
		bool conn_close = false;
		for (char *l = strstr(s->buf, "\r\n"); l != NULL && l < end; l = strstr(l + 2, "\r\n")) {
			const char *h = l + 2;
			if (strncasecmp(h, "content-length:", 15) == 0) {
				cl = strtoll(h + 15, NULL, 10);
			} else if (strncasecmp(h, "connection:", 11) == 0) {
				h += 11;
				h += strspn(h, " \t");
				conn_close = strncasecmp(h, "close", 5) == 0;
			}
		}
		size_t extra = s->blen - (size_t)(end + 4 - s->buf);
		if (cl < 0 || (unsigned long long)cl < extra) {
			slot_fail(s, cl < 0 ? "response without Content-Length" : "bytes after the response",
				  0);
			return false;
		}
		if (conn_close && s->reqs + 1 < lg->requests) {
			snprintf(what, sizeof(what), "Connection: close on response %d of %d", s->reqs + 1,
				 lg->requests);
			slot_fail(s, what, 0);
			return false;
		}
		s->body_left = (uint64_t)cl - extra;
	}
	while (s->body_left > 0) {
		size_t want = s->body_left < sizeof(scratch) ? (size_t)s->body_left : sizeof(scratch);
		ssize_t r = io_recv(s, scratch, want);
		if (r <= 0)
			return false;
		s->body_left -= (uint64_t)r;
	}
	return request_done(s);
}

static bool step_tls(struct slot *s)
{
	ERR_clear_error();
	int r = SSL_connect(s->ssl);
	if (r == 1) {
		if (s->lg->sc == SC_ICPT)
			begin_request(s);
		else
			begin_echo(s);
		return true;
	}
	int e = SSL_get_error(s->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		arm(s, e == SSL_ERROR_WANT_WRITE ? EV_WRITE : EV_READ);
		return false;
	}
	char what[160];
	long v = SSL_get_verify_result(s->ssl);
	snprintf(what, sizeof(what), "TLS handshake: %s%s%s", ERR_reason_error_string(ERR_peek_error()),
		 v != X509_V_OK ? ": " : "", v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
	slot_fail(s, what, 0);
	return false;
}

static bool step_read_echo(struct slot *s)
{
	ssize_t r = io_recv(s, s->buf + ECHO_LEN + s->off, ECHO_LEN - s->off);
	if (r <= 0)
		return false;
	s->off += (size_t)r;
	if (s->off < ECHO_LEN)
		return true;
	if (memcmp(s->buf, s->buf + ECHO_LEN, ECHO_LEN) != 0) {
		slot_fail(s, "echo mismatch", 0);
		return false;
	}
	if (s->lg->sc == SC_IDLE)
		idle_opened(s);
	else
		iteration_done(s);
	return false;
}

static void count_bytes(struct lg *lg, uint64_t n)
{
	lg->bytes_total += n;
	uint64_t t = now_ns();
	if (t >= lg->t_warm && t <= lg->t_end)
		lg->bytes_window += n;
}

static bool step_bulk(struct slot *s)
{
	struct lg *lg = s->lg;
	for (int i = 0; i < 64; i++) {
		ssize_t n;
		if (s->pssl != NULL) {
			/* Through the proxy's TLS session: always a copy (io_* arm or fail the slot). */
			n = lg->upload ? io_send(s, lg->trunc_buf, COPY_CHUNK)
				       : io_recv(s, lg->trunc_buf, COPY_CHUNK);
			if (n <= 0)
				return false;
			count_bytes(lg, (uint64_t)n);
			continue;
		}
		if (lg->copy) {
			n = lg->upload ? send(s->fd, lg->trunc_buf, COPY_CHUNK, MSG_NOSIGNAL)
				       : recv(s->fd, lg->trunc_buf, COPY_CHUNK, 0);
		} else if (lg->upload) {
			if (s->foff >= (off_t)BULK_FILE_BYTES)
				s->foff = 0;
			size_t want = BULK_FILE_BYTES - (size_t)s->foff;
			n = sendfile(s->fd, lg->memfd, &s->foff, want < BULK_CHUNK ? want : BULK_CHUNK);
		} else {
			/* MSG_TRUNC: TCP discards the bytes without copying them to us. */
			n = recv(s->fd, lg->trunc_buf, BULK_CHUNK, MSG_TRUNC);
		}
		if (n > 0) {
			count_bytes(lg, (uint64_t)n);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			arm(s, lg->upload ? EV_WRITE : EV_READ);
			return false;
		}
		slot_fail(s, n == 0 ? "bulk: unexpected EOF" : "bulk", n == 0 ? 0 : errno);
		return false;
	}
	/* Let the other streams have a turn. */
	arm(s, lg->upload ? EV_WRITE : EV_READ);
	return false;
}

/* Run the slot as far as it goes without blocking. */
static void slot_step(struct slot *s)
{
	for (;;) {
		ssize_t r;
		switch (s->st) {
		case ST_FREE:
		case ST_DEAD: return;
		case ST_CONNECTING:
			if (!step_connecting(s))
				return;
			break;
		case ST_PROXY_HS:
			if (!step_proxy_tls(s))
				return;
			break;
		case ST_SEND_REQ:
			r = io_send(s, s->buf + s->off, s->blen - s->off);
			if (r <= 0)
				return;
			s->off += (size_t)r;
			if (s->off == s->blen) {
				s->st = ST_READ_RESP;
				s->blen = 0;
				arm(s, EV_READ);
				return;
			}
			break;
		case ST_READ_RESP:
			if (!step_read_resp(s))
				return;
			break;
		case ST_TLS_HS:
			if (!step_tls(s))
				return;
			break;
		case ST_SEND_ECHO:
			r = io_send(s, s->buf + s->off, ECHO_LEN - s->off);
			if (r <= 0)
				return;
			s->off += (size_t)r;
			if (s->off == ECHO_LEN) {
				s->st = ST_READ_ECHO;
				s->off = 0;
				if (io_ssl(s) == NULL) {
					arm(s, EV_READ);
					return;
				}
			}
			break;
		case ST_READ_ECHO:
			if (!step_read_echo(s))
				return;
			break;
		case ST_SEND_HTTP:
			r = io_send(s, s->lg->req + s->off, s->lg->req_len - s->off);
			if (r <= 0)
				return;
			s->off += (size_t)r;
			if (s->off == s->lg->req_len) {
				s->st = ST_READ_HTTP;
				s->blen = 0;
			}
			break;
		case ST_READ_HTTP:
			if (!step_read_http(s))
				return;
			break;
		case ST_BULK:
			step_bulk(s);
			return;
		case ST_IDLE: {
			/* Readable while idle: EOF or reset from the proxy. */
			char c;
			ssize_t n = recv(s->fd, &c, 1, MSG_PEEK);
			if (n < 0 && errno == EAGAIN) {
				arm(s, EV_READ);
				return;
			}
			slot_fail(s, n == 0 ? "idle tunnel closed by the proxy" : "idle tunnel",
				  n < 0 ? errno : 0);
			return;
		}
		}
	}
}

/* ---- scenario drivers ---- */

static void open_next(struct lg *lg)
{
	static bool busy; /* a failure inside slot_start calls back here: the outer loop goes on */
	if (busy)
		return;
	busy = true;
	while (lg->n_open_inflight < lg->open_inflight && lg->next_open < lg->n_slots) {
		struct slot *s = &lg->slots[lg->next_open++];
		lg->n_open_inflight++;
		slot_start(s);
	}
	busy = false;
	if (lg->n_open_inflight == 0 && lg->next_open == lg->n_slots && lg->t_ready == 0) {
		lg->t_ready = now_ns();
		printf("{\"event\":\"idle_ready\",\"tunnels\":%d,\"opened\":%d,\"failed\":%d,"
		       "\"open_s\":%.3f%s}\n",
		       lg->tunnels, lg->opened, lg->failed, (double)(lg->t_ready - lg->t0) / 1e9,
		       lg->tags);
		fflush(stdout);
		struct timeval tv = {.tv_sec = (time_t)lg->hold,
				     .tv_usec = (suseconds_t)((lg->hold - floor(lg->hold)) * 1e6)};
		event_add(lg->hold_ev, &tv);
	}
}

static void hold_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lg *lg = arg;
	(void)fd;
	(void)what;
	/* Check every tunnel still held with one more echo round trip. */
	int todo = 0;
	for (int i = 0; i < lg->n_slots; i++) {
		struct slot *s = &lg->slots[i];
		if (s->st != ST_IDLE)
			continue;
		todo++;
		s->verifying = true;
		s->t_start = now_ns();
		begin_echo(s);
	}
	if (todo == 0) {
		event_base_loopexit(lg->base, NULL);
		return;
	}
	for (int i = 0; i < lg->n_slots; i++)
		if (lg->slots[i].st == ST_SEND_ECHO)
			slot_step(&lg->slots[i]);
}

/* ---- the open loop ---- */

static uint64_t arrival_ns(const struct lg *lg, uint64_t k)
{
	return lg->t0 + (uint64_t)((double)k * 1e9 / lg->rate);
}

static void arm_arrival(struct lg *lg, uint64_t t)
{
	struct itimerspec its = {.it_value = {.tv_sec = (time_t)(t / 1000000000ull),
					      .tv_nsec = (long)(t % 1000000000ull)}};
	if (timerfd_settime(lg->tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0) {
		perror("loadgen: timerfd_settime");
		exit(1);
	}
}

/* A slot is free again; after the last arrival, the run ends when none is in flight. */
static void open_release(struct slot *s)
{
	struct lg *lg = s->lg;
	lg->free_idx[lg->n_free++] = (int)(s - lg->slots);
	if (lg->arrivals_over && lg->n_free == lg->n_slots)
		event_base_loopexit(lg->base, NULL);
}

/* The timer fired: start every arrival that is due (a late wake-up starts several at once,
 * each still timed from its own schedule), then sleep until the next one. */
static void arrive_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lg *lg = arg;
	uint64_t expirations;
	(void)what;
	if (read(fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		perror("loadgen: timerfd read");
	for (;;) {
		uint64_t due = arrival_ns(lg, lg->next_k), now = now_ns();
		if (due >= lg->t_end) {
			lg->arrivals_over = true;
			event_del(lg->arrive_ev);
			if (lg->n_free == lg->n_slots)
				event_base_loopexit(lg->base, NULL);
			return;
		}
		if (due > now) {
			arm_arrival(lg, due);
			return;
		}
		lg->next_k++;
		bool in = due >= lg->t_warm;
		lg->arrivals_window += in;
		if (lg->n_free == 0) {
			lg->missed_total++;
			lg->missed_window += in;
			continue;
		}
		struct slot *s = &lg->slots[lg->free_idx[--lg->n_free]];
		s->counted = in;
		s->t_start = due;
		if (in)
			push_sample(&lg->lag, &lg->n_lag, &lg->cap_lag, now - due);
		slot_start(s);
	}
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lg *lg = arg;
	(void)fd;
	(void)what;
	uint64_t t = now_ns(), limit = sec_ns(lg->timeout);
	for (int i = 0; i < lg->n_slots; i++) {
		struct slot *s = &lg->slots[i];
		if (s->st == ST_FREE || s->st == ST_DEAD || s->st == ST_IDLE || s->st == ST_BULK)
			continue;
		if (t - s->t_start > limit)
			slot_fail(s, "timeout", 0);
	}
	/* Slots left free by a failed socket() get another chance here. */
	if (!lg->stopping && !lg->open &&
	    (lg->sc == SC_SETUP || lg->sc == SC_TLS || lg->sc == SC_ICPT))
		for (int i = 0; i < lg->n_slots; i++)
			if (lg->slots[i].st == ST_FREE)
				slot_start(&lg->slots[i]);
}

static void end_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lg *lg = arg;
	(void)fd;
	(void)what;
	lg->stopping = true;
	event_base_loopexit(lg->base, NULL);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t idx = (size_t)ceil(p * (double)n);
	idx = idx == 0 ? 0 : idx - 1;
	if (idx >= n)
		idx = n - 1;
	return (double)v[idx] / 1e3;
}

/* The open loop's line: completed, rate_per_s and the latencies count the arrivals scheduled
 * inside the window; completed_total, missed_total and errors the whole run, warm-up included. */
static void print_open(struct lg *lg, double win, const char *via)
{
	qsort(lg->lat, lg->n_lat, sizeof(*lg->lat), cmp_u64);
	qsort(lg->lag, lg->n_lag, sizeof(*lg->lag), cmp_u64);
	printf("{\"scenario\":\"open\",\"via\":\"%s\",\"rate\":%.1f,\"pool\":%d,"
	       "\"window_s\":%.3f,\"arrivals\":%llu,\"offered_per_s\":%.1f,"
	       "\"completed\":%llu,\"completed_total\":%llu,\"errors\":%llu,"
	       "\"missed\":%llu,\"missed_total\":%llu,\"rate_per_s\":%.1f,"
	       "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,"
	       "\"start_lag_p99_us\":%.1f,\"start_lag_max_us\":%.1f",
	       via, lg->rate, lg->n_slots, win, (unsigned long long)lg->arrivals_window,
	       (double)lg->arrivals_window / win, (unsigned long long)lg->done_window,
	       (unsigned long long)lg->done_total, (unsigned long long)lg->errors,
	       (unsigned long long)lg->missed_window, (unsigned long long)lg->missed_total,
	       (double)lg->done_window / win, pct_us(lg->lat, lg->n_lat, 0.50),
	       pct_us(lg->lat, lg->n_lat, 0.90), pct_us(lg->lat, lg->n_lat, 0.99),
	       pct_us(lg->lat, lg->n_lat, 1.0), pct_us(lg->lag, lg->n_lag, 0.99),
	       pct_us(lg->lag, lg->n_lag, 1.0));
}

static void report(struct lg *lg)
{
	double win = (double)(lg->t_end - lg->t_warm) / 1e9;
	const char *via = lg->via_proxy ? "proxy" : "direct";
	switch (lg->sc) {
	case SC_SETUP:
	case SC_TLS:
		if (lg->open) {
			print_open(lg, win, via);
			break;
		}
		qsort(lg->lat, lg->n_lat, sizeof(*lg->lat), cmp_u64);
		printf("{\"scenario\":\"%s\",\"via\":\"%s\",\"concurrency\":%d,\"window_s\":%.3f,"
		       "\"completed\":%llu,\"completed_total\":%llu,\"errors\":%llu,"
		       "\"rate_per_s\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
		       "\"max_us\":%.1f",
		       lg->sc == SC_TLS ? "tls" : "setup", via, lg->concurrency, win,
		       (unsigned long long)lg->done_window, (unsigned long long)lg->done_total,
		       (unsigned long long)lg->errors, (double)lg->done_window / win,
		       pct_us(lg->lat, lg->n_lat, 0.50), pct_us(lg->lat, lg->n_lat, 0.90),
		       pct_us(lg->lat, lg->n_lat, 0.99), pct_us(lg->lat, lg->n_lat, 1.0));
		break;
	case SC_ICPT:
		qsort(lg->lat, lg->n_lat, sizeof(*lg->lat), cmp_u64);
		printf("{\"scenario\":\"icpt\",\"via\":\"%s\",\"concurrency\":%d,"
		       "\"requests_per_conn\":%d,\"window_s\":%.3f,\"completed\":%llu,"
		       "\"completed_total\":%llu,\"sessions_total\":%llu,\"errors\":%llu,"
		       "\"rate_per_s\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
		       "\"max_us\":%.1f",
		       via, lg->concurrency, lg->requests, win, (unsigned long long)lg->done_window,
		       (unsigned long long)lg->done_total, (unsigned long long)lg->sessions_total,
		       (unsigned long long)lg->errors, (double)lg->done_window / win,
		       pct_us(lg->lat, lg->n_lat, 0.50), pct_us(lg->lat, lg->n_lat, 0.90),
		       pct_us(lg->lat, lg->n_lat, 0.99), pct_us(lg->lat, lg->n_lat, 1.0));
		break;
	case SC_BULK:
		printf("{\"scenario\":\"bulk\",\"via\":\"%s\",\"direction\":\"%s\",\"streams\":%d,"
		       "\"window_s\":%.3f,\"bytes\":%llu,\"bytes_total\":%llu,\"errors\":%llu,"
		       "\"mib_per_s\":%.1f",
		       via, lg->upload ? "up" : "down", lg->n_slots, win,
		       (unsigned long long)lg->bytes_window, (unsigned long long)lg->bytes_total,
		       (unsigned long long)lg->errors, (double)lg->bytes_window / win / 1048576.0);
		break;
	case SC_IDLE:
		printf("{\"scenario\":\"idle\",\"via\":\"%s\",\"tunnels\":%d,\"opened\":%d,"
		       "\"failed\":%d,\"dropped\":%d,\"alive\":%d,\"errors\":%llu,\"open_s\":%.3f,"
		       "\"hold_s\":%.3f",
		       via, lg->tunnels, lg->opened, lg->failed, lg->dropped, lg->alive,
		       (unsigned long long)lg->errors,
		       lg->t_ready ? (double)(lg->t_ready - lg->t0) / 1e9 : 0.0, lg->hold);
		break;
	}
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		printf(",\"loadgen_cpu_s\":%.3f",
		       (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
			       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	if (lg->first_error[0]) {
		printf(",\"first_error\":\"");
		for (const char *p = lg->first_error; *p; p++)
			putchar(*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 ? '?' : *p);
		putchar('"');
	}
	printf("%s}\n", lg->tags);
	fflush(stdout);
}

/* ---- set-up ---- */

static void add_tag(struct lg *lg, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (eq == NULL || eq == kv)
		return;
	size_t used = strlen(lg->tags);
	int n = snprintf(lg->tags + used, sizeof(lg->tags) - used, ",\"%.*s\":\"%s\"",
			 (int)(eq - kv), kv, eq + 1);
	if (n < 0 || (size_t)n >= sizeof(lg->tags) - used)
		lg->tags[used] = '\0';
}

static bool parse_addr(const char *s, struct sockaddr_in *out)
{
	char ip[64];
	const char *colon = strrchr(s, ':');
	if (colon == NULL || (size_t)(colon - s) >= sizeof(ip))
		return false;
	memcpy(ip, s, (size_t)(colon - s));
	ip[colon - s] = '\0';
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	int port = atoi(colon + 1);
	if (port <= 0 || port > 65535 || inet_pton(AF_INET, ip, &out->sin_addr) != 1)
		return false;
	out->sin_port = htons((uint16_t)port);
	return true;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: loadgen --scenario setup|open|tls|icpt|bulk|idle (--proxy IP:PORT | --direct IP)\n"
		"               --host NAME --port PORT [--concurrency N] [--duration S]\n"
		"               [--rate R] [--pool N]\n"
		"               [--warmup S] [--streams N] [--direction up|down] [--tunnels N]\n"
		"               [--hold S] [--open-inflight N] [--timeout S] [--copy] [--proxy-tls]\n"
		"               [--requests K] [--cafile FILE] [--path PATH] [--tag KEY=VALUE]...\n"
		"               [--trace FILE]\n"
		"  --copy: bulk bytes go through user space (recv/send of 256 KiB) instead of\n"
		"          sendfile(2) and recv(MSG_TRUNC)\n"
		"  --rate R: open loop (setup's exchange): R arrivals per second on a fixed schedule,\n"
		"          each on a free slot of --pool N (default 512); no free slot: missed\n"
		"  --trace FILE: setup, open, tls: one line per exchange counted in the latencies,\n"
		"          µs: due (CLOCK_MONOTONIC), then from due: started, TCP connected,\n"
		"          tunnel up (the 200 read; direct: connected), done\n"
		"  icpt: HTTPS through the tunnel, K requests `GET PATH` (default /bench/1k) per\n"
		"          connection, keep-alive; --cafile: verify the server certificate (name --host)\n"
		"       loadgen --version\n");
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int setup_bulk(struct lg *lg)
{
	lg->trunc_buf = mmap(NULL, BULK_CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			     -1, 0);
	if (lg->trunc_buf == MAP_FAILED)
		return -1;
	memset(lg->trunc_buf, 'U', BULK_CHUNK); /* never 0x16: not a TLS handshake */
	if (!lg->upload || lg->copy)
		return 0;
	lg->memfd = memfd_create("bench-upload", MFD_CLOEXEC);
	if (lg->memfd < 0)
		return -1;
	static char blk[1 << 16];
	memset(blk, 'U', sizeof(blk)); /* never 0x16: not a TLS handshake */
	for (size_t done = 0; done < BULK_FILE_BYTES; done += sizeof(blk))
		if (write(lg->memfd, blk, sizeof(blk)) != (ssize_t)sizeof(blk))
			return -1;
	return 0;
}

static int parse_args(struct lg *lg, int argc, char **argv)
{
	static const struct option opts[] = {
		{"scenario", required_argument, NULL, 'S'},  {"proxy", required_argument, NULL, 'P'},
		{"direct", required_argument, NULL, 'D'},    {"host", required_argument, NULL, 'H'},
		{"port", required_argument, NULL, 'p'},      {"concurrency", required_argument, NULL, 'c'},
		{"duration", required_argument, NULL, 'd'},  {"warmup", required_argument, NULL, 'w'},
		{"streams", required_argument, NULL, 'n'},   {"direction", required_argument, NULL, 'r'},
		{"tunnels", required_argument, NULL, 'N'},   {"hold", required_argument, NULL, 'h'},
		{"open-inflight", required_argument, NULL, 'i'},
		{"timeout", required_argument, NULL, 't'},   {"tag", required_argument, NULL, 'T'},
		{"copy", no_argument, NULL, 'C'},            {"proxy-tls", no_argument, NULL, 'L'},
		{"rate", required_argument, NULL, 'R'},      {"pool", required_argument, NULL, 'O'},
		{"requests", required_argument, NULL, 'K'},  {"cafile", required_argument, NULL, 'A'},
		{"path", required_argument, NULL, 'Q'},      {"trace", required_argument, NULL, 'Z'},
		{"version", no_argument, NULL, 'V'},         {"help", no_argument, NULL, 'X'},
		{NULL, 0, NULL, 0},
	};
	const char *direct = NULL, *proxy = NULL, *scen = NULL;
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'S': scen = optarg; break;
		case 'P': proxy = optarg; break;
		case 'D': direct = optarg; break;
		case 'H': snprintf(lg->host, sizeof(lg->host), "%s", optarg); break;
		case 'p': lg->port = atoi(optarg); break;
		case 'c': lg->concurrency = atoi(optarg); break;
		case 'd': lg->duration = atof(optarg); break;
		case 'w': lg->warmup = atof(optarg); break;
		case 'n': lg->concurrency = atoi(optarg); break;
		case 'r': lg->upload = strcmp(optarg, "up") == 0; break;
		case 'N': lg->tunnels = atoi(optarg); break;
		case 'h': lg->hold = atof(optarg); break;
		case 'i': lg->open_inflight = atoi(optarg); break;
		case 't': lg->timeout = atof(optarg); break;
		case 'T': add_tag(lg, optarg); break;
		case 'C': lg->copy = true; break;
		case 'L': lg->proxy_tls = true; break;
		case 'R': lg->rate = atof(optarg); break;
		case 'O': lg->pool = atoi(optarg); break;
		case 'K': lg->requests = atoi(optarg); break;
		case 'A': lg->cafile = optarg; break;
		case 'Q': snprintf(lg->path, sizeof(lg->path), "%s", optarg); break;
		case 'Z':
			lg->trace = fopen(optarg, "w");
			if (lg->trace == NULL) {
				fprintf(stderr, "loadgen: %s: %s\n", optarg, strerror(errno));
				exit(2);
			}
			break;
		case 'V':
			printf("{\"libevent\":\"%s\",\"openssl\":\"%s\"}\n", event_get_version(),
			       OpenSSL_version(OPENSSL_VERSION));
			exit(0);
		case 'X': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (scen == NULL || (proxy == NULL) == (direct == NULL) || lg->port <= 0 ||
	    lg->port > 65535 || lg->concurrency <= 0 || lg->duration <= 0)
		return -1;
	if (strcmp(scen, "setup") == 0 || strcmp(scen, "open") == 0)
		lg->sc = SC_SETUP;
	else if (strcmp(scen, "tls") == 0)
		lg->sc = SC_TLS;
	else if (strcmp(scen, "icpt") == 0)
		lg->sc = SC_ICPT;
	else if (strcmp(scen, "bulk") == 0)
		lg->sc = SC_BULK;
	else if (strcmp(scen, "idle") == 0)
		lg->sc = SC_IDLE;
	else
		return -1;
	/* The open loop is setup's exchange on a schedule: --scenario open, or setup with --rate. */
	lg->open = strcmp(scen, "open") == 0 || (lg->sc == SC_SETUP && lg->rate > 0);
	if (lg->open) {
		if (lg->rate <= 0)
			lg->rate = 2000;
		if (lg->pool <= 0)
			return -1;
	}
	lg->via_proxy = proxy != NULL;
	if (proxy != NULL && !parse_addr(proxy, &lg->peer))
		return -1;
	if (direct != NULL) {
		char a[96];
		snprintf(a, sizeof(a), "%s:%d", direct, lg->port);
		if (!parse_addr(a, &lg->peer))
			return -1;
	}
	if (lg->warmup < 0 || lg->warmup >= lg->duration)
		lg->warmup = lg->duration * 0.1;
	if (lg->sc == SC_ICPT) {
		if (lg->requests <= 0 || lg->path[0] != '/')
			return -1;
		int n = snprintf(lg->req, sizeof(lg->req),
				 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: portcullis-bench\r\n"
				 "Accept: */*\r\n\r\n",
				 lg->path, lg->host, lg->port);
		if (n < 0 || (size_t)n >= sizeof(lg->req))
			return -1;
		lg->req_len = (size_t)n;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct lg L = {
		.concurrency = 32,
		.duration = 5,
		.warmup = -1,
		.hold = 2,
		.timeout = 10,
		.tunnels = 1000,
		.open_inflight = 128,
		.pool = 512,
		.requests = 1,
		.memfd = -1,
		.tfd = -1,
	};
	struct lg *lg = &L;
	snprintf(lg->host, sizeof(lg->host), "bench.example");
	snprintf(lg->path, sizeof(lg->path), "/bench/1k");
	if (parse_args(lg, argc, argv) != 0) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	/* Bounded whatever happens: the whole run, opening and holding included. */
	alarm((unsigned)(lg->duration + lg->hold + 4 * lg->timeout + 120));

	lg->n_slots = lg->sc == SC_IDLE ? lg->tunnels : lg->open ? lg->pool : lg->concurrency;
	lg->slots = calloc((size_t)lg->n_slots, sizeof(*lg->slots));
	lg->base = event_base_new();
	if (lg->slots == NULL || lg->base == NULL)
		return 1;
	if (lg->sc == SC_TLS || lg->sc == SC_ICPT) {
		lg->tls = SSL_CTX_new(TLS_client_method());
		if (lg->tls == NULL)
			return 1;
		SSL_CTX_set_min_proto_version(lg->tls, TLS1_2_VERSION);
		SSL_CTX_set_verify(lg->tls, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_session_cache_mode(lg->tls, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(lg->tls, SSL_OP_NO_TICKET);
	}
	if (lg->sc == SC_ICPT) {
		/* A client of an intercepting proxy: it trusts the proxy's CA (--cafile) and checks
		 * the name, as curl or git would; it offers HTTP/1.1 only. */
		static const unsigned char h11[] = "\x08http/1.1";
		SSL_CTX_set_alpn_protos(lg->tls, h11, sizeof(h11) - 1);
		if (lg->cafile != NULL) {
			if (SSL_CTX_load_verify_locations(lg->tls, lg->cafile, NULL) != 1) {
				fprintf(stderr, "loadgen: cannot load %s\n", lg->cafile);
				return 2;
			}
			SSL_CTX_set_verify(lg->tls, SSL_VERIFY_PEER, NULL);
		}
	}
	if (lg->proxy_tls) {
		/* The bench measures the proxy, not certificate checks: no verification. */
		lg->ptls = SSL_CTX_new(TLS_client_method());
		if (lg->ptls == NULL || lg->sc == SC_IDLE)
			return 2;
		SSL_CTX_set_min_proto_version(lg->ptls, TLS1_2_VERSION);
		SSL_CTX_set_verify(lg->ptls, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_session_cache_mode(lg->ptls, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(lg->ptls, SSL_OP_NO_TICKET);
		static const unsigned char h11[] = "\x08http/1.1";
		SSL_CTX_set_alpn_protos(lg->ptls, h11, sizeof(h11) - 1);
	}
	if (lg->sc == SC_BULK && setup_bulk(lg) != 0) {
		perror("loadgen: bulk set-up");
		return 1;
	}
	for (int i = 0; i < lg->n_slots; i++) {
		lg->slots[i].lg = lg;
		lg->slots[i].fd = -1;
		lg->slots[i].ev = malloc(event_get_struct_event_size());
		if (lg->slots[i].ev == NULL)
			return 1;
	}
	lg->sweep_ev = event_new(lg->base, -1, EV_PERSIST, sweep_cb, lg);
	lg->end_ev = evtimer_new(lg->base, end_cb, lg);
	lg->hold_ev = evtimer_new(lg->base, hold_cb, lg);
	struct timeval sweep = {.tv_sec = 0, .tv_usec = SWEEP_MS * 1000};
	event_add(lg->sweep_ev, &sweep);
	if (lg->open) {
		lg->free_idx = malloc((size_t)lg->n_slots * sizeof(*lg->free_idx));
		lg->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (lg->free_idx == NULL || lg->tfd < 0) {
			perror("loadgen: open loop set-up");
			return 1;
		}
		/* Popped from the end: slot 0 first, as in the closed loop. */
		for (int i = 0; i < lg->n_slots; i++)
			lg->free_idx[i] = lg->n_slots - 1 - i;
		lg->n_free = lg->n_slots;
		lg->arrive_ev = event_new(lg->base, lg->tfd, EV_READ | EV_PERSIST, arrive_cb, lg);
		event_add(lg->arrive_ev, NULL);
	}

	lg->t0 = now_ns();
	lg->t_warm = lg->t0 + sec_ns(lg->warmup);
	lg->t_end = lg->t0 + sec_ns(lg->duration);
	if (lg->sc == SC_IDLE) {
		/* The window is meaningless here; the run ends after the check. */
		lg->t_end = UINT64_MAX;
		open_next(lg);
	} else if (lg->open) {
		/* No end timer: the last arrival is due before t_end, and the run ends when the
		 * arrivals in flight then are done (each bounded by --timeout in the sweep). */
		arm_arrival(lg, lg->t0);
	} else {
		struct timeval tv = {.tv_sec = (time_t)lg->duration,
				     .tv_usec = (suseconds_t)((lg->duration - floor(lg->duration)) * 1e6)};
		event_add(lg->end_ev, &tv);
		for (int i = 0; i < lg->n_slots; i++)
			slot_start(&lg->slots[i]);
	}
	event_base_dispatch(lg->base);
	uint64_t t_stop = now_ns();
	if (lg->sc != SC_IDLE && !lg->open && t_stop < lg->t_end)
		lg->t_end = t_stop;
	lg->stopping = true;
	report(lg);
	for (int i = 0; i < lg->n_slots; i++)
		slot_teardown(&lg->slots[i]);
	if (lg->trace != NULL && fclose(lg->trace) != 0)
		fprintf(stderr, "loadgen: --trace: %s\n", strerror(errno));
	return lg->errors > 0 && lg->done_total == 0 && lg->bytes_total == 0 && lg->alive == 0 ? 1 : 0;
}
