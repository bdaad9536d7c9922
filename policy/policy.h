/* The policy snapshot: YAML loading and validation, identity, and decisions. */
#ifndef PORTCULLIS_POLICY_H
#define PORTCULLIS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "host.h"
#include "reason.h"

#define POLICY_MAX_RESOLVERS 8
#define POLICY_MAX_LISTEN 8
/* Audit queue room per allowed connection when audit.queue_size is unset: each admitted
 * exchange has its record's room promised (about 1.5 KiB in ECS with the SIEM fields, 1.8 KiB
 * in OCSF) and the queue refuses new ones at 90%. */
#define AUDIT_ROOM_PER_CONN 2048u
#define AUDIT_ROOM_PER_CONN_OCSF 2560u

/* audit.format values. */
#define POLICY_AUDIT_ECS  0
#define POLICY_AUDIT_OCSF 1

/* A host:port socket address from the policy (listen / resolver entries). */
struct policy_sockaddr {
	struct pc_addr addr;
	uint16_t port;
};

enum tier_mode { TIER_ENFORCE = 0, TIER_AUDIT = 1 };

/*
 * Per-tier settings the proxy reads.  Every value is resolved at load, key by
 * key: the tier's own key, else the top-level tls: / caps: / timeouts: key,
 * else the built-in default.  tls.* and caps.* are enforced by the tunnel
 * inspection.
 */
struct policy_tier {
	const char *name;
	enum tier_mode mode;
	/* tls: */
	bool require_sni;           /* default true */
	bool sni_must_match;        /* default true */
	bool allow_ech;             /* default false */
	/* tls.ja4_allow / tls.ja4_deny: JA4 fingerprints of the ClientHello (policy_ja4_valid
	 * shape, lowercase as logged).  A hello whose JA4 is denied, or not in a non-empty allow
	 * list, is refused with tls_ja4_not_allowed. */
	const char *const *ja4_allow;
	size_t n_ja4_allow; /* 0: any JA4 (default) */
	const char *const *ja4_deny;
	size_t n_ja4_deny;
	const uint16_t *tls_ports;  /* require_tls_ports, default {443} */
	size_t n_tls_ports;
	/* caps: 0 = unlimited */
	uint64_t upload_bytes;
	uint64_t download_bytes;
	uint32_t connections_per_source;
	/* timeouts in milliseconds (a tier without its own key gets the global value) */
	uint32_t idle_timeout_ms;
	uint32_t max_lifetime_ms;
	uint32_t connect_timeout_ms;
	/* caps.upload_bytes_per_source: one budget per source address over all its
	 * connections, a fixed window from the source's first upload byte, refilled
	 * when the window ends. */
	uint64_t upload_budget_bytes;     /* 0 = none (default) */
	uint32_t upload_budget_window_ms; /* 1s..24h; 0 when there is no budget */
	/* tls: ClientHello limits */
	uint32_t hello_timeout_ms; /* tls.hello_timeout, default 5s */
	uint32_t max_hello_bytes;  /* tls.max_hello_bytes, default 16KiB */
	/*
	 * http: plain-HTTP forwarding only ("GET http://host/path" through
	 * HTTP_PROXY); CONNECT is governed by the allow rules, their ports and tls:.
	 * Resolved like tls: and caps:: tier key, else top-level http:, else built-in.
	 */
	const char *const *http_methods; /* http.methods: uppercase tokens, never CONNECT */
	size_t n_http_methods;           /* 0 = any method (default) */
	bool http_allow_upgrade;         /* http.allow_upgrade: forward Upgrade, default false */
};

/*
 * May a plain-HTTP request with this method go through tier t?  Exact,
 * case-sensitive comparison (RFC 9110 §9.1: "get" is not GET).  With no
 * http.methods list every method is allowed, except that CONNECT is never a
 * plain-HTTP method and is always false here.  NULL t, NULL method or
 * len == 0: false.
 */
bool policy_tier_method_allowed(const struct policy_tier *t, const char *method, size_t len);

/*
 * May a ClientHello with this JA4 fingerprint (NUL-terminated, as ja4.h
 * writes it) go through tier t?  False when it is in tls.ja4_deny, or when
 * tls.ja4_allow is set and does not hold it; exact comparison.
 */
bool policy_tier_ja4_allowed(const struct policy_tier *t, const char *ja4);

/*
 * Is s (n bytes) shaped like a JA4 fingerprint (FoxIO JA4, technical_details/JA4.md):
 * [tqd] two version characters [0-9a-z], [di], four digits, two ALPN characters
 * [0-9A-Za-z], "_", 12 hex digits, "_", 12 hex digits, hex in lowercase?
 */
bool policy_ja4_valid(const char *s, size_t n);

#define POLICY_MAX_KUBE_NAMESPACES 64
#define POLICY_MAX_AUDIT_LABELS 8
#define POLICY_LABEL_KEY_MAX 317 /* Kubernetes: 253-byte prefix, '/', 63-byte name */

/* identity.kubernetes.namespaces: one watched namespace and its tier. */
struct policy_kube_ns {
	const char *ns;
	int tier;
};

/*
 * identity.kubernetes: pod identity from the Kubernetes API.  Exactly one of
 * namespaces (watch each; the tier is the namespace's) or tier_label (watch
 * every namespace with label_selector; the tier is the label's value).
 */
struct policy_kube {
	bool enabled;
	bool api_server_set;               /* else KUBERNETES_SERVICE_HOST/PORT at start-up */
	struct policy_sockaddr api_server; /* https://IP:port */
	const char *token_file;            /* default: the in-cluster service-account paths */
	const char *ca_file;
	const struct policy_kube_ns *namespaces; /* sorted by name */
	size_t n_namespaces;
	const char *tier_label;     /* NULL in namespaces mode */
	const char *label_selector; /* tier_label mode: default the tier_label key */
	const char *const *audit_labels; /* label keys copied into audit records */
	size_t n_audit_labels;
	uint32_t watch_timeout_ms; /* default 5m: timeoutSeconds of each watch */
	uint32_t backoff_max_ms;   /* default 30s: reconnect backoff ceiling */
	uint32_t max_pods;         /* default 65536: pods held in the map */
};

/*
 * listen.proxy[i].proxy_protocol: the PROXY protocol header a load balancer
 * sends first (docs/proxy-protocol.md).  accept is 0 (off: no header is read)
 * or POLICY_PP_V1 | POLICY_PP_V2; whom it is taken from is
 * policy_listen_trusted.
 */
#define POLICY_PP_V1 1u
#define POLICY_PP_V2 2u
struct policy_listen_pp {
	unsigned accept;     /* mode: off 0, v1, v2, either (both bits) */
	uint32_t timeout_ms; /* the whole header within this, default 3s */
};

enum policy_client_certs {
	POLICY_CLIENT_CERTS_OFF = 0, /* never asked for (default) */
	POLICY_CLIENT_CERTS_REQUEST, /* asked for; without one, identified as on a plain listener */
	POLICY_CLIENT_CERTS_REQUIRE, /* asked for; a connection without one is refused */
};

/*
 * listen.tls: the TLS listeners' certificate, and client certificates (mTLS).
 * File paths are fixed at start-up; the files' contents reload (certs/).
 */
struct policy_listen_tls {
	const char *cert; /* PEM chain, leaf first */
	const char *key;  /* PEM key of the leaf */
	enum policy_client_certs client_certs;
	const char *client_ca; /* PEM CA bundle client certificates must chain to */
	const char *crl;       /* PEM CRLs checked for the client's leaf, or NULL */
};

/*
 * interception: (top level) the CA that signs the leaves minted for
 * intercepted hosts (docs/policy.md#interception).  Required when any allow
 * rule has intercept:.  File paths are fixed at start-up; the files' contents
 * reload (like listen.tls).
 */
struct policy_interception {
	bool enabled;              /* the section is given (with ca_cert and ca_key) */
	const char *ca_cert;       /* PEM CA certificate that signs minted leaves */
	const char *ca_key;        /* its PEM private key */
	const char *upstream_ca;   /* CA bundle upstream certificates verify against, or
	                            * NULL: the system trust store (OpenSSL default paths) */
	uint32_t leaf_lifetime_ms; /* leaf_lifetime, default 24h, 1h..720h (30 days) */
	uint32_t cache_size;       /* cache_size: minted leaves kept, default 1000, 1..100000 */
};

#define POLICY_MAX_CERT_RULES 256

/* identity.client_certs: one rule mapping a client certificate to a tier. */
enum policy_cert_match {
	POLICY_CERT_SPIFFE, /* the certificate's one SPIFFE ID (URI SAN), spiffe_pattern_match */
	POLICY_CERT_DNS,    /* any DNS SAN, host pattern ("name" or "*.name") */
	POLICY_CERT_CN,     /* the subject's common name, exact */
};

struct policy_cert_rule {
	enum policy_cert_match kind;
	const char *pattern; /* spiffe / cn: the text; dns: the pattern as written */
	size_t len;
	struct pc_host host; /* dns: canonical pattern */
	bool wildcard;       /* dns: "*.name" */
	int tier;
};

/*
 * What a client certificate says of its holder, for policy_identify_cert
 * (certs/ extracts it from a verified leaf).
 */
struct policy_cert_id {
	const char *spiffe;      /* its one SPIFFE ID, already valid (spiffe_id_parse), or NULL */
	const char *const *dns;  /* its DNS SANs as written */
	size_t n_dns;
	const char *cn;          /* the subject's common name, or NULL */
};

/*
 * listen.proxy[i].auth: does the listener ask for an OIDC ID token in
 * Proxy-Authorization (docs/oidc.md)?  off: the header is ignored (never
 * forwarded either); optional: a token that comes is verified and decides,
 * none leaves the other identities; required: none sent is a 407.
 */
enum policy_auth { POLICY_AUTH_OFF = 0, POLICY_AUTH_OPTIONAL, POLICY_AUTH_REQUIRED };

#define POLICY_MAX_OIDC_PROVIDERS 8
#define POLICY_MAX_OIDC_RULES 256
#define POLICY_MAX_OIDC_MATCH 8
#define POLICY_MAX_OIDC_AUDIENCES 8

/* Which CI system signs a provider's tokens: the claims a CI token carries and rules name. */
enum policy_oidc_kind { POLICY_OIDC_GITLAB = 0, POLICY_OIDC_GITHUB };

/* One claim a rule matches: pattern is exact text, or a glob where '*' is any run of bytes. */
struct policy_oidc_match {
	const char *claim;
	const char *pattern;
};

struct policy_oidc_rule {
	const char *name; /* its name:, or "<provider>[i]" */
	unsigned line, col;
	const struct policy_oidc_match *match; /* all must hold */
	size_t n_match;
	int tier;
};

/* identity.oidc.providers[i] */
struct policy_oidc_provider {
	const char *name;
	enum policy_oidc_kind kind;
	const char *issuer;                 /* exact: a trailing slash is another issuer */
	const char *const *audiences;
	size_t n_audiences;
	unsigned algs;                      /* JWT_ALG_* bits: 1 RS256, 2 ES256 */
	const char *jwks_file;              /* absolute path, read with the policy, or NULL */
	unsigned jwks_line, jwks_col;       /* for messages about the file */
	/* jwks_url (instead of jwks_file): fetched by the proxy (proxy/jwksfetch.h) */
	const char *jwks_url;               /* https://host[:port]/path as written, or NULL */
	const char *jwks_host;              /* canonical: a name, or an address without brackets */
	uint16_t jwks_port;                 /* default 443 */
	const char *jwks_path;              /* "/..." (with any query) */
	const char *jwks_ca_file;           /* CA bundle for the URL, or NULL: the system's */
	uint32_t jwks_refresh_min_ms;       /* cache floor, default 5m */
	uint32_t jwks_refresh_max_ms;       /* cache ceiling, default 1h */
	uint32_t jwks_max_stale_ms;         /* no successful fetch for this long: keys dropped */
	uint32_t leeway_ms;                 /* exp / nbf / iat, default 60s */
	uint32_t lease_ms;                  /* use after exp by the bound source, default 0 */
	const char *username;               /* Basic's user must be this, or NULL: any */
	bool no_match_source;               /* no rule matched: the other identities decide */
	const struct policy_oidc_rule *rules;
	size_t n_rules;
};

/* Global settings. Durations in milliseconds, sizes in bytes. */
struct policy_settings {
	struct policy_sockaddr listen_proxy[POLICY_MAX_LISTEN]; /* listen.proxy: string or list */
	size_t n_listen_proxy;
	struct policy_listen_pp listen_pp[POLICY_MAX_LISTEN]; /* per listen_proxy entry */
	enum policy_auth listen_auth[POLICY_MAX_LISTEN];      /* per listen_proxy entry */
	struct policy_sockaddr listen_https[POLICY_MAX_LISTEN]; /* listen.https: TLS listeners */
	size_t n_listen_https;
	struct policy_listen_tls listen_tls; /* listen.tls, when n_listen_https > 0 */
	struct policy_sockaddr listen_admin; /* listen.admin, default 127.0.0.1:9090 */
	unsigned workers;                    /* listen.workers / "auto" = 0 (number of CPUs) */

	struct policy_sockaddr resolvers[POLICY_MAX_RESOLVERS]; /* resolver.servers, port default 53 */
	size_t n_resolvers;
	uint32_t resolver_timeout_ms;  /* default 1500 */
	uint32_t resolver_attempts;    /* default 2 */
	uint32_t resolver_max_answers; /* default 16: answers beyond are ignored */

	const char *audit_output; /* "-" = stdout (default) or a file path */
	uint64_t audit_queue_bytes; /* audit.queue_size, default max(16MiB, 2KiB x max_connections) */
	unsigned audit_format;      /* audit.format: POLICY_AUDIT_ECS (default) or POLICY_AUDIT_OCSF */
	bool audit_tunnel_start;    /* audit.tunnel_start: a record when each tunnel opens (false) */
	uint32_t audit_interim_ms;  /* audit.interim: a record every this long while a tunnel is
	                             * open (default 5m; 0 = off) */

	uint32_t max_connections;   /* limits.max_connections, default 10000 */
	uint32_t max_sources;       /* limits.max_sources: per-source table size, default 1000000 */
	uint32_t header_timeout_ms; /* limits.header_timeout, default 10s */
	uint32_t max_header_bytes;  /* limits.max_header_bytes, default 8KiB */
	uint32_t max_headers;       /* limits.max_headers, default 100 */
	uint32_t connect_timeout_ms; /* timeouts.connect, default 5s */
	uint32_t idle_timeout_ms;    /* timeouts.idle, default 5m */
	uint32_t max_lifetime_ms;    /* timeouts.max_lifetime, default 1h */
	uint32_t drain_timeout_ms;   /* timeouts.drain, default 30s */

	int unknown_source_tier; /* identity.unknown_source: -1 = deny (default), else a tier index */
	/* Per-source connection limit of a source that maps to no tier (held from accept
	 * to close, like a tier's): the top-level caps.connections_per_source, default 256. */
	uint32_t unknown_connections_per_source;
	/* identity.ipv6_source_prefix, default 64: IPv6 sources are grouped by this
	 * prefix length for every per-source limit (addr_source_group). */
	uint32_t ipv6_source_prefix;
	struct policy_kube kube;  /* identity.kubernetes */
	/* identity.client_certs, in order: the first rule a certificate matches decides. */
	const struct policy_cert_rule *cert_rules;
	size_t n_cert_rules;
	/* identity.oidc: CI jobs' OIDC ID tokens (docs/oidc.md) */
	const struct policy_oidc_provider *oidc;
	size_t n_oidc;
	uint32_t oidc_max_bindings; /* identity.oidc.max_bindings, default 65536 */
	struct policy_interception interception; /* interception: */
};

/* One validation problem, located in the file. */
struct policy_diag {
	unsigned line; /* 1-based; 0 when not tied to a place */
	unsigned col;  /* 1-based */
	char msg[240];
};

/* Collected problems.  Loading reports every problem it can find. */
struct policy_diags {
	struct policy_diag *v;
	size_t n, cap;
};

void policy_diags_init(struct policy_diags *d);
void policy_diags_fini(struct policy_diags *d);

/* An immutable, reference-counted snapshot (opaque). */
struct policy;

enum policy_status {
	POLICY_OK = 0,
	POLICY_ERR_INVALID = -1, /* diags holds the reasons */
	POLICY_ERR_IO = -2,      /* file could not be read; diags holds strerror */
	POLICY_ERR_NOMEM = -3,
};

/*
 * Parse and validate YAML.  On success *out holds a snapshot with refcount 1.
 * On failure *out is NULL and d lists every problem (file name is not stored
 * in diags; callers print "name:line:col: msg").
 */
int policy_load_buffer(const char *buf, size_t len, struct policy **out, struct policy_diags *d)
	__attribute__((warn_unused_result));
/*
 * The one policy file loader (the daemon's start-up, --check and reload, and
 * the tests): read the file (at most 1 MiB), then policy_load_buffer.
 * sha256 (may be NULL) receives the file's SHA-256 in hex ("" on error).
 * An unreadable file is POLICY_ERR_IO with one diag (line 0) saying why.
 */
int policy_load_file(const char *path, struct policy **out, struct policy_diags *d,
		     char sha256[65]) __attribute__((warn_unused_result));

struct policy *policy_ref(struct policy *p);   /* atomic; thread-safe */
void policy_unref(struct policy *p);           /* atomic; NULL is a no-op */

const struct policy_settings *policy_settings(const struct policy *p);
size_t policy_tier_count(const struct policy *p);
const struct policy_tier *policy_tier(const struct policy *p, size_t i);
size_t policy_rule_count(const struct policy *p);  /* allow rules over all tiers */
size_t policy_range_count(const struct policy *p); /* blocked (built-in + file) + allow_ranges */

/*
 * May the peer of a connection accepted on listen_proxy[listener] send the
 * PROXY header (is it in that listener's proxy_protocol.trusted)?  False for
 * a listener without PROXY protocol.
 */
bool policy_listen_trusted(const struct policy *p, size_t listener, const struct pc_addr *peer);

/*
 * Identity from a client certificate: the tier of the first identity.client_certs
 * rule it matches, or -1 when none does (the caller refuses: a certificate is
 * never identified by its source address instead).  *rule: the matching rule's
 * pattern (for the record), or NULL.
 */
int policy_identify_cert(const struct policy *p, const struct policy_cert_id *id,
                         const char **rule);

/* The provider whose issuer is exactly iss, or NULL. */
const struct policy_oidc_provider *policy_oidc_provider(const struct policy *p, const char *iss);

/* policy_identify_oidc's answers besides a tier index. */
#define POLICY_OIDC_NO_RULE (-1) /* a CI token no rule matched (no_match decides) */
#define POLICY_OIDC_NOT_CI  (-2) /* the token lacks the provider kind's CI claims */

/*
 * Identity from a VERIFIED token's claims (claim(ctx, name): its value as
 * text, or NULL): a GitLab token must carry job_id and pipeline_source, a
 * GitHub token run_id and repository, else POLICY_OIDC_NOT_CI (the
 * issuer's keys also sign tokens that are not a job's).  Then the first rule
 * all of whose claims match: its tier, *rule its name.  Else
 * POLICY_OIDC_NO_RULE.
 */
int policy_identify_oidc(const struct policy_oidc_provider *pv,
                         const char *(*claim)(const void *ctx, const char *name),
                         const void *ctx, const char **rule);

/* Does glob ('*' any run of bytes, all else literal) match s? */
bool policy_oidc_glob(const char *glob, const char *s);

/*
 * State the daemon loads with a snapshot and that lives and dies with it
 * (the OIDC providers' keys): set once, before the snapshot is shared;
 * freed by free_fn when the last reference goes.
 */
void policy_set_ext(struct policy *p, void *ext, void (*free_fn)(void *));
const void *policy_ext(const struct policy *p);

/* Identity: tier index for a source address (longest `sources` prefix), or unknown_source_tier. */
int policy_identify(const struct policy *p, const struct pc_addr *src);

/*
 * Identity of a pod from the Kubernetes map: its tier by namespace
 * (namespaces mode) or by the value of the tier label (tier_label_value, NULL
 * when the pod lacks the label).  A pod that maps to no tier gets
 * unknown_source_tier, never a static `sources` tier: it is a known pod
 * without a tier, not an unknown address.
 */
int policy_identify_pod(const struct policy *p, const char *ns, const char *tier_label_value);

/*
 * An allow rule's intercept: block, compiled (docs/policy.md#interception):
 * its hosts' TLS is terminated by the proxy and every request inside is
 * decided by policy_intercept_decide.  Lives in the snapshot.
 */
struct policy_intercept_req; /* one requests: entry (opaque) */
struct policy_intercept {
	bool default_allow;        /* default: allow (else deny, the default) */
	uint64_t max_request_body; /* max_request_body in bytes; 0: none */
	/* encoded_slash: decode: a "%2F" in a path is a '/' for the checks and the match (npm's
	 * scoped packages, "/@scope%2Fname"); else (refuse, the default) a bad path. */
	bool decode_encoded_slash;
	/* requests:, in file order: the first match decides */
	const struct policy_intercept_req *requests;
	size_t n_requests;
};

/* A decision. rule points into the snapshot (valid while it is referenced) or is "". */
struct verdict {
	bool allow;          /* the connection may proceed (true also for audit-mode would-deny) */
	bool would_deny;     /* audit mode: enforce would have refused with `reason` */
	enum reason reason;  /* R_ALLOWED or why not */
	const char *rule;    /* matched rule's name (its host pattern text) */
	unsigned rule_line;  /* the allowing rule's line in the file (0: none) */
	/* port_not_allowed: the line of the first rule that matched the host (0: none). */
	unsigned host_rule_line;
	/* The allowing rule's intercept: block, or NULL: never intercepted (a plain tunnel).
	 * NULL on every refusal, audit-mode would_deny included. */
	const struct policy_intercept *intercept;
};

/*
 * (tier, canonical host, port) → verdict.  tier < 0 → R_UNKNOWN_SOURCE.
 * An IP-literal host is first checked against the blocked ranges
 * (R_BLOCKED_ADDRESS unless the tier's allow_ranges contains it; enforced in
 * every mode), then against the allowlist like a name: IP-literal rules
 * match the address exactly (allow_ranges only lifts the block, it is not an
 * allow rule).  Names: first matching rule whose ports include `port`; a name
 * matching only rules with other ports → R_PORT_NOT_ALLOWED.
 * Audit-mode tiers turn allowlist refusals into allow + would_deny.
 */
void policy_decide_host(const struct policy *p, int tier, const struct pc_host *host, uint16_t port,
			struct verdict *out);

/*
 * One request to an intercepted host → R_ALLOWED, R_INTERCEPT_DENIED or
 * R_INTERCEPT_BAD_PATH.  target (tlen bytes) is the raw origin-form
 * request-target (the query is never matched).  Its path is read the ways
 * servers read it: as sent (with encoded_slash: decode, every "%2F" a '/'),
 * without the segments' ";parameters", and either without a trailing '/'.
 * A reading urlpath_check refuses (no leading '/', '#', a bad or forbidden
 * escape, a dot or empty segment, a raw backslash, control or non-ASCII byte:
 * policy/urlpath.h) is R_INTERCEPT_BAD_PATH whatever the rules say,
 * *rule_name "".  Otherwise the path as sent decides by the first requests:
 * entry whose methods hold method (ASCII case aside; no list: any) and whose
 * glob matches (ASCII case-insensitive), *rule_name its name; none: default,
 * *rule_name "default"; but another reading that meets a deny entry refuses,
 * naming it.  Out of memory (the readings are a copy) is R_INTERCEPT_BAD_PATH.
 * ic NULL fails closed (R_INTERCEPT_DENIED).  rule_name may be NULL; the name
 * points into the snapshot.  Audit mode is the caller's (would_deny).
 */
enum reason policy_intercept_decide(const struct policy_intercept *ic, const char *method,
                                    size_t mlen, const char *target, size_t tlen,
                                    const char **rule_name);

/* The block's max_request_body in bytes; 0 (also for NULL): no cap. */
uint64_t policy_intercept_max_body(const struct policy_intercept *ic);

/*
 * The host patterns (as written, canonical: "github.com", "*.npmjs.org") of
 * tier's allow rules with intercept:, in file order, each once: returns how
 * many there are and stores the first cap of them in patterns (may be NULL
 * when cap is 0).  0 for a tier that intercepts nothing, or no such tier.
 */
size_t policy_tier_intercepts(const struct policy *p, int tier, const char **patterns, size_t cap);

/*
 * (tier, resolved addresses) → verdict: deny R_RESOLVED_TO_BLOCKED if any
 * address is in a blocked range (embedded IPv4 included) and not in the
 * tier's allow_ranges.  Enforced in every mode.  n == 0 → R_DNS_ERROR.
 */
void policy_decide_addrs(const struct policy *p, int tier, const struct pc_addr *addrs, size_t n,
			 struct verdict *out);

/* Is this single address blocked for the tier?  (The check policy_decide_addrs applies to each.) */
bool policy_addr_blocked(const struct policy *p, int tier, const struct pc_addr *a);

/* Why an address is blocked (portcullis explain): the view that is blocked and its range. */
struct policy_block {
	struct pc_addr view;  /* the address itself, or an IPv4 address embedded in it */
	bool embedded;        /* view was read out of the IPv6 address (mapped, NAT64, 6to4...) */
	bool nat64_unknown;   /* 64:ff9b::/32 outside the /96: the IPv4 address cannot be read */
	struct pc_addr prefix; /* the blocking range (prefix/plen) */
	unsigned plen;
	unsigned line;        /* the blocked_ranges entry's line in the file; 0 = built-in */
};

/* policy_addr_blocked, the same check, telling why in *why when blocked (why may be NULL). */
bool policy_addr_blocked_why(const struct policy *p, int tier, const struct pc_addr *a,
			     struct policy_block *why);

/*
 * The `sources` entry of tier that holds src (the longest), as text "cidr" and
 * its line in the file; false when none does (IPv4-mapped sources as IPv4).
 */
bool policy_source_place(const struct policy *p, int tier, const struct pc_addr *src, char *cidr,
			 size_t cap, unsigned *line);

/* Where a tier is written in its file, for tools that edit it (portcullis learn's diff). */
struct policy_tier_places {
	unsigned key_line, key_col;     /* the tier's name */
	unsigned body_line, body_col;   /* its mapping's first key ('{' if flow); 0: empty body */
	unsigned allow_line, allow_col; /* allow:'s value (first '-', or '['); 0: no allow key */
	size_t n_rules;
};
bool policy_tier_places(const struct policy *p, int tier, struct policy_tier_places *out);

/* The place (line, column) in the file of rule i of tier t; false when out of range. */
bool policy_rule_place(const struct policy *p, int tier, size_t i, const char **name,
		       unsigned *line, unsigned *col);

/* Status of the unit parsers below (0 or negative). */
enum policy_unit_status {
	POLICY_UNIT_OK = 0,
	POLICY_UNIT_ERR_EMPTY = -1,
	POLICY_UNIT_ERR_SYNTAX = -2,       /* not digits[unit]: sign, fraction, space, junk */
	POLICY_UNIT_ERR_LEADING_ZERO = -3, /* "010": octal to some YAML readers, refused */
	POLICY_UNIT_ERR_UNIT = -4,         /* unknown (or wrongly cased) unit */
	POLICY_UNIT_ERR_NO_UNIT = -5,      /* duration other than 0 without a unit */
	POLICY_UNIT_ERR_OVERFLOW = -6,     /* does not fit in 64 bits */
};

/* Short plain-English text of a policy_unit_status, for messages. */
const char *policy_unit_status_str(int status);

/*
 * Units (case-sensitive, no space, no sign, no fraction, no leading zeros):
 * sizes: digits + "", B, KB, MB, GB, TB (x1000) or KiB, MiB, GiB, TiB (x1024);
 * durations: digits + ms, s, m, h (a unit is required unless the value is 0),
 * stored in milliseconds.  Overflow of uint64 is POLICY_UNIT_ERR_OVERFLOW.
 */
int policy_parse_size(const char *s, size_t len, uint64_t *out) __attribute__((warn_unused_result));
int policy_parse_duration_ms(const char *s, size_t len, uint64_t *out)
	__attribute__((warn_unused_result));

#endif
