"""The application shell: the ``mammocert`` command line, its commands and the demo.

It is the only layer that may import every other (``conformance``, ``reports``, ``harness``);
``docs/architecture.md`` draws the layers and CI enforces them with import-linter.
"""
