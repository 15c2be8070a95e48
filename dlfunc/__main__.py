"""``python -m dlfunc``: the ``dlfunc`` command (:func:`dlfunc.cli.main`), with the same subcommands."""

import sys

from dlfunc.cli import main

if __name__ == "__main__":
  sys.exit(main())
