"""``python -m cnervcodec`` behaves exactly like the ``cnerv`` command."""

from cnervcodec.cli.main import main

if __name__ == "__main__":
    main()
