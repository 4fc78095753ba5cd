"""python -m imgtools. Ctrl-C while the modules load (the second or so before a
command runs) ends quietly with exit 130, as during a command."""
import sys


def run() -> None:
    try:
        from imgtools.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("imgtools: interrupted\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
