/*
 * One record of each kind, every optional field set, in ECS or OCSF (argv[1]), one JSON
 * line each: the samples in docs/siem.md and the field list the index template is made
 * from (tests/integration/ecs/gen_index_template.py checks the template against them).
 */
#include "audit.h"

#include <stdio.h>
#include <string.h>

#define T0 1765090800123456789ULL /* 2025-12-07T07:00:00.123456Z */

int main(int argc, char **argv)
{
	static const struct pc_addr src = {ADDR_V4, {10, 42, 3, 17}};
	static const struct pc_addr dst = {ADDR_V4, {151, 101, 2, 132}};
	enum audit_format f =
	    argc > 1 && strcmp(argv[1], "ocsf") == 0 ? AUDIT_FMT_OCSF : AUDIT_FMT_ECS;
	const struct audit_rec base = {
	    .id_prefix = 0x5f3c9a0e41d2b786ULL,
	    .conn_id = 0x2a,
	    .community_id = "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=",
	    .src = &src,
	    .src_port = 48122,
	    .dst_domain = "deb.debian.org",
	    .dst_ip = &dst,
	    .dst_port = 443,
	    .method = "CONNECT",
	    .rule = "deb.debian.org",
	    .tier = "standard",
	    .user_agent = "curl/8.14.1",
	    .sni = "deb.debian.org",
	    .tls_version = "1.3",
	    .tls_next_protocol = "h2",
	    .ja4 = "t13d1516h2_8daaf6152771_e5627efa2ab1", /* the JA4 spec's example */
	    .pod_ns = "ci-jobs",
	    .pod_name = "runner-7xk2p-project-42-concurrent-0",
	    .pod_uid = "0d6f4c52-8f5e-4f39-a4ad-9a4d1b0c2e11",
	    .pod_label_keys = {"app"},
	    .pod_label_values = {"gitlab-runner"},
	    .n_pod_labels = 1,
	};
	struct audit_rec r[7];
	for (int i = 0; i < 7; i++)
		r[i] = base;
	/* a refusal at decision time */
	r[0].ts_ns = T0 + 1800000;
	r[0].start_ns = T0;
	r[0].duration_ns = 1800000;
	r[0].reason = R_HOST_NOT_ALLOWED;
	r[0].status = 403;
	r[0].dst_domain = "pastebin.com";
	r[0].dst_ip = NULL;
	r[0].rule = NULL;
	r[0].sni = r[0].tls_version = r[0].tls_next_protocol = r[0].ja4 = NULL;
	/* a tunnel opens, is still open five minutes later, closes */
	for (int i = 1; i <= 3; i++) {
		r[i].start_ns = T0;
		r[i].allowed = true;
		r[i].status = 200;
	}
	r[1].phase = AUDIT_START;
	r[1].reason = R_ALLOWED;
	r[1].duration_ns = 41000000;
	r[1].bytes_up = 517;
	r[1].bytes_down = 4873;
	r[2].phase = AUDIT_INTERIM;
	r[2].reason = R_ALLOWED;
	r[2].duration_ns = 300000000000ULL;
	r[2].bytes_up = 90211;
	r[2].bytes_down = 734003200;
	r[3].tunnel_end = true;
	r[3].reason = R_CLIENT_CLOSED;
	r[3].duration_ns = 412503000000ULL;
	r[3].bytes_up = 120934;
	r[3].bytes_down = 1073741824;
	r[3].would_deny = "download_cap";
	for (int i = 1; i <= 3; i++)
		r[i].ts_ns = T0 + r[i].duration_ns;
	/* a plain-HTTP exchange */
	r[4].tunnel_end = r[4].allowed = true;
	r[4].reason = R_ALLOWED;
	r[4].method = "GET";
	r[4].status = 200;
	r[4].dst_port = 80;
	r[4].start_ns = T0;
	r[4].duration_ns = 88000000;
	r[4].ts_ns = T0 + r[4].duration_ns;
	r[4].bytes_up = 212;
	r[4].bytes_down = 93811;
	r[4].url_domain = "deb.debian.org";
	r[4].url_path = "/debian/dists/bookworm/InRelease";
	r[4].url_port = 80;
	r[4].user_agent = "Debian APT-HTTP/1.3 (2.6.1)";
	r[4].sni = r[4].tls_version = r[4].tls_next_protocol = r[4].ja4 = NULL;
	/* a tunnel cut after its ClientHello: JA4 not allowed */
	r[5].reason = R_TLS_JA4_NOT_ALLOWED;
	r[5].status = 200;
	r[5].start_ns = T0;
	r[5].duration_ns = 12000000;
	r[5].ts_ns = T0 + r[5].duration_ns;
	r[5].bytes_up = 0;
	r[5].tls_next_protocol = NULL;
	r[5].ja4 = "t13d190900_9dc949149365_97f8aa674fd9"; /* Sliver (JA4 README examples) */
	/* refusals counted while the audit queue was under pressure */
	r[6] = (struct audit_rec){
	    .ts_ns = T0 + 1000000000ULL,
	    .start_ns = T0,
	    .duration_ns = 1000000000ULL,
	    .id_prefix = base.id_prefix,
	    .reason = R_HOST_NOT_ALLOWED,
	    .src = &src,
	    .src_port = 50311,
	    .status = 403,
	    .tier = "standard",
	    .aggregated = 4187,
	};
	for (int i = 0; i < 7; i++) {
		char line[16384];
		r[i].event_id = 0x2b + (uint64_t)i;
		size_t n =
		    audit_format_as(f, &r[i], "portcullis-7d9f8b6c5-x2x4q", line, sizeof(line));
		if (n == 0)
			return 1;
		fputs(line, stdout);
	}
	return 0;
}
