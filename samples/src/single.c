/* Single-threaded sample: globals, heap data, a loop that sleeps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char greeting[64] = "hello from the data segment";	/* .data */
long counter;						/* .bss */

int main(void)
{
	char *heap = malloc(3 * 4096);

	for (int i = 0; i < 3 * 4096; i++)
		heap[i] = 'A' + i % 26;
	strcpy(heap, "heap block marker");
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		counter++;
		sleep(1);
	}
}
