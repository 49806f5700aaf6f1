/*
 * The workload of the Linux migration guest (scripts/build-linux-guest.sh): rewrites a
 * working set of RAM at a controlled rate, checks on every rewrite that each page still
 * holds what it wrote there last (so RAM that a migration lost or mixed up is noticed),
 * and records its progress on the disk and the console.
 *
 *   dirtier MIB RATE DISK
 *     MIB   working set in MiB
 *     RATE  MiB dirtied per second; 0 = as fast as the vCPU goes
 *     DISK  block device for progress records (O_DIRECT), or "-" for none
 *
 * Disk record, one 512-byte sector per record at LBA 2048 + (seq % 30720) (1 MiB onwards):
 *   "LMIG", u32 seq, u64 lba, u32 ~seq, u32 pad, u64 pass, u64 memory errors   (little endian)
 * Console: "LMIG seq=N pass=P errors=E mib=M rate=R" once a second, and
 * "LMIG MEMORY MISMATCH ..." for each page that did not hold its last value.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define SLOTS 30720

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: dirtier MIB RATE DISK\n");
        return 2;
    }
    size_t mib = strtoul(argv[1], NULL, 10);
    double rate = strtod(argv[2], NULL);
    const char *disk = argv[3];
    size_t pages = mib * 256;
    if (pages == 0) pages = 1;

    uint64_t *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) { perror("mmap"); return 1; }
    int fd = -1;
    if (strcmp(disk, "-") != 0) {
        fd = open(disk, O_WRONLY | O_DIRECT | O_SYNC);
        if (fd < 0) perror("open disk");
    }
    unsigned char *sector = NULL;
    if (posix_memalign((void **)&sector, 4096, 4096) != 0) return 1;

    /* Each page's first word holds the pass that wrote it, its second word its index. */
    uint64_t pass = 0, errors = 0;
    uint32_t seq = 0;
    double start = now(), lastRecord = 0, lastPrint = 0;
    uint64_t dirtiedMiB = 0;
    printf("LMIG start mib=%zu rate=%.0f\n", mib, rate);
    fflush(stdout);
    for (;;) {
        pass++;
        for (size_t page = 0; page < pages; page++) {
            uint64_t *word = mem + page * (PAGE / sizeof(uint64_t));
            if (pass > 1 && (word[0] != pass - 1 || word[1] != page)) {
                errors++;
                if (errors <= 20) {
                    printf("LMIG MEMORY MISMATCH page=%zu found=%llu/%llu expected=%llu\n", page,
                           (unsigned long long)word[0], (unsigned long long)word[1], (unsigned long long)(pass - 1));
                    fflush(stdout);
                }
            }
            word[0] = pass;
            word[1] = page;
            if ((page & 255) != 255 && page != pages - 1) continue;

            /* One MiB done: pace, and write a record every 250 ms. */
            dirtiedMiB++;
            double t = now();
            if (rate > 0) {
                double due = start + dirtiedMiB / rate;
                if (due > t) {
                    double wait = due - t;
                    struct timespec ts = { (time_t)wait, (long)((wait - (time_t)wait) * 1e9) };
                    nanosleep(&ts, NULL);
                    t = now();
                }
            }
            if (t - lastRecord >= 0.25) {
                lastRecord = t;
                seq++;
                if (fd >= 0) {
                    uint64_t lba = 2048 + (seq % SLOTS);
                    uint32_t complement = ~seq, pad = 0;
                    memset(sector, 0, 512);
                    memcpy(sector, "LMIG", 4);
                    memcpy(sector + 4, &seq, 4);
                    memcpy(sector + 8, &lba, 8);
                    memcpy(sector + 16, &complement, 4);
                    memcpy(sector + 20, &pad, 4);
                    memcpy(sector + 24, &pass, 8);
                    memcpy(sector + 32, &errors, 8);
                    if (pwrite(fd, sector, 512, (off_t)(lba * 512)) != 512) perror("pwrite");
                }
            }
            if (t - lastPrint >= 1.0) {
                lastPrint = t;
                printf("LMIG seq=%u pass=%llu errors=%llu\n", seq, (unsigned long long)pass, (unsigned long long)errors);
                fflush(stdout);
            }
        }
    }
}
