/* imgtools-engine: command line. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

static const char usage[] =
	"usage: imgtools-engine dump PID [-o FILE|-o -] [--tree|--single] [--kill]\n"
	"                            [--allow-partial] [--progress] [--strict]\n"
	"       imgtools-engine restore [IMG|-] [--pidns|--no-pidns] [--detach] [--stopped]\n"
	"       imgtools-engine --version\n"
	"Checkpoint the process tree rooted at PID (or the process alone with --single) into a\n"
	"linux-cr v23 x86_64 image (stdout by default). Exit: 0 ok, 1 internal error, 2 usage,\n"
	"3 refused or partial (state the image cannot hold; see --allow-partial). --strict: a pure\n"
	"v23 image, no imgtools extension records (ERROR records for what they would hold).\n";

static int usage_error(const char *msg)
{
	fprintf(stderr, "imgtools-engine: %s\n%s", msg, usage);
	return EXIT_USAGE;
}

static int dump(pid_t pid, const char *output, struct ctx *c, bool progress)
{
	int ret;

	freeze_install_handlers();
	c->objs = objhash_new();
	if (!c->objs || image_open(&c->img, output, progress))
		return EXIT_INTERNAL;
	ret = freeze_tree(c, pid);
	if (!ret)
		ret = collect_tasks(c);
	if (!ret)
		ret = checkpoint(c);
	if (ret) {
		/* let the tasks go before writing to an output that may block */
		thaw_all(c, false);
		write_error(&c->img, last_error());
		image_close(&c->img);
	} else {
		ret = image_close(&c->img);
		/* only a complete image on disk allows --kill */
		thaw_all(c, c->kill && !ret);
	}
	objhash_free(c->objs);
	if (ret)
		return c->usage_error ? EXIT_USAGE : c->refused ? EXIT_PARTIAL : EXIT_INTERNAL;
	return c->nr_unsupported && !c->allow_partial ? EXIT_PARTIAL : EXIT_OK;
}

struct dump_args {
	pid_t pid;
	const char *output;
	struct ctx *c;
	bool progress;
};

static int dump_in_tracer(void *arg)
{
	struct dump_args *a = arg;

	return dump(a->pid, a->output, a->c, a->progress);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "tree", no_argument, NULL, 't' },
		{ "single", no_argument, NULL, 's' },
		{ "kill", no_argument, NULL, 'k' },
		{ "allow-partial", no_argument, NULL, 'p' },
		{ "progress", no_argument, NULL, 'P' },
		{ "strict", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctx c = { .tree = true };
	const char *output = "-";
	bool progress = false;
	char *end;
	long pid;
	int opt;

	if (argc == 2 && !strcmp(argv[1], "--version")) {
		printf("imgtools-engine %s (linux-cr v23, x86_64)\n", ENGINE_VERSION);
		return EXIT_OK;
	}
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(usage, stdout);
		return EXIT_OK;
	}
	if (argc >= 2 && !strcmp(argv[1], "restore"))
		return restore_main(argc - 1, argv + 1);
	if (argc < 2 || strcmp(argv[1], "dump"))
		return usage_error("expected the command 'dump' or 'restore'");
	argv++;
	argc--;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'o': output = optarg; break;
		case 't': c.tree = true; break;
		case 's': c.tree = false; break;
		case 'k': c.kill = true; break;
		case 'p': c.allow_partial = true; break;
		case 'P': progress = true; break;
		case 'S': c.strict = true; break;
		case 'h': fputs(usage, stdout); return EXIT_OK;
		default: return usage_error("unknown option or missing argument");
		}
	}
	if (optind != argc - 1)
		return usage_error("expected exactly one PID");
	pid = strtol(argv[optind], &end, 10);
	if (*end || end == argv[optind] || pid <= 0 || pid > 0x3fffffff) {
		/* a wrong value, not a wrong command line: no usage text */
		fprintf(stderr, "imgtools-engine: PID must be a positive number, not '%s'\n",
			argv[optind]);
		return EXIT_USAGE;
	}
	if (!strcmp(output, "-") && isatty(STDOUT_FILENO))
		return usage_error("refusing to write an image to a terminal (use -o FILE)");
	return run_supervised(dump_in_tracer, &(struct dump_args){ pid, output, &c, progress });
}
