/*
 * Test target: a process that unmapped its [vdso] and mapped a writable, non-executable
 * page at that address holding the bytes of a "syscall" instruction, so the auxv's
 * AT_SYSINFO_EHDR now names a page no syscall may be run from. A dumper that trusted the
 * auxv would make the process fault there. SIGUSR1's handler prints "usr1".
 *
 *     novdso           prints "ready", then the handler's address (decimal)
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

static void on_usr1(int sig)
{
	(void)sig;
	(void)!write(1, "usr1\n", 5);
}

/* the [vdso]'s size, from /proc/self/maps (read before it goes) */
static size_t vdso_size(unsigned long base)
{
	char line[512];
	unsigned long start, end;
	size_t size = 0;
	FILE *f = fopen("/proc/self/maps", "r");

	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "[vdso]") && sscanf(line, "%lx-%lx", &start, &end) == 2 && start == base)
			size = end - start;
	if (f)
		fclose(f);
	return size;
}

int main(void)
{
	unsigned long base = getauxval(AT_SYSINFO_EHDR);
	size_t size = base ? vdso_size(base) : 0;
	struct sigaction sa = { .sa_handler = on_usr1 };
	unsigned char *p;

	if (!size)
		return fprintf(stderr, "no [vdso]\n"), 2;
	if (sigaction(SIGUSR1, &sa, NULL) || munmap((void *)base, size))
		return perror("novdso"), 2;
	p = mmap((void *)base, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		 -1, 0);
	if (p == MAP_FAILED)
		return perror("mmap"), 2;
	memset(p, 0x90, PAGE);
	p[0] = 0x0f;	/* syscall */
	p[1] = 0x05;
	printf("ready\n%lu\n", (unsigned long)on_usr1);
	fflush(stdout);
	for (;;)
		pause();
}
