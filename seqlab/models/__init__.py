"""In-tree model plugins, one per file.

Each is declared as an entry point of the ``seqlab.models`` group in seqlab's pyproject, as an
out-of-tree plugin is in its own; ``seqlab.registry`` imports a module when its name is first
used, so this package imports nothing itself.
"""
