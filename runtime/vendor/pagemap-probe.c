// What Linux's PAGEMAP_SCAN reports for untouched memory, with the masks
// wasmtime 50.0.1 uses to find the pages a guest dirtied (runtime/vendor/README.md).
//
//   cc -O1 runtime/vendor/pagemap-probe.c -o /tmp/pagemap-probe && /tmp/pagemap-probe
//
// Maps 1 MiB of anonymous memory, writes page 200 and reads page 300, then
// scans for "written, not the zero page, not a file page" with a 16-page
// budget: once as wasmtime 50.0.1 asks, once also requiring PRESENT|SWAPPED
// (the vendored fix). Seen on Linux 6.18: the first reports [0,16), pages
// never touched; the second [200,201), the page written.
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

// The PAGEMAP_SCAN ABI (linux/fs.h, 6.7+), spelled out for older headers.
struct page_region { uint64_t start, end, categories; };
struct pm_scan_arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)

int main(void) {
  const size_t page = 4096, len = 1 << 20;
  int fd = open("/proc/self/pagemap", O_RDONLY);
  char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (fd < 0 || p == MAP_FAILED) { perror("setup"); return 1; }
  p[200 * page] = 1;
  volatile char r = p[300 * page];
  (void)r;
  for (int fixed = 0; fixed < 2; fixed++) {
    struct page_region regions[64];
    struct pm_scan_arg a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.start = (uintptr_t)p;
    a.end = (uintptr_t)p + len;
    a.vec = (uintptr_t)regions;
    a.vec_len = 64;
    a.max_pages = 16;
    a.category_inverted = PAGE_IS_PFNZERO | PAGE_IS_FILE;
    a.category_mask = PAGE_IS_WRITTEN | PAGE_IS_PFNZERO | PAGE_IS_FILE;
    if (fixed) a.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
    long n = ioctl(fd, PAGEMAP_SCAN, &a);
    if (n < 0) { perror("PAGEMAP_SCAN (needs Linux 6.7+)"); return 1; }
    printf("%s: reported pages", fixed ? "with PRESENT|SWAPPED" : "as wasmtime 50.0.1");
    for (long i = 0; i < n; i++)
      printf(" [%lu,%lu)", (unsigned long)((regions[i].start - (uintptr_t)p) / page),
             (unsigned long)((regions[i].end - (uintptr_t)p) / page));
    printf("\n");
  }
  return 0;
}
