/*
 * Phase "intercept" (CS_ICPT_UPSTREAM, CS_ICPT_CLIENT): a CONNECT whose
 * allow rule asks for interception.  TLS to the upstream first, verified;
 * then the 200 and the client's handshake with a certificate minted for the
 * CONNECT host; then each request inside the session is read by the request
 * phase, decided here on its own, and moved by the forward phase over the
 * one upstream session.  docs/interception.md.
 */
#ifndef PORTCULLIS_INTERCEPTED_H
#define PORTCULLIS_INTERCEPTED_H

#include "conn.h"

struct http_framing;
struct http_req;
struct http_target;

/* CS_ICPT_UPSTREAM and CS_ICPT_CLIENT. */
extern const struct conn_phase intercept_upstream_phase;
extern const struct conn_phase intercept_client_phase;

/*
 * An allowed CONNECT whose rule intercepts (c->verdict.intercept): set up
 * the session's state before the dial; cred is the CONNECT's
 * Proxy-Authorization, kept to identify each request inside the session as
 * the CONNECT was.  R_ALLOWED, or the refusal (intercept_unavailable).
 */
enum reason intercept_prepare(struct conn *c, const struct conn_credentials *cred)
    __attribute__((warn_unused_result));

/* Is c an intercepted tunnel whose client handshake completed (requests come inside TLS)? */
bool intercept_active(const struct conn *c);

/* The credentials every request inside the session is identified with: the CONNECT's. */
void intercept_credentials(const struct conn *c, struct conn_credentials *cred);

/*
 * A request head inside the session, after conn_decide_begin: its target,
 * Host, host decision under the current policy, the rule's request rules,
 * admission; then the forward phase, or the refusal (inside TLS).
 */
void intercept_request(struct conn *c, const struct http_req *req);

/* The target to forward a request inside the session to (origin-form, the CONNECT's authority). */
int intercept_target(const struct conn *c, const struct http_req *req, struct http_target *t)
    __attribute__((warn_unused_result));

/*
 * The request rules of the host decision c->verdict (its rule's intercept:
 * block; none: R_ALLOWED) on a request to that host, intercepted or plain
 * http://: its method and path (len bytes, origin-form), the methods and
 * paths its override headers name, a Content-Length over max_request_body.
 * R_ALLOWED (audit mode: a refusal noted as would-deny) or the refusal.
 */
enum reason intercept_rules(struct conn *c, const struct http_req *req, const char *path,
                            size_t len, const struct http_framing *f)
    __attribute__((warn_unused_result));

/* The request rule that decided this exchange, for its record; NULL: none (the session's own). */
const char *intercept_rule(const struct conn *c);

/*
 * An exchange ended with both sides willing to go on: keep the upstream
 * session for the next.  False: it cannot be kept (the upstream sent more
 * than its response): end the connection.
 */
bool intercept_keep(struct conn *c) __attribute__((warn_unused_result));

#endif
