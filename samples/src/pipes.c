/*
 * A parent and two children sharing a pipe that holds unread data, and a FIFO (path in
 * argv[1]) holding unread data too.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *fifo = argc > 1 ? argv[1] : "/tmp/imgtools-sample.fifo";
	static const char data[] = "buffered pipe data nobody has read yet";
	static const char fdata[] = "fifo contents";
	int p[2], f, i;

	if (pipe(p) || write(p[1], data, sizeof(data)) != sizeof(data))
		return 1;
	unlink(fifo);
	if (mkfifo(fifo, 0600))
		return 1;
	f = open(fifo, O_RDWR);	/* read-write: opening does not wait for a peer */
	if (f < 0 || write(f, fdata, sizeof(fdata)) != sizeof(fdata))
		return 1;
	for (i = 0; i < 2; i++)
		if (fork() == 0)
			for (;;)
				pause();
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
