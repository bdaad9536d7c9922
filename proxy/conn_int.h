/* Private to conn.c and tunnel.c: the connection object and the helpers both halves use. */
#ifndef PORTCULLIS_CONN_INT_H
#define PORTCULLIS_CONN_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/util.h>

#include "addr.h"
#include "host.h"
#include "policy.h"
#include "reason.h"

struct bufferevent;
struct event;
struct relay;
struct dns_query;
struct src_slot;
struct conn_http;
struct http_req;
struct worker;

enum conn_state {
	CS_REQUEST,    /* reading the request head; header deadline armed */
	CS_RESOLVING,  /* DNS lookup in flight; client reads paused */
	CS_CONNECTING, /* connecting to addrs[addr_idx]; connect timeout armed */
	CS_HELLO,      /* 200 sent; holding client bytes until a complete ClientHello; hello deadline */
	CS_TUNNEL,     /* relaying both ways; idle and lifetime deadlines armed */
	CS_FORWARD,    /* plain HTTP: one request and its response moving; idle deadline armed */
	CS_RESPONDING, /* writing a refusal; client reads paused */
	CS_LINGER,     /* refusal flushed and our write side shut; discarding client input */
};

/* What the ClientHello told us, kept for the audit record (allocated only for TLS tunnels). */
struct conn_tls {
	char sni[HOST_NAME_MAX_LEN + 1]; /* canonical SNI, "" when none */
	char version[8];                 /* highest offered: "1.3", "1.2", ... */
	char alpn[64];                   /* the one ALPN protocol offered, "" otherwise */
};

struct conn {
	struct conn *prev, *next; /* worker's list */
	struct worker *w;
	struct policy *policy; /* snapshot this connection started under */
	enum conn_state state;
	int tier;
	struct bufferevent *cbev;
	struct bufferevent *ubev;
	struct relay *relay;     /* CS_TUNNEL past inspection: owns both sockets; cbev, ubev NULL */
	evutil_socket_t ufd;     /* upstream socket while connecting */
	struct event *uconn_ev;  /* EV_WRITE on ufd while connecting */
	struct event *timer;     /* the one deadline of the current state */
	struct dns_query *dq;    /* lookup in flight (cancel handle) */
	struct src_slot *slot;   /* hold on the per-source limits (NULL: none) */
	struct pc_addr src;
	uint16_t src_port;
	uint16_t port;
	bool have_request;       /* a request head was parsed: the connection gets an audit record */
	bool audited;            /* the record was written */
	bool client_eof, upstream_eof;
	bool client_shut, upstream_shut; /* our write side towards them is shut */
	bool have_dst;
	bool peek_first;         /* not a TLS port: inspect only if the first client byte is 0x16 */
	bool finishing;          /* a cap was reached: flush what was allowed, then close */
	enum reason finish_reason;
	enum reason first_eof;   /* close reason once both sides are done */
	enum reason connect_fail;
	int status;              /* HTTP status sent */
	uint32_t retry_after;    /* Retry-After seconds on a 429 / 503 (0: none) */
	unsigned tier_slot;      /* metrics label slot of the tier (0: none) */
	bool counted_active;     /* counted in tunnels_active */
	uint64_t t_head;         /* request head complete (monotonic ns) */
	uint64_t t_step;         /* start of the current lookup or connect attempt */
	struct pc_addr dst;
	struct pc_addr *addrs;   /* vetted addresses, freed once connected */
	size_t n_addrs, addr_idx;
	struct verdict verdict;  /* the host decision; reason is overwritten by a later refusal */
	bool would_deny;         /* audit mode: something would have been refused ... */
	enum reason would_deny_reason; /* ... for this reason (the first one) */
	uint64_t t0_mono, t0_wall, last_active;
	uint64_t up, down;       /* client→upstream, upstream→client */
	uint64_t cap_up, cap_down; /* of those, counted against caps.upload/download_bytes */
	struct conn_tls *tls;
	struct conn_http *http;  /* plain-HTTP exchange state (NULL for CONNECT) */
	struct pod_info *pod;    /* the source pod from the Kubernetes map (a reference), or NULL */
	char method[16];
	struct pc_host host;
};

/* conn.c */
void conn_set_state(struct conn *c, enum conn_state to);
void conn_arm_ms(struct conn *c, uint64_t ms);
const struct policy_tier *conn_tier(const struct conn *c);
uint32_t conn_pick(uint32_t tier_val, uint32_t global_val);
uint64_t conn_coarse_ns(void);
/* The one teardown path: audit (once), cancel, free. c is gone afterwards. */
void conn_close(struct conn *c, enum reason why);
/* A refusal record at decision time (no-op if already audited). */
void conn_audit(struct conn *c, enum reason why, bool tunnel_end);
/* Remember a would-deny (audit mode) without blocking: the first reason wins. */
void conn_would_deny(struct conn *c, enum reason why);
/*
 * Charge n bytes moving one way (upload: client -> upstream) to every cap
 * and budget: the source's upload budget, the byte counters and metrics,
 * and, when `capped`, the tier's byte cap for the current scope (a tunnel,
 * or one forwarded exchange and the relay an upgrade turns it into:
 * cap_up / cap_down).  Returns how many of the n may pass; *cut says why the
 * rest may not (R_ALLOWED: all pass).  Audit mode passes all and records a
 * would-deny.
 */
uint64_t conn_charge(struct conn *c, bool upload, uint64_t n, bool capped, enum reason *cut);
/* Refuse with a status before anything of a response reached the client. */
void conn_refuse(struct conn *c, enum reason why);
/* Keep-alive: the exchange is done and recorded; read the next request. */
void conn_next_request(struct conn *c);

/* tunnel.c */
/* Upstream connected: send 200 and start inspecting/relaying. */
void tunnel_start(struct conn *c, evutil_socket_t fd);
/* The connection timer fired in CS_HELLO, CS_TUNNEL or CS_FORWARD. */
void tunnel_timer(struct conn *c);
/* Arm the idle / max-lifetime deadline (or close if one has passed). */
void tunnel_arm(struct conn *c);
/* An allowed HTTP Upgrade (101) was forwarded: relay both ways from here on. */
void tunnel_from_upgrade(struct conn *c);
/* Free the raw relay (its events, buffers and both sockets), if any; for conn_close. */
void tunnel_free(struct conn *c);

/* forward.c */
/* Parse and check a plain-HTTP request; prepares the rewritten head. R_ALLOWED or why not. */
enum reason forward_prepare(struct conn *c, const struct http_req *req);
/* Upstream connected: send the request, stream both bodies, then keep-alive or close. */
void forward_start(struct conn *c, evutil_socket_t fd);
void forward_free(struct conn *c); /* NULL-safe */
const char *forward_path(const struct conn *c);

#endif
