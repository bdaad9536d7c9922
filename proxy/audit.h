/* Audit log: ECS JSON records, formatted by workers, written by one writer thread. */
#ifndef PORTCULLIS_AUDIT_H
#define PORTCULLIS_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "reason.h"

/* Which record of an exchange (event.type, and the OCSF activity). */
enum audit_phase {
	AUDIT_FINAL = 0, /* the exchange's one closing record: a refusal, or its end */
	AUDIT_START,     /* a tunnel started (audit.tunnel_start) */
	AUDIT_INTERIM,   /* a tunnel is still open (audit.interim) */
};

/* audit.format: the schema every record is written in. */
enum audit_format {
	AUDIT_FMT_ECS = 0, /* Elastic Common Schema 9.4 (default) */
	AUDIT_FMT_OCSF,    /* OCSF 1.1.0: Network Activity (4001), HTTP Activity (4002) */
};

/* Everything one record can carry. Strings may be NULL (field omitted). */
struct audit_rec {
	uint64_t ts_ns;            /* wall clock, ns since the epoch: when this record's event
	                            * happened (@timestamp, event.end) */
	uint64_t start_ns;         /* event.start: when the exchange began (0: ts_ns - duration_ns) */
	uint64_t duration_ns;      /* event.duration: start to ts */
	enum audit_phase phase;
	bool tunnel_end;           /* FINAL: true an exchange ended; false a refusal at decision time */
	bool allowed;              /* event.type allowed vs denied; outcome success vs failure */
	enum reason reason;        /* event.reason */
	uint64_t id_prefix;        /* this process's random id prefix (audit_log_id_prefix) */
	uint64_t event_id;         /* event.id: unique per record (audit_log_next_id) */
	uint64_t conn_id;          /* trace.id: shared by every record of one client connection */
	const char *community_id;  /* network.community_id of the client's flow */
	const struct pc_addr *src; /* source.ip */
	uint16_t src_port;
	/* Through a load balancer (PROXY protocol): src is the client its header named; the
	 * balancer that connected is the source's translation (NULL: none). */
	const struct pc_addr *src_nat; /* source.nat.ip */
	uint16_t src_nat_port;         /* source.nat.port */
	const char *aws_vpce_id;       /* labels.aws_vpce_id: the header's AWS VPC endpoint ID */
	const char *dst_domain;    /* destination.domain (canonical host name) */
	const struct pc_addr *dst_ip; /* destination.ip */
	uint16_t dst_port;
	const char *method;        /* http.request.method */
	int status;                /* http.response.status_code (0: omit) */
	uint64_t bytes_up;         /* source.bytes (client → upstream) */
	uint64_t bytes_down;       /* destination.bytes (upstream → client) */
	const char *rule;          /* rule.name */
	const char *tier;          /* rule.ruleset */
	const char *would_deny;    /* labels.would_deny (audit mode) */
	const char *url_domain;    /* url.domain (plain HTTP) */
	const char *url_path;      /* url.path, never the query (plain HTTP) */
	uint16_t url_port;         /* url.port (plain HTTP; 0: omit) */
	/* A record of an intercepted tunnel (its session, or a request inside it):
	 * labels.intercepted "true", url.scheme "https"; intercept_rule: labels.intercept_rule, the
	 * request rule that decided ("default": none matched), NULL for the session's own record.
	 */
	bool intercepted;
	const char *intercept_rule;
	const char *user_agent;    /* user_agent.original (the request's User-Agent) */
	const char *sni;           /* tls.client.server_name */
	const char *tls_version;   /* tls.version ("1.3": highest offered) + tls.version_protocol "tls" */
	const char *tls_next_protocol; /* tls.next_protocol (the one ALPN protocol offered) */
	const char *ja4;           /* tls.client.ja4 (custom field: ECS 9.4 has none) */
	/* The client certificate on a TLS listener (x509_subject NULL: none). */
	const char *x509_subject; /* tls.client.x509.subject.distinguished_name */
	const char *x509_issuer;  /* tls.client.x509.issuer.distinguished_name */
	const char *x509_serial;  /* tls.client.x509.serial_number */
	const char *x509_cn;      /* tls.client.x509.subject.common_name (array of one) */
	const char *x509_sha256;  /* tls.client.hash.sha256 */
	int64_t x509_not_before, x509_not_after; /* tls.client.x509.not_before / not_after */
	const char *x509_sans[16];               /* tls.client.x509.alternative_names */
	size_t n_x509_sans;
	const char *user_id; /* source.user.id and related.user: the certificate's SPIFFE ID */
	/* The request's OIDC token (oidc_token NULL: none came).  Never the token itself. */
	const char *oidc_token;    /* labels.oidc_token_sha256: 16 hex digits of its SHA-256 */
	const char *oidc_issuer;   /* labels.oidc_issuer (verified tokens only, as all below) */
	const char *oidc_subject;  /* user.id and related.user: its sub */
	const char *oidc_project;  /* labels.oidc_project: project_path / repository */
	const char *oidc_ref;      /* labels.oidc_ref */
	const char *oidc_pipeline; /* labels.oidc_pipeline_id: pipeline_id / run_id */
	const char *oidc_job;      /* labels.oidc_job_id: job_id / run_id.run_attempt */
	const char *oidc_rule;     /* labels.oidc_rule: the identity.oidc rule that chose the tier */
	/* The source pod, from the Kubernetes map (pod_name NULL: no orchestrator fields). */
	const char *pod_ns;   /* orchestrator.namespace */
	const char *pod_name; /* orchestrator.resource.name; orchestrator.resource.type "pod" */
	const char *pod_uid;  /* orchestrator.resource.id */
	const char *pod_label_keys[8]; /* orchestrator.resource.label: ["key:value", ...] */
	const char *pod_label_values[8];
	size_t n_pod_labels;
	/* A counted record (audit_agg): this many refusals of one source, reason and
	 * tier between start_ns and ts_ns, not written on their own. */
	uint64_t aggregated;       /* labels.aggregated_refusals; event.action "refusals-aggregated" */
	bool aggregated_overflow;  /* of many sources: labels.aggregated_scope "many-sources" */
};

/*
 * The line a record is formatted into (conn_audit.c): whatever the client
 * sends, a record fits it (cut, see audit_text_caps).
 */
#define AUDIT_LINE_MAX 16384

/*
 * What the first flight usually adds to a record after admission: SNI, version, ALPN, the
 * JA4 (about 60 bytes), a would-deny.  A longer record takes the difference when the queue can
 * still promise it, else is cut to the promise (conn_audit.c submit; what is added after admission
 * fits it once cut, test_audit); the promise is sized for the common case so that 10,000 idle
 * tunnels fit the default queue with room to spare.
 */
#define AUDIT_RESERVE_SLACK 384

/*
 * Format one record as a single JSON line (with '\n') into buf, in ECS
 * (audit_ecs.c). Pure: no clock, no I/O. Returns the length, or 0 if it does
 * not fit even cut. hostname is observer.hostname. Every string is
 * JSON-escaped; when the record does not fit, the strings a client chose
 * (names, path, headers, certificate and pod fields, message) are cut to the
 * first of audit_text_caps that fits, and the record says so
 * (labels.truncated, OCSF unmapped.truncated).
 */
#define AUDIT_TEXT_CAPS 4
extern const size_t audit_text_caps[AUDIT_TEXT_CAPS];
size_t audit_format(const struct audit_rec *r, const char *hostname, char *buf, size_t n);
/* The same record in OCSF 1.1.0 (audit_ocsf.c). */
size_t audit_format_ocsf(const struct audit_rec *r, const char *hostname, char *buf, size_t n);
/* In the given format. */
size_t audit_format_as(enum audit_format f, const struct audit_rec *r, const char *hostname,
                       char *buf, size_t n);

/* A record id as 32 lowercase hex digits: the process prefix, then the sequence number. */
void audit_id_hex(uint64_t prefix, uint64_t id, char out[33]);

/* The ECS event.category / event.type / event.action of a record (also used by OCSF). */
const char *audit_action(const struct audit_rec *r);

/* The writer: one per process. Opaque. */
struct audit_log;

/*
 * Open the output ("-" = stdout, else a file opened O_APPEND|O_CREAT, 0640)
 * and start the writer thread. queue_bytes bounds the memory of records
 * waiting to be written. NULL on failure (errmsg filled).
 */
struct audit_log *audit_log_create(const char *output, size_t queue_bytes, char *errmsg,
				   size_t errlen);

/*
 * Queue one complete line (copied). Never blocks on I/O: takes a short lock
 * to append to the queue. Returns 0, or -1 if the queue is full (the record
 * is not written; the caller counts it and fails closed).
 */
int audit_log_submit(struct audit_log *l, const char *line, size_t len)
	__attribute__((warn_unused_result));

/*
 * Room promised to a record to come, so that no exchange is let through
 * whose record could then find the queue full: an allowed exchange reserves
 * the room for its record when it is admitted and writes into it at its end.
 * False when the queue (queued plus promised) is past the line
 * audit_log_available draws: fail closed, refuse the exchange.  Records
 * without a reservation (refusals) never take promised room.
 */
bool audit_log_reserve(struct audit_log *l, size_t bytes) __attribute__((warn_unused_result));
/* Give back a reservation that will not be used. */
void audit_log_unreserve(struct audit_log *l, size_t bytes);
/*
 * audit_log_submit into a reservation of `reserved` bytes (given back
 * whatever happens); a record longer than its reservation needs the
 * difference from room nobody was promised.
 */
int audit_log_submit_reserved(struct audit_log *l, const char *line, size_t len, size_t reserved)
	__attribute__((warn_unused_result));

/* True when the queue (queued plus promised) has room for new records (refuse new work when not). */
bool audit_log_available(const struct audit_log *l);

/*
 * True when records wait for the sink: an eighth of the queue or more. From
 * there on each source's refusals are aggregated (conn_audit.c), so that one
 * source cannot fill the queue and make every tenant's next request fail
 * closed.
 */
bool audit_log_pressed(const struct audit_log *l);

/* The format of every record (audit.format; fixed at start-up). */
void audit_log_set_format(struct audit_log *l, enum audit_format f);
enum audit_format audit_log_format(const struct audit_log *l);

/* Ask the writer to reopen the file at its next record (SIGUSR1). */
void audit_log_reopen(struct audit_log *l);

/* Flush everything queued, stop the thread, close. NULL is a no-op. */
void audit_log_destroy(struct audit_log *l);

/* Records dropped because the queue was full. */
/*
 * Ids for event.id and trace.id: a process-wide sequence (never 0) behind a
 * random 64-bit prefix drawn when the log was created, so ids from two
 * processes or two runs do not collide.  Thread-safe (one relaxed atomic).
 */
uint64_t audit_log_next_id(struct audit_log *l);
uint64_t audit_log_id_prefix(const struct audit_log *l);

uint64_t audit_log_dropped(const struct audit_log *l);

/*
 * Additions:
 * - audit_format NUL-terminates buf, so it needs the returned length + 1
 *   bytes; a record whose strings are all short and plain fits in 2 KiB
 *   (each escaped byte of a string may take up to 6).
 * - Event fields (docs/siem.md has the table): every category/type pair is
 *   one ECS 9.4 allows (tests/integration/ecs/event_categorization.csv).
 *   event.action is "tunnel" for a CONNECT's records and a NULL method,
 *   "connect" for a CONNECT refused at decision time, "http-request" for
 *   any other method; source.bytes / destination.bytes are written for every
 *   tunnel_end, start and interim record and otherwise only when not 0.
 * - Batching: audit_log_submit wakes the writer only when it sleeps with
 *   nothing queued (or when the batch it is collecting passes 64 KiB); a
 *   woken writer waits up to 5 ms for more records, then writes them all in
 *   one writev.  So a record reaches the file within about 5 ms plus the
 *   write, and a busy proxy pays one wake-up and one write per batch.
 * - audit_log_reopen only sets an atomic flag (async-signal-safe); the writer
 *   reopens before its next batch, or within a second when idle.  If the
 *   open fails it keeps the old file and retries every second.
 * - Write errors are retried (the queue fills, audit_log_available turns
 *   false and the proxy refuses new work); the writer thread has every
 *   signal blocked, so a closed stdout pipe is EPIPE, not SIGPIPE.
 */

/* Failed write()/open() calls of the writer so far, and the errno of the last one. */
uint64_t audit_log_write_errors(const struct audit_log *l);
int audit_log_last_errno(const struct audit_log *l);

#endif
