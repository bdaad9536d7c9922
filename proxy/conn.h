/*
 * The connection core: the life of one client connection, and the one place
 * each of its promises is kept.
 *
 *   source ............ conn_accept: the peer, or on a PROXY-protocol listener the
 *                       client its header names (proxyhdr.c, then conn_start)
 *   slot taken ........ conn_start: per-source hold from accept to close,
 *                       across keep-alive (caps.connections_per_source)
 *   identity .......... conn_start (pod) and conn_decide_begin (tier, per request)
 *   decision .......... conn_decide_begin: under the policy current when the
 *                       request head completed; conn_admit: the per-request
 *                       checks every path shares (TLS ports, budget, audit log)
 *   every byte ........ conn_charge: caps, upload budget, counters, metrics
 *   one audit record .. conn_audit (conn_audit.c), once per exchange
 *   one teardown ...... conn_close: frees everything but the object, which is
 *                       reaped once the loop iteration unwinds (CS_CLOSED)
 *   flush, then close . conn_finish: the one way to end after writing
 *
 * The phases (proxyhdr.c, request.c, dial.c, hello.c, relay.c, forward.c) each own their
 * states and call only this core; they move the connection on with
 * conn_enter(), never by calling each other.  docs/architecture.md has the
 * state diagram.
 */
#ifndef PORTCULLIS_CONN_H
#define PORTCULLIS_CONN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

#include "addr.h"
#include "community_id.h"
#include "host.h"
#include "http_parse.h"
#include "ja4.h"
#include "metrics.h"
#include "policy.h"
#include "proxy_proto.h"
#include "reason.h"

struct audit_log;
struct bufferevent;
struct cert_identity;
struct dns_resolver;
struct event;
struct event_base;
struct kube_client;
struct linger_pool;
struct pod_info;
struct podmap;
struct sockaddr;
struct src_slot;
struct srclimit;
struct transport;

struct conn;
/* Phase-private state, defined in the phase's own file. */
struct dial;
struct hello;
struct relay;
struct fwd;
struct pphdr;
struct icpt;
struct icpt_ca;

enum conn_state {
	CS_PROXY_HEADER, /* proxyhdr.c: reading a load balancer's PROXY header; its deadline armed */
	CS_REQUEST,    /* request.c: reading a request head; header deadline armed */
	CS_RESOLVING,  /* dial.c: DNS lookup in flight; client reads paused */
	CS_CONNECTING, /* dial.c: connecting to a vetted address; connect deadline armed */
	CS_HELLO,      /* hello.c: 200 sent; the client's bytes held until a ClientHello passed */
	CS_SERVER_HELLO, /* hello.c: the hello went; the server's first flight read to its ServerHello */
	CS_HELLO_RETRY,  /* hello.c: the server asked for a retry; the second ClientHello checked */
	CS_TUNNEL,     /* relay.c: relaying both ways; idle and lifetime deadlines armed */
	CS_FORWARD,    /* forward.c: one plain-HTTP exchange moving; idle and lifetime deadlines */
	CS_UPGRADING,  /* forward.c: a 101 is going to the client; the relay takes over once it is
	                  out */
	CS_ICPT_UPSTREAM, /* intercepted.c: TLS to the upstream, verified, before the 200 */
	CS_ICPT_CLIENT, /* intercepted.c: 200 sent; the client's handshake, a minted certificate */
	CS_FINISHING,  /* conn.c: nothing more is read; what was let through is flushed, then close
	                */
	CS_CLOSED, /* conn.c: recorded and released; the object is freed when the loop unwinds */
	CS__COUNT
};

/* A phase: the handlers of the states it owns (conn_phases[], phases.c). */
struct conn_phase {
	const char *name;
	/* The state was just entered (conn_enter). */
	void (*enter)(struct conn *c);
	/* The connection's timer fired in this state. */
	void (*timeout)(struct conn *c);
	/*
	 * The connection stops reading and only flushes (conn_finish), from a
	 * state of this phase: hand whatever the phase holds for sending to
	 * the bufferevents' outputs, cancel what is in flight.  NULL: nothing.
	 */
	void (*finish)(struct conn *c);
	/* Free the phase's private state, if any (at close; idempotent). NULL: none. */
	void (*release)(struct conn *c);
};

/* One per state (CS_FINISHING and CS_CLOSED: the core's own, NULL). */
extern const struct conn_phase *const conn_phases[CS__COUNT];

/*
 * A connection accepted on a PROXY-protocol listener: how its header is read,
 * and once one named the client (src), the balancer that connected, for the
 * record (source.nat.*), and what the header carried besides.
 */
struct conn_via {
	unsigned accept;     /* the listener's proxy_protocol.mode: PP_ACCEPT_* bits */
	uint32_t timeout_ms; /* ... and its timeout */
	bool proxied;        /* a PROXY header (not LOCAL, not UNKNOWN) set src */
	size_t listener;     /* the worker's listener index (its bound address) */
	struct pc_addr peer;
	uint16_t peer_port;
	char vpce[PP_VPCE_MAX + 1]; /* AWS VPC endpoint ID (labels.aws_vpce_id), "" when none */
};

/* What the ClientHello told us, for the audit record (hello.c). */
struct conn_tls {
	char sni[HOST_NAME_MAX_LEN + 1]; /* canonical SNI, "" when none */
	char version[8];                 /* highest offered: "1.3", "1.2", ... */
	char alpn[64];                   /* the one ALPN protocol offered, "" otherwise */
	char ja4[JA4_LEN + 1];           /* its JA4 fingerprint, "" if it could not be computed */
};

/*
 * What every connection of one worker shares: the loop, the resolver, the
 * process-wide tables, the current policy.  Owned by the worker; the core
 * reads it and keeps the list of open connections in it.
 */
struct conn_env {
	struct event_base *base;
	struct dns_resolver *dns;
	struct audit_log *audit;
	struct srclimit *srclimit;      /* per-source limits, process-wide */
	struct oidc_state *oidc;        /* OIDC job bindings and counters, process-wide */
	struct podmap *podmap;          /* pod identity, or NULL */
	const struct kube_client *kube; /* feeds podmap (overflow state), or NULL */
	struct worker_metrics *metrics; /* this worker's counters */
	struct metrics_tiers *tiers;    /* process-wide tier label slots */
	struct linger_pool *linger;
	struct icpt_ca *icpt_ca;     /* interception's CA and TLS contexts, or NULL (process-wide) */
	const char *hostname;        /* observer.hostname */
	unsigned v6_prefix;          /* identity.ipv6_source_prefix, fixed at start-up */
	atomic_uint *n_open;         /* open connections, process-wide (max_connections) */
	const atomic_bool *draining; /* the process is stopping: no keep-alive */
	atomic_ullong audit_lost;    /* records that could not be formatted */
	/* The snapshot the listeners were bound under: listen.proxy is fixed until restart. */
	struct policy *bound;
	/* The policy: new requests are decided under `policy`; `next` is the mailbox. */
	struct policy *policy;
	_Atomic(struct policy *) next;
	uint16_t tier_slots[METRICS_MAX_TIERS]; /* metrics slot of each tier of `policy` */
	/* Scratch for one loop: relay reads, ClientHello reassembly. */
	char *relay_buf;        /* CONN_RELAY_BUF bytes */
	uint8_t *hello_scratch; /* CONN_HELLO_SCRATCH bytes */
	/* Connections: open ones, and closed ones waiting for the end of the iteration. */
	struct conn *conns;
	size_t n_conns;
	struct conn *reap;
	struct event *reap_ev;
	struct audit_agg *agg; /* refusals counted while the audit queue is under pressure */
	struct event *agg_ev;  /* flushes agg every second */
	void (*on_last_close)(void *arg); /* the last open connection closed (drain) */
	void *on_last_close_arg;
};

/*
 * The relay's largest read: a bulk transfer moves this much per recv(2) and
 * send(2), within the room left in the receiver's send buffer (relay.c).
 * Each epoll round trip costs far more than the copy on a VM: 4 MiB reads took
 * 8-stream bulk from about 535 to 440-495 us of CPU per MiB against 1 MiB reads.
 */
#define CONN_RELAY_BUF     (4096u * 1024u)
#define CONN_HELLO_SCRATCH 65536u

struct conn {
	/* ---- core: list, state, deadline, the two peers ---- */
	struct conn_env *env;
	struct conn *prev, *next; /* env's open list; `next` links the reap list once closed */
	struct event *timer;             /* the one deadline of the current state */
	struct transport *client;        /* the client, until closed */
	struct transport *upstream;      /* the upstream, once connected */
	struct bufferevent *cbev;        /* buffered phases: over `client` (NULL in the relay) */
	struct bufferevent *ubev;        /* buffered phases: over `upstream` */
	bool client_eof, upstream_eof;   /* each peer has sent its FIN */
	bool client_shut, upstream_shut; /* our write side towards each is shut */
	bool reset_upstream;             /* close the upstream with a RST (a refusal after 200) */
	/* (fields are ordered so that an idle tunnel's object has no holes to speak of) */
	enum conn_state state;
	enum reason first_eof;           /* the close reason once both sides are done */
	enum reason finish_reason;       /* CS_FINISHING: why it ends */

	/* ---- identity: the source at accept (a socket cannot move) ---- */
	struct pc_addr src; /* the peer, or the client a PROXY header named */
	uint16_t src_port;
	struct conn_via *via;   /* on a PROXY-protocol listener (malloc'd), else NULL */
	struct pod_info *pod;   /* the source pod (a reference), or NULL */
	uint64_t id;            /* trace.id of every record of this connection (audit_log_next_id) */
	char community_id[COMMUNITY_ID_LEN + 1]; /* of the client's flow to the listener, or "" */
	struct cert_identity *peer; /* TLS listener with client_certs: the client's certificate */
	size_t listener;            /* the worker's listen.proxy index, or CONN_LISTENER_TLS */
	struct oidc_ident *oidc;    /* this exchange's OIDC token, for its record (malloc'd), or NULL */
	struct src_slot *slot;  /* per-source hold, accept to close (over_source_limit below) */

	/* ---- the exchange: one request, decided and recorded on its own ---- */
	struct policy *policy; /* the snapshot current when this request's head completed */
	int tier;              /* -1: none */
	unsigned tier_slot;    /* metrics label slot (0: none) */
	char method[16];
	bool plain;          /* a plain-HTTP request (else CONNECT) */
	bool have_request;   /* a request head was parsed: the exchange gets a record */
	bool audited;        /* its record was written */
	bool counted_active; /* counted in tunnels_active */
	bool over_source_limit; /* identity: audit mode, admitted past connections_per_source */
	bool peek_first; /* relay.c: not a TLS port; inspect if the first client byte is 0x16 */
	uint16_t port;   /* the target's (`host` below) */
	size_t audit_reserved; /* room promised to its record in the audit queue (conn_admit) */
	struct pc_host host; /* the target (its port above) */
	struct verdict verdict; /* the host decision; reason overwritten by a later refusal */
	bool have_dst;
	struct pc_addr dst;            /* the vetted address connected to */
	bool would_deny;               /* audit mode: something would have been refused ... */
	enum reason would_deny_reason; /* ... for this reason (the first one) */
	int status;                    /* HTTP status the client saw */
	uint32_t retry_after;          /* Retry-After seconds of a 429 / 503 (0: none) */
	uint64_t t0_mono, t0_wall;     /* start of the exchange */
	uint64_t t_head;               /* its request head completed (monotonic ns) */
	uint64_t last_active;          /* coarse monotonic ns of the last byte moved */
	uint64_t up, down;             /* bytes client -> upstream, upstream -> client */
	uint64_t cap_up, cap_down;     /* of those, counted against caps.upload/download_bytes */
	struct conn_tls *tls;          /* hello.c, for the record; NULL unless inspected */
	char *url_path;                /* plain HTTP: the target's path for the record (malloc'd) */
	char *user_agent;              /* the request's User-Agent for the record (malloc'd), or NULL */
	uint64_t interim_next;         /* monotonic ns of the tunnel's next interim record (0: none) */

	/* ---- phase-private state (opaque here) ---- */
	struct dial *dial;
	struct hello *hello;
	struct relay *relay;
	struct fwd *fwd;
	struct pphdr *pphdr;
	struct icpt *icpt; /* intercepted.c: an intercepted tunnel, from its CONNECT to the close */
	struct http_head_watch head_watch; /* request.c: when the head is worth parsing */
};

/* ---- the worker's side ---- */

/* Set up the core's part of env (reap event, linger pool); the worker fills the rest. */
int conn_env_init(struct conn_env *env, struct event_base *base)
    __attribute__((warn_unused_result));
/* Close every connection (drain_timeout), free the closed ones, the linger pool. */
void conn_env_fini(struct conn_env *env);
/* The audit emitter's per-worker state (conn_audit.c): set up by conn_env_init, flushed and
 * freed by conn_env_fini. */
int conn_audit_init(struct conn_env *env);
void conn_audit_fini(struct conn_env *env);
/* Adopt p as the policy new requests are decided under (takes the reference). */
void conn_env_adopt(struct conn_env *env, struct policy *p);
/* Adopt a snapshot waiting in the mailbox, if any; then env->policy is current. */
void conn_env_refresh(struct conn_env *env);
/*
 * Take ownership of a socket accepted on listen.proxy[listener] (tls NULL), or on a
 * TLS listener (tls: its context; listener is then CONN_LISTENER_TLS: no PROXY header).
 * local: the listener's own address when it is bound to one (every socket it accepts
 * has it), or NULL (a wildcard listener: the socket is asked).
 */
#define CONN_LISTENER_TLS ((size_t)-1)
struct tls_listener;
struct conn_local {
	struct pc_addr addr;
	uint16_t port;
};
void conn_accept(struct conn_env *env, evutil_socket_t fd, const struct sockaddr *sa,
                 size_t listener, struct tls_listener *tls, const struct conn_local *local);
/* Close every open connection with drain_timeout. */
void conn_close_all(struct conn_env *env);

/* ---- for the phases ---- */

static inline bool conn_closed(const struct conn *c)
{
	return c->state == CS_CLOSED;
}

/*
 * The source is known: the peer, or (proxyhdr.c) the client a PROXY header
 * named, with c->via set.  The pod is looked up, the tier identified and the
 * per-source slot taken (or refused), then the first request is read.
 * Every connection passes here exactly once.
 */
void conn_start(struct conn *c);

/* Move to `to` (checked against the transition table) and run its enter handler. */
void conn_enter(struct conn *c, enum conn_state to);
/*
 * Arm the idle / max-lifetime deadline of a moving exchange or tunnel
 * (tier value, else global; idle from last_active, lifetime from t0_mono),
 * or close with idle_timeout / max_lifetime if one has passed.
 */
/* Nanoseconds until the idle timeout (0: it has passed). */
uint64_t conn_idle_left_ns(const struct conn *c);
void conn_arm_activity(struct conn *c);
/* Arm the connection's one timer (replacing any deadline). */
void conn_arm_ms(struct conn *c, uint64_t ms);
void conn_disarm(struct conn *c);
const struct policy_tier *conn_tier(const struct conn *c);
/* The tier's value when set (not 0), else the global one. */
uint32_t conn_pick(uint32_t tier_val, uint32_t global_val);
bool conn_audit_mode(const struct conn *c);

/*
 * Make sure the buffered phases' bufferevents exist (cbev, and ubev once
 * connected); their callbacks are the caller's to set.  -1: out of memory.
 */
int conn_buffered(struct conn *c) __attribute__((warn_unused_result));
/* The upstream is done with (an exchange ended): close it in order, keep the record's fields. */
void conn_upstream_done(struct conn *c);
/* Free cbev and ubev (their contents are gone: take them first). */
void conn_unbuffered(struct conn *c);
/* Append bytes to the client bufferevent's input as if read (early reads). -1: no memory. */
int conn_push_input(struct bufferevent *bev, const void *p, size_t n);

/* The request's Proxy-Authorization (a view into its head, valid during the call). */
struct conn_credentials {
	bool present;
	bool repeated; /* more than one Proxy-Authorization field: refused */
	const char *value;
	size_t len;
};

/*
 * A request head completed: adopt the current policy snapshot for the
 * exchange, identify the tier under it, note the method.  Every request of
 * every path starts here.  R_ALLOWED, or the identity's refusal (a client
 * certificate that is missing, does not verify or matches no rule).
 */
enum reason conn_decide_begin(struct conn *c, const char *method, size_t method_len,
                              const struct conn_credentials *cred)
    __attribute__((warn_unused_result));
/*
 * The host decision of the exchange's target (c->host, c->port) under its
 * snapshot, into c->verdict (an audit-mode would-deny noted), then the
 * checks every allowed request must pass, whatever the path: the TLS-port
 * rule (a CONNECT is inspected there; plain HTTP and Upgrade are refused),
 * the source's upload budget, an audit log that can take the record.
 * R_ALLOWED or the refusal (audit mode records would-deny for what it may).
 * plain: not a CONNECT (a request inside an intercepted tunnel is not plain:
 * it arrived over TLS).
 */
enum reason conn_admit(struct conn *c, bool plain);
/* Remember a would-deny (audit mode) without blocking: the first reason wins. */
void conn_would_deny(struct conn *c, enum reason why);
/* Is `port` in the tier's tls.require_tls_ports? */
bool conn_tls_port(const struct conn *c, uint16_t port);

/*
 * Charge n bytes moving one way (upload: client -> upstream) to every cap
 * and budget: the source's upload budget, the byte counters and metrics,
 * and, when `capped`, the tier's byte cap for the current scope (a tunnel,
 * or one forwarded exchange and the relay an upgrade turns it into).
 * Returns how many of the n may pass; *cut says why the rest may not
 * (R_ALLOWED: all pass).  Audit mode passes all and records a would-deny.
 */
uint64_t conn_charge(struct conn *c, bool upload, uint64_t n, bool capped, enum reason *cut);
/* The same for bytes that go whole or not at all (a head): true when all may pass. */
bool conn_charge_whole(struct conn *c, bool upload, uint64_t n, bool capped, enum reason *cut);

/* Write the exchange's record (once): a refusal (allowed false) or an end. conn_audit.c */
void conn_audit(struct conn *c, enum reason why, bool allowed);
/*
 * Promise room in the audit queue to the exchange's record, from admission on
 * (an estimate of its size, with room for what the first flight adds).  False
 * when the queue cannot promise it: refuse with audit_unavailable.
 */
bool conn_audit_reserve(struct conn *c);
/*
 * A tunnel started (CS_TUNNEL entered): its start record when audit.tunnel_start,
 * and the first interim record's time.  Neither uses the room promised to the
 * close record: when the queue has no other room they are lost (counted), the
 * close record never.  conn_audit.c
 */
void conn_audit_tunnel_start(struct conn *c);
/*
 * The tunnel's interim record if one is due at monotonic `now` (audit.interim);
 * nanoseconds until the next one (UINT64_MAX: none).  conn_audit.c
 */
uint64_t conn_audit_interim(struct conn *c, uint64_t now);
/*
 * An intercepted tunnel's session opened (its client handshake completed):
 * the CONNECT's record, a start record (the requests inside get their own),
 * in the room promised to it.  conn_audit.c
 */
void conn_audit_session(struct conn *c);
/* The record of a refusal at accept, before a connection object exists. conn_audit.c */
void conn_audit_raw(struct conn_env *env, const struct sockaddr *sa, enum reason why);
/* The next exchange on this connection (keep-alive): reset what belonged to the last one. */
void conn_next_exchange(struct conn *c);

/*
 * Refuse with an HTTP status, before anything of a response reached the
 * client: record, write the refusal, flush, close.
 */
void conn_refuse(struct conn *c, enum reason why);
/*
 * Refuse after 200 (the first flight): no status can be sent any more; the
 * upstream is reset so it receives nothing, the client is closed, recorded.
 */
void conn_cut(struct conn *c, enum reason why);
/*
 * End after writing: stop reading, let what was let through reach both
 * peers (bounded), then close (the client side lingers).  The record, if
 * not written yet, says `why`.
 */
void conn_finish(struct conn *c, enum reason why);
/* The one teardown: record (once), release everything; the object goes at the loop's end. */
void conn_close(struct conn *c, enum reason why);

#endif
