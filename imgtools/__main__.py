from imgtools.cli import main

main()
