/*
 * XSAVE state that must survive a restore onto another CPU's XSAVE layout
 * (tests/test_restore.py): a PKRU value of its own (protection key 1 without access) and a
 * pattern in ymm0/ymm1 kept live in a spin loop, which the checkpoint stops mid-loop. The
 * loop ends on SIGUSR1 (sent after the restore); then both are compared, "ok"/"FAIL" lines
 * go to OUT, and it exits 0 only if they are intact.
 *
 *     rst_pkru OUT
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#define PKRU_VALUE 0x5555555cu

static volatile int go_flag;

static void on_usr1(int sig) { (void)sig; go_flag = 1; }

static unsigned int rdpkru(void)
{
	unsigned int eax, edx, ecx = 0;

	__asm__ volatile(".byte 0x0f, 0x01, 0xee" : "=a"(eax), "=d"(edx) : "c"(ecx));
	return eax;
}

static void wrpkru(unsigned int v)
{
	__asm__ volatile(".byte 0x0f, 0x01, 0xef" : : "a"(v), "c"(0), "d"(0));
}

int main(int argc, char **argv)
{
	__m256i a = _mm256_set1_epi32(0x5a5a5a5a), b = _mm256_set1_epi32(0x0f0f0f0f);
	struct sigaction sa = { .sa_handler = on_usr1 };
	unsigned int pkru;
	FILE *out;
	int ok;

	if (argc != 2 || !(out = fopen(argv[1], "w")))
		return 2;
	setvbuf(out, NULL, _IOLBF, 0);
	sigaction(SIGUSR1, &sa, NULL);
	wrpkru(PKRU_VALUE);
	fprintf(out, "ready\n");
	__asm__ volatile("1: cmpl $0, %2\n\tje 1b\n" : "+x"(a), "+x"(b) : "m"(go_flag));
	pkru = rdpkru();
	ok = _mm256_movemask_epi8(_mm256_cmpeq_epi32(a, _mm256_set1_epi32(0x5a5a5a5a))) == -1 &&
	     _mm256_movemask_epi8(_mm256_cmpeq_epi32(b, _mm256_set1_epi32(0x0f0f0f0f))) == -1;
	fprintf(out, "%s ymm\n", ok ? "ok" : "FAIL");
	fprintf(out, "%s pkru %#x\n", pkru == PKRU_VALUE ? "ok" : "FAIL", pkru);
	return ok && pkru == PKRU_VALUE ? 0 : 1;
}
