/* sentry_warm.h: the warm-start marker of sentry's Sandbox.prepare(argv, until="marker").
 *
 * A program calls SENTRY_WARM_MARKER() once its start-up work is done (libraries
 * loaded, tables built, configuration read) and before it reads its input.
 * Under prepare(until="marker") the sandbox freezes the program there, and every
 * prepared.run() starts from that point, as if the call had just returned.
 *
 * The marker is prctl(0x5357524d ('SWRM'), 0, 0, 0, 0): an option Linux does not
 * have, which it answers with -1/EINVAL. Outside a warm start (natively, or in a
 * plain sandbox run) it does nothing, so the same binary runs anywhere; in a warm
 * call it returns -1/EINVAL too. See docs/warm.md.
 */
#ifndef SENTRY_WARM_H
#define SENTRY_WARM_H

#include <sys/prctl.h>

#define SENTRY_WARM_OPTION 0x5357524d /* 'SWRM' */

#define SENTRY_WARM_MARKER() ((void)prctl(SENTRY_WARM_OPTION, 0UL, 0UL, 0UL, 0UL))

#endif
