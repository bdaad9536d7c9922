/* Reason codes: one enum of stable machine-readable names, each with its HTTP status. */
#ifndef PORTCULLIS_REASON_H
#define PORTCULLIS_REASON_H

/*
 * Stable: names never change once released; new codes are appended.
 * Keep in sync with docs/reasons.md's table (a unit test checks the names).
 */
enum reason {
	R_ALLOWED = 0,             /* 200 allowed by a rule */
	/* decision refusals */
	R_UNKNOWN_SOURCE,          /* 403 source address maps to no tier */
	R_HOST_NOT_ALLOWED,        /* 403 host matches no rule of the tier */
	R_PORT_NOT_ALLOWED,        /* 403 host matches but port is not in the rule's ports */
	R_BLOCKED_ADDRESS,         /* 403 IP-literal target in a blocked range */
	R_RESOLVED_TO_BLOCKED,     /* 403 a DNS answer is in a blocked range */
	R_INVALID_HOST,            /* 400 target host fails canonicalisation */
	/* resolver */
	R_DNS_ERROR,               /* 502 resolver failure (SERVFAIL, refused, bad reply, no answer) */
	R_DNS_NXDOMAIN,            /* 502 name does not exist */
	R_DNS_TIMEOUT,             /* 504 resolvers did not answer in time */
	/* upstream */
	R_UPSTREAM_REFUSED,        /* 502 every vetted address refused the connection */
	R_UPSTREAM_UNREACHABLE,    /* 502 network/host unreachable */
	R_UPSTREAM_TIMEOUT,        /* 504 connect timeout on every vetted address */
	/* request */
	R_BAD_REQUEST,             /* 400 malformed request */
	R_HEADERS_TOO_LARGE,       /* 431 request head over the limit */
	R_REQUEST_TIMEOUT,         /* 408 request head not complete before the deadline */
	R_METHOD_NOT_SUPPORTED,    /* 501 not CONNECT (plain HTTP comes later) */
	R_VERSION_NOT_SUPPORTED,   /* 505 not HTTP/1.x */
	/* limits and service */
	R_CONNECTION_LIMIT,        /* 503 process connection ceiling reached */
	R_SHUTTING_DOWN,           /* 503 draining */
	R_INTERNAL_ERROR,          /* 500 out of memory or another internal failure */
	/* tunnel close reasons (after 200) */
	R_CLIENT_CLOSED,           /* tunnel ended, client closed first */
	R_UPSTREAM_CLOSED,         /* tunnel ended, upstream closed first */
	R_IDLE_TIMEOUT,            /* tunnel idle too long */
	R_MAX_LIFETIME,            /* tunnel lived too long */
	R_DRAIN_TIMEOUT,           /* tunnel cut when the drain timeout expired */
	R_CLIENT_ERROR,            /* socket error on the client side */
	R_UPSTREAM_ERROR,          /* socket error on the upstream side */
	/* inside the tunnel's first flight (after 200: the tunnel is cut, the upstream gets nothing) */
	R_TLS_NO_SNI,              /* ClientHello without SNI where the tier requires one */
	R_TLS_SNI_MISMATCH,        /* SNI differs from the CONNECT host */
	R_TLS_SNI_NOT_ALLOWED,     /* SNI not allowed by the tier's rules */
	R_NOT_TLS,                 /* first bytes on a TLS port are not a TLS handshake */
	R_TLS_ECH,                 /* Encrypted Client Hello (or draft ESNI) offered */
	R_TLS_MALFORMED,           /* malformed, truncated or non-ClientHello handshake */
	R_TLS_HELLO_TOO_LARGE,     /* ClientHello over the buffering cap */
	R_TLS_HELLO_TIMEOUT,       /* ClientHello not complete in time */
	/* caps */
	R_UPLOAD_CAP,              /* tunnel cut at caps.upload_bytes */
	R_DOWNLOAD_CAP,            /* tunnel cut at caps.download_bytes */
	R_SOURCE_CONNECTION_LIMIT, /* 429 caps.connections_per_source reached */
	R_SOURCE_UPLOAD_BUDGET,    /* 429 / cut: caps.upload_bytes_per_source spent for the window */
	R_AUDIT_UNAVAILABLE,       /* 503 the audit log cannot take records: fail closed */
	/* plain-HTTP forwarding */
	R_NOT_ABSOLUTE_FORM,       /* 400 origin-form request: not a reverse proxy */
	R_HTTPS_TARGET,            /* 400 https:// request-target: use CONNECT */
	R_HOST_MISMATCH,           /* 400 Host header names another host or port than the target */
	R_METHOD_NOT_ALLOWED,      /* 403 method not in the tier's http.methods */
	R_UPGRADE_NOT_ALLOWED,     /* 403 Upgrade without http.allow_upgrade */
	R_BAD_RESPONSE,            /* 502 malformed upstream response head or framing */
	R_TLS_REQUIRED,            /* 403 plain http:// (or an Upgrade) to a tls.require_tls_ports port */
	R_TLS_SERVER_MALFORMED,    /* cut: the upstream's answer to a checked hello is not a ServerHello */
	R_SOURCE_TABLE_FULL,       /* 503 limits.max_sources sources, all with open connections */
	R_RESPONSE_TIMEOUT,        /* 504 plain HTTP: no response head within the idle timeout */
	/* PROXY protocol (a listener behind a load balancer) */
	R_PROXY_UNTRUSTED_PEER,    /* 403 a PROXY-protocol listener, a peer not in its trusted CIDRs */
	R_PROXY_HEADER_MISSING,    /* 400 the listener expects a PROXY header; the bytes are not one */
	R_PROXY_HEADER_INVALID,    /* 400 a malformed PROXY header (bad CRC, family, length, version...) */
	R_PROXY_HEADER_TIMEOUT,    /* 408 the PROXY header did not arrive whole within its timeout */
	R_PROXY_HEADER_UNEXPECTED, /* 403 a PROXY header where a request was due (no PROXY listener, or a
	                              second header) */
	R_TLS_JA4_NOT_ALLOWED,     /* cut: the ClientHello's JA4 is in tls.ja4_deny or not in ja4_allow */
	/* TLS listener (listen.https): no HTTP status can be sent before its handshake completes */
	R_TLS_HANDSHAKE_FAILED,    /* the client's TLS handshake with the proxy failed */
	R_TLS_HANDSHAKE_TIMEOUT,   /* the handshake did not complete within limits.header_timeout */
	/* client certificates on a TLS listener (listen.tls.client_certs) */
	R_CLIENT_CERT_REQUIRED,    /* 403 client_certs: require, and the client sent none */
	R_CLIENT_CERT_UNTRUSTED,   /* 403 its chain does not verify against listen.tls.client_ca */
	R_CLIENT_CERT_EXPIRED,     /* 403 it (or a CA of its chain) expired or is not valid yet */
	R_CLIENT_CERT_REVOKED,     /* 403 listed in listen.tls.crl */
	R_CLIENT_CERT_INVALID,     /* 403 breaks the X.509-SVID leaf rules (several URI SANs, ...) */
	R_CLIENT_CERT_NO_MATCH,    /* 403 verified, but matches no identity.client_certs rule */
	/* OIDC ID tokens in Proxy-Authorization (listen.proxy[i].auth, identity.oidc) */
	R_OIDC_TOKEN_MISSING,      /* 407 auth: required and no Proxy-Authorization (a challenge) */
	R_OIDC_BAD_CREDENTIALS,    /* 403 Proxy-Authorization not Basic user:token or Bearer, or a wrong username */
	R_OIDC_TOKEN_TOO_LARGE,    /* 403 token, part, nesting or claims over the limit */
	R_OIDC_TOKEN_MALFORMED,    /* 403 not a JWS of JSON objects (padding, base64, shape, crit, time types) */
	R_OIDC_DUPLICATE_CLAIM,    /* 403 a member named twice in the header or claims */
	R_OIDC_ALG_NONE,           /* 403 alg none */
	R_OIDC_ALG_NOT_ALLOWED,    /* 403 alg not configured for the provider */
	R_OIDC_KID_UNKNOWN,        /* 403 kid not in the JWKS */
	R_OIDC_KID_MISSING,        /* 403 no kid and several candidate keys */
	R_OIDC_SIGNATURE_INVALID,  /* 403 signature does not verify */
	R_OIDC_ISSUER_UNKNOWN,     /* 403 iss matches no provider exactly */
	R_OIDC_AUDIENCE_MISMATCH,  /* 403 aud missing or not accepted */
	R_OIDC_TOKEN_EXPIRED,      /* 403 exp passed (beyond leeway and any lease) */
	R_OIDC_TOKEN_NOT_YET_VALID, /* 403 nbf or iat in the future */
	R_OIDC_NOT_CI_TOKEN,       /* 403 verified, but not a CI job's token */
	R_OIDC_NO_MATCH,           /* 403 verified, matches no rule (no_match: deny) */
	R_OIDC_TOKEN_REPLAYED,     /* 403 the job is bound to another source address */
	R_OIDC_JWKS_UNAVAILABLE,   /* 503 the provider has no keys (backstop) */
	/* TLS interception (an allow rule's intercept:) */
	R_INTERCEPT_DENIED,        /* 403 an intercepted request refused by the host's request rules */
	R_INTERCEPT_BAD_PATH,      /* 400 a path that cannot be matched safely (dot segment, %2F...) */
	R_INTERCEPT_HOST_MISMATCH, /* 403 Host (or absolute-form authority) is not the CONNECT host */
	R_INTERCEPT_BODY_TOO_LARGE, /* 413 request body over intercept.max_request_body */
	R_UPSTREAM_CERT_INVALID,   /* 502 the upstream's certificate did not verify */
	R_UPSTREAM_TLS_FAILED,     /* 502 the TLS handshake with the upstream failed otherwise */
	R_INTERCEPT_CLIENT_REJECTED, /* the client refused the minted certificate (a TLS alert) */
	R_INTERCEPT_HANDSHAKE_FAILED, /* the client's handshake inside the tunnel failed or timed out */
	R_INTERCEPT_UNAVAILABLE,   /* 503 no interception CA, or a leaf could not be minted */
	R__COUNT
};

/* Stable snake_case name, e.g. "host_not_allowed". */
const char *reason_name(enum reason r);

/* HTTP status sent for a refusal with this reason (200 for close reasons). */
int reason_http_status(enum reason r);

/* RFC 9209 Proxy-Status error type for this reason, e.g. "destination_denied". */
const char *reason_proxy_status(enum reason r);

/*
 * For an operator reading the audit record (labels.hint): the likely cause of a
 * refusal and where its fix is, or NULL when the reason code says it all.
 */
const char *reason_hint(enum reason r);

#endif
