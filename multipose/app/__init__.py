"""The command-line layer: the entry scripts' shared plumbing (:mod:`.cli`) and ``python -m`` commands.
Nothing in the library imports it."""
