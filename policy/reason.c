/* Reason codes: stable names, HTTP statuses and RFC 9209 Proxy-Status error types. */
#include "reason.h"

#include <stddef.h>

struct reason_info {
	const char *name;
	int status;
	const char *proxy_status; /* RFC 9209 §2.3 error types */
};

static const struct reason_info reasons[R__COUNT] = {
	[R_ALLOWED] = {"allowed", 200, ""},
	[R_UNKNOWN_SOURCE] = {"unknown_source", 403, "http_request_denied"},
	[R_HOST_NOT_ALLOWED] = {"host_not_allowed", 403, "destination_denied"},
	[R_PORT_NOT_ALLOWED] = {"port_not_allowed", 403, "destination_denied"},
	[R_BLOCKED_ADDRESS] = {"blocked_address", 403, "destination_ip_prohibited"},
	[R_RESOLVED_TO_BLOCKED] = {"resolved_to_blocked_range", 403, "destination_ip_prohibited"},
	[R_INVALID_HOST] = {"invalid_host", 400, "http_request_error"},
	[R_DNS_ERROR] = {"dns_error", 502, "dns_error"},
	[R_DNS_NXDOMAIN] = {"dns_nxdomain", 502, "dns_error"},
	[R_DNS_TIMEOUT] = {"dns_timeout", 504, "dns_timeout"},
	[R_UPSTREAM_REFUSED] = {"upstream_refused", 502, "connection_refused"},
	[R_UPSTREAM_UNREACHABLE] = {"upstream_unreachable", 502, "destination_ip_unroutable"},
	[R_UPSTREAM_TIMEOUT] = {"upstream_timeout", 504, "connection_timeout"},
	[R_BAD_REQUEST] = {"bad_request", 400, "http_request_error"},
	[R_HEADERS_TOO_LARGE] = {"headers_too_large", 431, "http_request_error"},
	[R_REQUEST_TIMEOUT] = {"request_timeout", 408, "http_request_error"},
	[R_METHOD_NOT_SUPPORTED] = {"method_not_supported", 501, "http_request_denied"},
	[R_VERSION_NOT_SUPPORTED] = {"version_not_supported", 505, "http_request_error"},
	[R_CONNECTION_LIMIT] = {"connection_limit", 503, "proxy_internal_error"},
	[R_SHUTTING_DOWN] = {"shutting_down", 503, "proxy_internal_error"},
	[R_INTERNAL_ERROR] = {"internal_error", 500, "proxy_internal_error"},
	[R_CLIENT_CLOSED] = {"client_closed", 200, ""},
	[R_UPSTREAM_CLOSED] = {"upstream_closed", 200, ""},
	[R_IDLE_TIMEOUT] = {"idle_timeout", 200, ""},
	[R_MAX_LIFETIME] = {"max_lifetime", 200, ""},
	[R_DRAIN_TIMEOUT] = {"drain_timeout", 200, ""},
	[R_CLIENT_ERROR] = {"client_error", 200, ""},
	[R_UPSTREAM_ERROR] = {"upstream_error", 200, ""},
	[R_TLS_NO_SNI] = {"tls_no_sni", 200, ""},
	[R_TLS_SNI_MISMATCH] = {"tls_sni_mismatch", 200, ""},
	[R_TLS_SNI_NOT_ALLOWED] = {"tls_sni_not_allowed", 200, ""},
	[R_NOT_TLS] = {"not_tls", 200, ""},
	[R_TLS_ECH] = {"tls_ech", 200, ""},
	[R_TLS_MALFORMED] = {"tls_malformed", 200, ""},
	[R_TLS_HELLO_TOO_LARGE] = {"tls_hello_too_large", 200, ""},
	[R_TLS_HELLO_TIMEOUT] = {"tls_hello_timeout", 200, ""},
	[R_UPLOAD_CAP] = {"upload_cap", 200, ""},
	[R_DOWNLOAD_CAP] = {"download_cap", 200, ""},
	[R_SOURCE_CONNECTION_LIMIT] = {"source_connection_limit", 429, "http_request_denied"},
	[R_SOURCE_UPLOAD_BUDGET] = {"source_upload_budget", 429, "http_request_denied"},
	[R_AUDIT_UNAVAILABLE] = {"audit_unavailable", 503, "proxy_internal_error"},
	[R_NOT_ABSOLUTE_FORM] = {"not_absolute_form", 400, "http_request_error"},
	[R_HTTPS_TARGET] = {"https_target", 400, "http_request_error"},
	[R_HOST_MISMATCH] = {"host_mismatch", 400, "http_request_error"},
	[R_METHOD_NOT_ALLOWED] = {"method_not_allowed", 403, "http_request_denied"},
	[R_UPGRADE_NOT_ALLOWED] = {"upgrade_not_allowed", 403, "http_request_denied"},
	[R_BAD_RESPONSE] = {"bad_response", 502, "http_protocol_error"},
	[R_TLS_REQUIRED] = {"tls_required", 403, "destination_denied"},
	[R_TLS_SERVER_MALFORMED] = {"tls_server_malformed", 200, ""},
	[R_SOURCE_TABLE_FULL] = {"source_table_full", 503, "proxy_internal_error"},
	[R_RESPONSE_TIMEOUT] = {"response_timeout", 504, "http_response_timeout"},
	[R_PROXY_UNTRUSTED_PEER] = {"proxy_untrusted_peer", 403, "http_request_denied"},
	[R_PROXY_HEADER_MISSING] = {"proxy_header_missing", 400, "http_request_error"},
	[R_PROXY_HEADER_INVALID] = {"proxy_header_invalid", 400, "http_request_error"},
	[R_PROXY_HEADER_TIMEOUT] = {"proxy_header_timeout", 408, "http_request_error"},
	[R_PROXY_HEADER_UNEXPECTED] = {"proxy_header_unexpected", 403, "http_request_denied"},
	[R_TLS_JA4_NOT_ALLOWED] = {"tls_ja4_not_allowed", 200, ""},
	[R_TLS_HANDSHAKE_FAILED] = {"tls_handshake_failed", 200, ""},
	[R_TLS_HANDSHAKE_TIMEOUT] = {"tls_handshake_timeout", 200, ""},
	[R_CLIENT_CERT_REQUIRED] = {"client_cert_required", 403, "http_request_denied"},
	[R_CLIENT_CERT_UNTRUSTED] = {"client_cert_untrusted", 403, "http_request_denied"},
	[R_CLIENT_CERT_EXPIRED] = {"client_cert_expired", 403, "http_request_denied"},
	[R_CLIENT_CERT_REVOKED] = {"client_cert_revoked", 403, "http_request_denied"},
	[R_CLIENT_CERT_INVALID] = {"client_cert_invalid", 403, "http_request_denied"},
	[R_CLIENT_CERT_NO_MATCH] = {"client_cert_no_match", 403, "http_request_denied"},
	[R_OIDC_TOKEN_MISSING] = {"oidc_token_missing", 407, "http_request_denied"},
	[R_OIDC_BAD_CREDENTIALS] = {"oidc_bad_credentials", 403, "http_request_denied"},
	[R_OIDC_TOKEN_TOO_LARGE] = {"oidc_token_too_large", 403, "http_request_denied"},
	[R_OIDC_TOKEN_MALFORMED] = {"oidc_token_malformed", 403, "http_request_denied"},
	[R_OIDC_DUPLICATE_CLAIM] = {"oidc_duplicate_claim", 403, "http_request_denied"},
	[R_OIDC_ALG_NONE] = {"oidc_alg_none", 403, "http_request_denied"},
	[R_OIDC_ALG_NOT_ALLOWED] = {"oidc_alg_not_allowed", 403, "http_request_denied"},
	[R_OIDC_KID_UNKNOWN] = {"oidc_kid_unknown", 403, "http_request_denied"},
	[R_OIDC_KID_MISSING] = {"oidc_kid_missing", 403, "http_request_denied"},
	[R_OIDC_SIGNATURE_INVALID] = {"oidc_signature_invalid", 403, "http_request_denied"},
	[R_OIDC_ISSUER_UNKNOWN] = {"oidc_issuer_unknown", 403, "http_request_denied"},
	[R_OIDC_AUDIENCE_MISMATCH] = {"oidc_audience_mismatch", 403, "http_request_denied"},
	[R_OIDC_TOKEN_EXPIRED] = {"oidc_token_expired", 403, "http_request_denied"},
	[R_OIDC_TOKEN_NOT_YET_VALID] = {"oidc_token_not_yet_valid", 403, "http_request_denied"},
	[R_OIDC_NOT_CI_TOKEN] = {"oidc_not_ci_token", 403, "http_request_denied"},
	[R_OIDC_NO_MATCH] = {"oidc_no_match", 403, "http_request_denied"},
	[R_OIDC_TOKEN_REPLAYED] = {"oidc_token_replayed", 403, "http_request_denied"},
	[R_OIDC_JWKS_UNAVAILABLE] = {"oidc_jwks_unavailable", 503, "proxy_internal_error"},
	[R_INTERCEPT_DENIED] = {"intercept_denied", 403, "http_request_denied"},
	[R_INTERCEPT_BAD_PATH] = {"intercept_bad_path", 400, "http_request_error"},
	[R_INTERCEPT_HOST_MISMATCH] = {"intercept_host_mismatch", 403, "http_request_denied"},
	[R_INTERCEPT_BODY_TOO_LARGE] = {"intercept_body_too_large", 413, "http_request_denied"},
	[R_UPSTREAM_CERT_INVALID] = {"upstream_cert_invalid", 502, "tls_certificate_error"},
	[R_UPSTREAM_TLS_FAILED] = {"upstream_tls_failed", 502, "tls_protocol_error"},
	[R_INTERCEPT_CLIENT_REJECTED] = {"intercept_client_rejected", 200, ""},
	[R_INTERCEPT_HANDSHAKE_FAILED] = {"intercept_handshake_failed", 200, ""},
	[R_INTERCEPT_UNAVAILABLE] = {"intercept_unavailable", 503, "proxy_internal_error"},
};

const char *reason_name(enum reason r)
{
	if ((unsigned)r >= R__COUNT)
		return "internal_error";
	return reasons[r].name;
}

int reason_http_status(enum reason r)
{
	if ((unsigned)r >= R__COUNT)
		return 500;
	return reasons[r].status;
}

const char *reason_proxy_status(enum reason r)
{
	if ((unsigned)r >= R__COUNT)
		return "proxy_internal_error";
	return reasons[r].proxy_status;
}

const char *reason_hint(enum reason r)
{
	switch (r) {
	case R_TLS_ECH:
		/* GREASE ECH (draft-ietf-tls-esni §6.2) cannot be told from real ECH. */
		return "the ClientHello offers Encrypted Client Hello; likely cause: a browser "
		       "(Chrome, Chromium, Edge) sending GREASE ECH on every connection. Fix: the "
		       "browser policy EncryptedClientHelloEnabled=false (Firefox: "
		       "network.dns.echconfig.enabled=false), or tls.allow_ech: true for the tier "
		       "knowingly; see docs/clients.md";
	default:
		return NULL;
	}
}
