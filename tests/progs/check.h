/*
 * How the restore test programs report on themselves: one line per check on out, "ok
 * [WHO ]NAME" when it held, "FAIL [WHO ]NAME: why" when it did not, flushed at once (the
 * processes of a tree append to one file, and a fork must not copy unwritten lines);
 * failures counts the FAIL lines. A program sets out before its first check.
 */
#include <stdarg.h>
#include <stdio.h>

static FILE *out;
static int failures;

static void __attribute__((format(printf, 4, 5)))
check_by(const char *who, const char *name, int ok, const char *fmt, ...)
{
	va_list ap;

	fputs(ok ? "ok " : "FAIL ", out);
	if (who)
		fprintf(out, "%s ", who);
	fputs(name, out);
	if (!ok) {
		failures++;
		fputs(": ", out);
		va_start(ap, fmt);
		vfprintf(out, fmt, ap);
		va_end(ap);
	}
	fputc('\n', out);
	fflush(out);
}

#define check(name, ok, ...) check_by(NULL, name, ok, __VA_ARGS__)
