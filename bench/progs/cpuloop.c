/* cpuloop N: N rounds of integer work the compiler can neither remove nor
 * vectorize (each round depends on the last): a table-driven CRC-32 step (a
 * load from a 1 KiB table in the cache), a data-dependent branch, and a 64-bit
 * multiply-xorshift mix. Then print the hash. Only the start-up and the final
 * write make syscalls; N = 0 measures start-up alone. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static uint32_t crc_table[256];

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 0;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
    uint32_t crc = 0xffffffffu;
    for (uint64_t i = 0; i < n; i++) {
        crc = crc_table[(crc ^ (uint32_t)h) & 0xff] ^ (crc >> 8);
        if (crc & 0x10)
            h += crc;
        else
            h ^= (uint64_t)crc << 17;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
    }
    printf("cpuloop %" PRIu64 " %016" PRIx64 " %08" PRIx32 "\n", n, h, crc);
    return 0;
}
