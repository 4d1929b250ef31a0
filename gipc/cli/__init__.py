"""The ``gipc-*`` commands: argument parsing, messages and exit codes over the library.

One module per command; each ``main(argv) -> int`` returns 0 on success, 2 on bad input (one
``<command>: error:`` line, see :func:`gipc.cli.common.guarded`) and 130 when interrupted. No
library module imports this package.
"""
