/* Thread names and scheduling classes. */
#include "thread.h"

#include <pthread.h>
#include <sched.h>

void thread_role(const char *name, int background)
{
	(void)pthread_setname_np(pthread_self(), name); /* ERANGE past 15 bytes: keep the old */
	if (background) {
		struct sched_param sp = {.sched_priority = 0};
		(void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
	}
}
