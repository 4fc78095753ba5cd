/*
 * Test target: one shared anonymous object of 8 pages seen through two mappings of the
 * parent (the second made by mremap with old size 0) and, after fork, by the child.
 * Pages are touched so that no single page table holds them all: page 0 through the
 * first mapping, page 1 through the second, pages 5 and 7 by the child only (the parent
 * never faults them in); pages 2, 3, 4 and 6 are never touched. Every touched page
 * starts with "shm page N". A third mapping shows only pages 4..7 of the object (mremap
 * of a part), so its window reaches page 5 and 7 at other addresses. Prints
 * "ready" and then the three mapping addresses once the child is done, then waits forever.
 *
 *     shmanon
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096
#define PAGES 8

static void mark(char *base, int page)
{
	snprintf(base + page * PAGE, 32, "shm page %d", page);
}

int main(void)
{
	char *a = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *b, *part;
	int done[2];
	pid_t child;

	if (a == MAP_FAILED)
		return 1;
	b = mremap(a, 0, PAGES * PAGE, MREMAP_MAYMOVE);	/* a second mapping of the object */
	if (b == MAP_FAILED || pipe(done))
		return 1;
	mark(a, 0);
	mark(b, 1);
	child = fork();
	if (child < 0)
		return 1;
	if (child == 0) {
		mark(a, 5);
		mark(b, 7);
		(void)!write(done[1], "x", 1);
		for (;;)
			pause();
	}
	if (read(done[0], &child, 1) != 1)
		return 1;
	part = mremap(a + 4 * PAGE, 0, 4 * PAGE, MREMAP_MAYMOVE);	/* object pages 4..7 */
	if (part == MAP_FAILED)
		return 1;
	munmap(a + 4 * PAGE, 4 * PAGE);	/* the first mapping now shows pages 0..3 only */
	printf("ready\n%lx %lx %lx\n", (unsigned long)a, (unsigned long)b, (unsigned long)part);
	fflush(stdout);
	for (;;)
		pause();
}
