/* Socket addresses <-> the policy's pc_addr. */
#include "sockaddr.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

socklen_t sockaddr_make(const struct pc_addr *a, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == ADDR_V4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, a->b, 4);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	memcpy(&sin6->sin6_addr, a->b, 16);
	return sizeof(*sin6);
}

void sockaddr_to_addr(const struct sockaddr *sa, struct pc_addr *a, uint16_t *port)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		a->family = ADDR_V4;
		memcpy(a->b, &sin->sin_addr, 4);
		*port = ntohs(sin->sin_port);
		return;
	}
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
	*port = ntohs(sin6->sin6_port);
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(&sin6->sin6_addr, mapped, 12) == 0) {
		a->family = ADDR_V4;
		memcpy(a->b, (const uint8_t *)&sin6->sin6_addr + 12, 4);
		return;
	}
	a->family = ADDR_V6;
	memcpy(a->b, &sin6->sin6_addr, 16);
}

void sockaddr_format(const struct pc_addr *a, uint16_t port, char *buf, size_t n)
{
	char t[ADDR_STRLEN];
	addr_format(a, t, sizeof(t));
	snprintf(buf, n, "%s%s%s:%u", a->family == ADDR_V6 ? "[" : "", t,
	         a->family == ADDR_V6 ? "]" : "", port);
}
