/* hello: one line to stdout, nothing else. Start-to-exit of a static binary. */
#include <stdio.h>

int main(void)
{
    puts("hello from the sentry bench");
    return 0;
}
