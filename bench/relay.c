/* bench relay: the least a CONNECT proxy can do, measured as the floor for one.
 *
 *   relay --listen IP:PORT --upstream IP [--buf BYTES]
 *
 * One thread, one epoll set, level-triggered.  It reads a request head, takes
 * the port of `CONNECT host:port` (the host is ignored: every tunnel goes to
 * --upstream), connects, answers 200 and then relays both ways: recv() into one
 * buffer of --buf bytes (default 1 MiB), send() straight on, what the receiver
 * does not take kept until it drains (and that direction stops reading),
 * half-close passed on with shutdown(SHUT_WR), both sockets closed when both
 * ways are done.  No policy, no DNS, no audit record, no timers, no limits:
 * it is not a proxy anyone should run, only what a relaying process costs on
 * this machine, to set portcullis's figures against.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_MAX 4096

struct tun;
struct end {
	struct tun *t;
	int s; /* 0: the client, 1: the upstream */
};

struct tun {
	struct end e[2];
	int fd[2];
	bool relaying;
	bool dead;         /* closed: freed after this batch of events (it may hold the other end) */
	struct tun *next;  /* in the list of the dead */
	uint32_t want[2];  /* epoll interest now registered for fd[s] */
	char *pend[2];     /* direction d (d = the side it was read from) waiting to be sent */
	size_t poff[2], plen[2];
	bool eof[2];       /* side s sent its FIN */
	bool shut[2];      /* our write side towards s is shut */
	size_t hlen;
	char head[HEAD_MAX];
};

static int ep;
static struct tun *dead;
static struct sockaddr_in up;
static char *buf;
static size_t buf_len = 1u << 20;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void tun_close(struct tun *t)
{
	for (int s = 0; s < 2; s++) {
		if (t->fd[s] >= 0)
			close(t->fd[s]); /* leaves the epoll set with it */
		free(t->pend[s]);
		t->pend[s] = NULL;
	}
	t->dead = true;
	t->next = dead;
	dead = t;
}

static bool pending(const struct tun *t, int d)
{
	return t->poff[d] < t->plen[d];
}

/*
 * Register for exactly what each socket waits for now.  A socket that waits
 * for nothing leaves the set, so a hang-up or an error is only ever reported
 * on one that reads (the recv then sees it) or sends (the send does).
 */
static void rearm(struct tun *t)
{
	for (int s = 0; s < 2; s++) {
		if (t->fd[s] < 0)
			continue;
		uint32_t w = 0;
		if (!t->relaying)
			w = s == 0 ? (t->fd[1] < 0 ? EPOLLIN : 0) : EPOLLOUT;
		else {
			if (!t->eof[s] && !pending(t, s))
				w |= EPOLLIN;
			if (pending(t, !s))
				w |= EPOLLOUT;
		}
		if (w == t->want[s])
			continue;
		struct epoll_event ev = {.events = w, .data.ptr = &t->e[s]};
		int op = t->want[s] == 0 ? EPOLL_CTL_ADD : w == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
		if (epoll_ctl(ep, op, t->fd[s], &ev) != 0)
			die("epoll_ctl");
		t->want[s] = w;
	}
}

/* Direction d has nothing left to send: pass its EOF on; true when the tunnel is done. */
static bool settle(struct tun *t, int d)
{
	if (t->eof[d] && !pending(t, d) && !t->shut[!d]) {
		shutdown(t->fd[!d], SHUT_WR);
		t->shut[!d] = true;
	}
	if (t->shut[0] && t->shut[1]) {
		tun_close(t);
		return true;
	}
	return false;
}

/* Send what direction d holds; false when the tunnel is gone. */
static bool flush(struct tun *t, int d)
{
	while (pending(t, d)) {
		ssize_t w = send(t->fd[!d], t->pend[d] + t->poff[d], t->plen[d] - t->poff[d],
		                 MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			return true;
		if (w < 0) {
			tun_close(t);
			return false;
		}
		t->poff[d] += (size_t)w;
	}
	free(t->pend[d]);
	t->pend[d] = NULL;
	t->poff[d] = t->plen[d] = 0;
	return !settle(t, d);
}

/* Side s is readable while relaying; false when the tunnel is gone. */
static bool pump(struct tun *t, int s)
{
	ssize_t n = recv(t->fd[s], buf, buf_len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n < 0) {
		tun_close(t);
		return false;
	}
	if (n == 0) {
		t->eof[s] = true;
		return !settle(t, s);
	}
	ssize_t w = send(t->fd[!s], buf, (size_t)n, MSG_NOSIGNAL);
	if (w < 0 && errno != EAGAIN && errno != EINTR) {
		tun_close(t);
		return false;
	}
	size_t done = w < 0 ? 0 : (size_t)w;
	if (done < (size_t)n) {
		t->pend[s] = malloc((size_t)n - done);
		if (t->pend[s] == NULL)
			die("malloc");
		memcpy(t->pend[s], buf + done, (size_t)n - done);
		t->poff[s] = 0;
		t->plen[s] = (size_t)n - done;
	}
	return true;
}

/* The client's head: CONNECT host:port; connect to --upstream at that port. */
static bool read_head(struct tun *t)
{
	ssize_t n = recv(t->fd[0], t->head + t->hlen, sizeof(t->head) - 1 - t->hlen, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n <= 0) {
		tun_close(t);
		return false;
	}
	t->hlen += (size_t)n;
	t->head[t->hlen] = '\0';
	char *end = strstr(t->head, "\r\n\r\n");
	if (end == NULL)
		return t->hlen < sizeof(t->head) - 1 || (tun_close(t), false);
	char *sp = strchr(t->head, ' '), *sp2 = sp ? strchr(sp + 1, ' ') : NULL;
	char *colon = sp2 ? memrchr(sp, ':', (size_t)(sp2 - sp)) : NULL;
	if (strncmp(t->head, "CONNECT ", 8) != 0 || colon == NULL) {
		tun_close(t);
		return false;
	}
	struct sockaddr_in to = up;
	to.sin_port = htons((uint16_t)atoi(colon + 1));
	size_t extra = t->hlen - (size_t)(end + 4 - t->head);
	if (extra > 0) { /* the client's first bytes: sent once the tunnel is up */
		t->pend[0] = malloc(extra);
		if (t->pend[0] == NULL)
			die("malloc");
		memcpy(t->pend[0], end + 4, extra);
		t->plen[0] = extra;
	}
	t->fd[1] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (t->fd[1] < 0 || setsockopt(t->fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
	    (connect(t->fd[1], (struct sockaddr *)&to, sizeof(to)) != 0 && errno != EINPROGRESS)) {
		tun_close(t);
		return false;
	}
	return true;
}

static bool connected(struct tun *t)
{
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(t->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0 ||
	    send(t->fd[0], ok, sizeof(ok) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(ok) - 1)) {
		tun_close(t);
		return false;
	}
	t->relaying = true;
	return !pending(t, 0) || flush(t, 0);
}

static void on_event(struct end *e, uint32_t what)
{
	struct tun *t = e->t;
	int s = e->s;
	bool alive = true;
	if (t->dead)
		return;
	if (!t->relaying) {
		alive = s == 0 ? read_head(t) : connected(t);
	} else {
		if ((what & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && pending(t, !s))
			alive = flush(t, !s);
		if (alive && (what & (EPOLLIN | EPOLLERR | EPOLLHUP)) && (t->want[s] & EPOLLIN))
			alive = pump(t, s);
	}
	if (alive)
		rearm(t);
}

static bool parse_addr(const char *s, struct sockaddr_in *out, bool port)
{
	char host[64];
	const char *colon = port ? strrchr(s, ':') : NULL;
	size_t n = colon ? (size_t)(colon - s) : strlen(s);
	if ((port && colon == NULL) || n >= sizeof(host))
		return false;
	memcpy(host, s, n);
	host[n] = '\0';
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = port ? htons((uint16_t)atoi(colon + 1)) : 0;
	return inet_pton(AF_INET, host, &out->sin_addr) == 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_in lis;
	bool have_lis = false, have_up = false;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--listen") == 0)
			have_lis = parse_addr(argv[i + 1], &lis, true);
		else if (strcmp(argv[i], "--upstream") == 0)
			have_up = parse_addr(argv[i + 1], &up, false);
		else if (strcmp(argv[i], "--buf") == 0)
			buf_len = strtoul(argv[i + 1], NULL, 10);
	}
	if (!have_lis || !have_up || buf_len < 4096) {
		fprintf(stderr, "usage: relay --listen IP:PORT --upstream IP [--buf BYTES]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	buf = malloc(buf_len);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (buf == NULL || lfd < 0 || ep < 0)
		die("set-up");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* accepted sockets inherit it */
	if (bind(lfd, (struct sockaddr *)&lis, sizeof(lis)) != 0 || listen(lfd, 4096) != 0)
		die("listen");
	struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0)
		die("epoll_ctl");
	printf("{\"ready\":true,\"pid\":%d}\n", (int)getpid());
	fflush(stdout);
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr != NULL) {
				on_event(evs[i].data.ptr, evs[i].events);
				continue;
			}
			for (;;) {
				int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (fd < 0)
					break;
				struct tun *t = calloc(1, sizeof(*t));
				if (t == NULL)
					die("calloc");
				t->fd[0] = fd;
				t->fd[1] = -1;
				for (int s = 0; s < 2; s++)
					t->e[s] = (struct end){t, s};
				rearm(t);
			}
		}
		while (dead != NULL) {
			struct tun *t = dead;
			dead = t->next;
			free(t);
		}
	}
}
