/* The server: worker threads, each with its own event loop, listeners, resolver and connections. */
#ifndef PORTCULLIS_SERVER_H
#define PORTCULLIS_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "metrics.h"
#include "policy.h"

struct event_base;
struct event;
struct evconnlistener;
struct audit_log;
struct dns_resolver;
struct conn;
struct srclimit;
struct admin;
struct podmap;
struct kube_client;

/* Per-worker counters: written only by the owning worker, read by anyone (relaxed). */
struct worker_stats {
	atomic_ullong audit_lost; /* records that could not be queued */
};

/*
 * The relay's largest read: a bulk transfer moves this much per recv(2) and
 * send(2), within the room left in the receiver's send buffer (tunnel.c: relay_window).
 * Each epoll round trip costs far more than the copy on a VM: 4 MiB reads took
 * 8-stream bulk from about 535 to 440-495 us of CPU per MiB against 1 MiB reads.
 */
#define WORKER_RELAY_BUF (4096u * 1024u)

/* One event loop on one thread. Everything here is touched only by that thread, except where noted. */
struct worker {
	struct server *srv;
	unsigned id;
	pthread_t thread;
	struct event_base *base;
	struct dns_resolver *dns;
	struct policy *policy; /* this worker's reference to the current snapshot */
	struct evconnlistener *listeners[POLICY_MAX_LISTEN];
	size_t n_listeners;
	struct event *notify_ev; /* the server pokes the worker through an eventfd */
	int notify_fd;
	struct event *backoff_ev; /* re-enables accepting after EMFILE/ENFILE */
	struct event *drain_ev;   /* cuts the remaining tunnels when the drain timeout expires */
	struct conn *conns;       /* every open connection of this worker (intrusive list) */
	size_t n_conns;
	bool draining;
	struct worker_stats stats;
	struct worker_metrics *metrics;      /* this worker's counters (read by the admin thread) */
	atomic_ullong heartbeat_ms;          /* last tick of this loop (monotonic ms), for /healthz */
	struct event *heartbeat_ev;
	_Atomic(struct policy *) next_policy; /* mailbox: a reloaded snapshot waiting to be adopted */
	uint16_t tier_slots[METRICS_MAX_TIERS]; /* metrics slot of each tier of `policy` */
	uint8_t hello_scratch[65536]; /* ClientHello reassembly, one parse at a time per loop */
	char *relay_buf;              /* WORKER_RELAY_BUF bytes: the tunnel relay reads into this */
};

struct server {
	struct policy *policy; /* main thread's reference */
	struct audit_log *audit;
	struct srclimit *srclimit; /* per-source limits shared by every worker */
	char hostname[256];
	struct worker *workers;
	unsigned n_workers;
	atomic_uint n_conns;    /* open connections over all workers (process ceiling) */
	atomic_bool draining;   /* SIGTERM/SIGINT received */
	atomic_uint workers_done;
	struct event_base *sigbase; /* main thread: signals, reloads */
	const char *policy_path;
	struct admin *admin;
	struct podmap *podmap;    /* pod IP -> pod (identity.kubernetes), or NULL */
	struct kube_client *kube; /* feeds podmap */
	struct metrics_tiers tiers;
	atomic_ullong reloads_ok, reloads_failed;
	pthread_mutex_t info_lock; /* guards the two fields below (written on reload, read by scrapes) */
	char policy_sha256[65];
	double policy_loaded_at;
	double start_time;
	int inotify_fd;
	struct event *inotify_ev, *reload_ev;
};

/*
 * Read, hash (SHA-256, hex into sha256) and validate a policy file. Problems
 * go to stderr as "FILE:LINE:COL: message" lines, or as JSON error log lines
 * when as_log. NULL when the file is unreadable or invalid. The one validator
 * behind --check, start-up and reload.
 */
struct policy *policy_file_load(const char *path, bool as_log, char sha256[65]);

/* Create listeners and workers from the policy. Returns 0 or -1 with errmsg filled. */
int server_init(struct server *s, struct policy *p, const char *path, const char *sha256,
		struct audit_log *audit, char *errmsg, size_t errlen)
	__attribute__((warn_unused_result));
/* Run the workers and the signal loop until drained. Returns the process exit status. */
int server_run(struct server *s);
void server_fini(struct server *s);

/* Called by conn.c when a worker's last connection closed (drain completion check). */
void worker_conn_gone(struct worker *w);

/* A sockaddr_in / sockaddr_in6 for an address and port; returns its length. */
struct sockaddr_storage;
socklen_t sockaddr_make(const struct pc_addr *a, uint16_t port, struct sockaddr_storage *ss);

/* Monotonic clock in nanoseconds and wall clock in ns since the epoch. */
uint64_t mono_ns(void);
uint64_t wall_ns(void);

/* Operational log: one JSON line on stderr. level: "info", "warn", "error". */
void oplog(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
