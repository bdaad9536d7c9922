/* bench upstream: echo, bulk source, bulk sink, TLS echo and HTTPS servers on one edge-triggered
 * epoll loop. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/*
 * The servers must never be the bottleneck: the source sends with
 * sendfile(2) from a memfd (no copy out of user space), the sink discards
 * with recv(MSG_TRUNC) (no copy into user space), echo and TLS echo read and
 * write in one pass per readiness edge.  --copy makes source and sink copy
 * through a 256 KiB user buffer instead, as an ordinary server does.
 *
 * --https: an HTTP/1.1 origin over TLS (the same certificate as --tls) for
 * the interception scenario: every request head gets 200 with a fixed
 * 1 KiB body and Content-Length, keep-alive unless the request says
 * "Connection: close"; pipelined heads are answered in order.  Request
 * bodies are not expected (the bench sends GETs).
 */

#define SOURCE_FILE_BYTES (16u << 20)
#define SOURCE_CHUNK (4u << 20)
#define SINK_CHUNK (4u << 20)
#define COPY_CHUNK (256u << 10)
#define ECHO_BUF 65536
#define MAX_EVENTS 512
#define HTTP_HEAD_MAX 16384
#define HTTP_BODY 1024

enum kind { K_LISTEN, K_ECHO, K_SOURCE, K_SINK, K_TLS, K_HTTPS };

struct ep {
	enum kind kind;
	enum kind serves; /* listeners: the kind of the connections they accept */
	int fd;
	SSL *ssl;
	bool hs_done;
	char *pend; /* echo bytes (https: responses) not yet written back */
	size_t pend_len;
	char *in; /* https: request bytes not yet answered */
	size_t in_len;
	bool close_after; /* https: a request said Connection: close; close once answered */
	off_t foff; /* source: offset in the memfd */
};

static volatile sig_atomic_t stop_flag;
static int epfd = -1;
static int memfd = -1;
static SSL_CTX *tls_ctx;
static char echo_buf[ECHO_BUF];
static char http_resp[256 + HTTP_BODY];
static size_t http_resp_len;
static char *sink_buf;
static bool copy_mode; /* --copy: send/recv through user space instead of sendfile/MSG_TRUNC */

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void die(const char *what)
{
	fprintf(stderr, "upstream: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void ep_close(struct ep *e)
{
	if (e->ssl != NULL)
		SSL_free(e->ssl);
	close(e->fd);
	free(e->pend);
	free(e->in);
	free(e);
}

static int listen_on(const char *ip, int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1) {
		fprintf(stderr, "upstream: bad address %s\n", ip);
		exit(2);
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
		die("bind");
	if (listen(fd, 65535) != 0)
		die("listen");
	return fd;
}

static void add_listener(const char *ip, int port, enum kind serves)
{
	if (port <= 0)
		return;
	struct ep *e = calloc(1, sizeof(*e));
	if (e == NULL)
		die("calloc");
	e->kind = K_LISTEN;
	e->serves = serves;
	e->fd = listen_on(ip, port);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = e};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, e->fd, &ev) != 0)
		die("epoll_ctl");
}

/* Write back what is pending. Returns 1 when all is written, 0 on EAGAIN, -1 on error. */
static int echo_flush(struct ep *e)
{
	while (e->pend_len > 0) {
		ssize_t n;
		if (e->ssl != NULL) {
			n = SSL_write(e->ssl, e->pend, (int)e->pend_len);
			if (n <= 0) {
				int err = SSL_get_error(e->ssl, (int)n);
				return err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ ? 0 : -1;
			}
		} else {
			n = send(e->fd, e->pend, e->pend_len, MSG_NOSIGNAL);
			if (n < 0)
				return errno == EAGAIN ? 0 : -1;
		}
		memmove(e->pend, e->pend + n, e->pend_len - (size_t)n);
		e->pend_len -= (size_t)n;
	}
	return 1;
}

/* Queue bytes to echo and try to write them. Returns as echo_flush. */
static int echo_queue(struct ep *e, const char *p, size_t n)
{
	char *np = realloc(e->pend, e->pend_len + n);
	if (np == NULL)
		return -1;
	e->pend = np;
	memcpy(e->pend + e->pend_len, p, n);
	e->pend_len += n;
	return echo_flush(e);
}

/* Returns false when the connection is finished (caller closes). */
static bool handle_echo(struct ep *e)
{
	for (;;) {
		int f = echo_flush(e);
		if (f < 0)
			return false;
		if (f == 0)
			return true; /* EPOLLOUT will call again */
		ssize_t n = recv(e->fd, echo_buf, sizeof(echo_buf), 0);
		if (n == 0)
			return false;
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		ssize_t w = send(e->fd, echo_buf, (size_t)n, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN)
			return false;
		if (w < 0)
			w = 0;
		if (w < n && echo_queue(e, echo_buf + w, (size_t)(n - w)) < 0)
			return false;
	}
}

static bool handle_tls(struct ep *e)
{
	if (!e->hs_done) {
		ERR_clear_error();
		int r = SSL_accept(e->ssl);
		if (r != 1) {
			int err = SSL_get_error(e->ssl, r);
			return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
		}
		e->hs_done = true;
	}
	for (;;) {
		int f = echo_flush(e);
		if (f < 0)
			return false;
		if (f == 0)
			return true;
		ERR_clear_error();
		int n = SSL_read(e->ssl, echo_buf, sizeof(echo_buf));
		if (n <= 0) {
			int err = SSL_get_error(e->ssl, n);
			return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
		}
		if (echo_queue(e, echo_buf, (size_t)n) < 0)
			return false;
	}
}

/* Answer every complete request head in e->in. Returns false when the connection is done. */
static bool http_answer(struct ep *e)
{
	size_t off = 0;
	for (;;) {
		char *end = memmem(e->in + off, e->in_len - off, "\r\n\r\n", 4);
		if (end == NULL)
			break;
		size_t hlen = (size_t)(end + 4 - (e->in + off));
		/* Connection: close, as a whole header line (case-insensitive). */
		for (const char *p = e->in + off; p + 19 <= end + 2; p++)
			if (p[0] == '\n' && strncasecmp(p + 1, "connection: close\r", 18) == 0)
				e->close_after = true;
		off += hlen;
		if (echo_queue(e, http_resp, http_resp_len) < 0)
			return false;
		if (e->close_after)
			break;
	}
	memmove(e->in, e->in + off, e->in_len - off);
	e->in_len -= off;
	return e->in_len < HTTP_HEAD_MAX;
}

static bool handle_https(struct ep *e)
{
	if (!e->hs_done) {
		ERR_clear_error();
		int r = SSL_accept(e->ssl);
		if (r != 1) {
			int err = SSL_get_error(e->ssl, r);
			return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
		}
		e->hs_done = true;
	}
	for (;;) {
		int f = echo_flush(e);
		if (f < 0)
			return false;
		if (f == 0)
			return true;
		if (e->close_after) {
			SSL_shutdown(e->ssl);
			return false;
		}
		if (e->in == NULL && (e->in = malloc(HTTP_HEAD_MAX + 1)) == NULL)
			return false;
		ERR_clear_error();
		int n = SSL_read(e->ssl, e->in + e->in_len, (int)(HTTP_HEAD_MAX + 1 - e->in_len));
		if (n <= 0) {
			int err = SSL_get_error(e->ssl, n);
			return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
		}
		e->in_len += (size_t)n;
		if (!http_answer(e))
			return false;
	}
}

/* Discard everything readable. Returns false at EOF or error. */
static bool drain(struct ep *e)
{
	for (;;) {
		ssize_t n = copy_mode ? recv(e->fd, sink_buf, COPY_CHUNK, 0)
				      : recv(e->fd, sink_buf, SINK_CHUNK, MSG_TRUNC);
		if (n == 0)
			return false;
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
	}
}

static bool handle_source(struct ep *e, uint32_t events)
{
	if ((events & EPOLLIN) && !drain(e))
		return false;
	while (copy_mode) {
		ssize_t n = send(e->fd, sink_buf, COPY_CHUNK, MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
	}
	for (;;) {
		if (e->foff >= (off_t)SOURCE_FILE_BYTES)
			e->foff = 0;
		size_t want = SOURCE_FILE_BYTES - (size_t)e->foff;
		if (want > SOURCE_CHUNK)
			want = SOURCE_CHUNK;
		ssize_t n = sendfile(e->fd, memfd, &e->foff, want);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		if (n == 0)
			return false;
	}
}

static void accept_all(struct ep *l)
{
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return; /* EAGAIN, or EMFILE: the next edge retries */
		}
		struct ep *e = calloc(1, sizeof(*e));
		if (e == NULL) {
			close(fd);
			continue;
		}
		e->kind = l->serves;
		e->fd = fd;
		int one = 1;
		if (e->kind == K_ECHO || e->kind == K_TLS || e->kind == K_HTTPS)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (e->kind == K_TLS || e->kind == K_HTTPS) {
			e->ssl = SSL_new(tls_ctx);
			if (e->ssl == NULL || SSL_set_fd(e->ssl, fd) != 1) {
				ep_close(e);
				continue;
			}
		}
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
					 .data.ptr = e};
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
			ep_close(e);
		/* The EPOLLOUT edge of a fresh socket arrives at once and starts a source sending. */
	}
}

static void dispatch(struct ep *e, uint32_t events)
{
	bool keep = true;
	switch (e->kind) {
	case K_LISTEN: accept_all(e); return;
	case K_ECHO: keep = handle_echo(e); break;
	case K_TLS: keep = handle_tls(e); break;
	case K_HTTPS: keep = handle_https(e); break;
	case K_SINK: keep = drain(e); break;
	case K_SOURCE: keep = handle_source(e, events); break;
	}
	if (keep && (events & (EPOLLERR | EPOLLHUP)))
		keep = false;
	if (keep && (events & EPOLLRDHUP) && e->kind != K_ECHO && e->kind != K_TLS &&
	    e->kind != K_HTTPS)
		keep = drain(e);
	if (!keep)
		ep_close(e);
}

/* ALPN: http/1.1 when the client offers it (as a real origin answers); otherwise none. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
		if (in[i] == 8 && i + 9 <= inlen && memcmp(in + i + 1, "http/1.1", 8) == 0) {
			*out = in + i + 1;
			*outlen = 8;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *make_tls_ctx(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0); /* every bench handshake is a full one */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static int make_memfd(void)
{
	int fd = memfd_create("bench-source", MFD_CLOEXEC);
	if (fd < 0)
		die("memfd_create");
	char *blk = malloc(1u << 20);
	if (blk == NULL)
		die("malloc");
	memset(blk, 'S', 1u << 20); /* never 0x16: a bulk stream is not a TLS handshake */
	for (unsigned i = 0; i < SOURCE_FILE_BYTES >> 20; i++)
		if (write(fd, blk, 1u << 20) != (ssize_t)(1u << 20))
			die("write memfd");
	free(blk);
	return fd;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: upstream --addr IP [--echo PORT] [--source PORT] [--sink PORT]\n"
		"                [--tls PORT] [--https PORT] [--cert FILE --key FILE]\n"
		"                [--max-seconds N] [--copy]\n"
		"--copy: bulk through user space (send/recv of 256 KiB), not sendfile/MSG_TRUNC.\n"
		"--https: HTTP/1.1 over TLS, 200 with a 1 KiB body to every request, keep-alive.\n"
		"Prints one JSON line {\"ready\":true} on stdout once every port listens.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"addr", required_argument, NULL, 'a'},   {"echo", required_argument, NULL, 'e'},
		{"source", required_argument, NULL, 's'}, {"sink", required_argument, NULL, 'k'},
		{"tls", required_argument, NULL, 't'},    {"cert", required_argument, NULL, 'c'},
		{"key", required_argument, NULL, 'K'},    {"max-seconds", required_argument, NULL, 'm'},
		{"copy", no_argument, NULL, 'C'},         {"https", required_argument, NULL, 'H'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *addr = "127.0.0.1", *cert = NULL, *key = NULL;
	int p_echo = 0, p_source = 0, p_sink = 0, p_tls = 0, p_https = 0;
	long max_seconds = 3600;
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'a': addr = optarg; break;
		case 'e': p_echo = atoi(optarg); break;
		case 's': p_source = atoi(optarg); break;
		case 'k': p_sink = atoi(optarg); break;
		case 't': p_tls = atoi(optarg); break;
		case 'H': p_https = atoi(optarg); break;
		case 'c': cert = optarg; break;
		case 'K': key = optarg; break;
		case 'm': max_seconds = atol(optarg); break;
		case 'C': copy_mode = true; break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	if ((p_tls > 0 || p_https > 0) && (cert == NULL || key == NULL)) {
		usage();
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	sink_buf = mmap(NULL, SINK_CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (sink_buf == MAP_FAILED)
		die("mmap");
	memset(sink_buf, 'S', SINK_CHUNK); /* the --copy source sends this: never 0x16 */
	memfd = make_memfd();
	http_resp_len = (size_t)snprintf(http_resp, sizeof(http_resp),
					 "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
					 "Cache-Control: no-store\r\nContent-Length: %d\r\n\r\n",
					 HTTP_BODY);
	memset(http_resp + http_resp_len, 'b', HTTP_BODY);
	http_resp_len += HTTP_BODY;
	if (p_tls > 0 || p_https > 0) {
		tls_ctx = make_tls_ctx(cert, key);
		if (tls_ctx == NULL) {
			fprintf(stderr, "upstream: cannot load %s / %s\n", cert, key);
			return 1;
		}
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1");
	add_listener(addr, p_echo, K_ECHO);
	add_listener(addr, p_source, K_SOURCE);
	add_listener(addr, p_sink, K_SINK);
	add_listener(addr, p_tls, K_TLS);
	add_listener(addr, p_https, K_HTTPS);
	printf("{\"ready\":true,\"pid\":%d}\n", (int)getpid());
	fflush(stdout);

	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct epoll_event evs[MAX_EVENTS];
	while (!stop_flag) {
		int n = epoll_wait(epfd, evs, MAX_EVENTS, 1000);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int i = 0; i < n; i++)
			dispatch(evs[i].data.ptr, evs[i].events);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > max_seconds)
			break;
	}
	return 0;
}
