"""Built-in tasks: what to learn and how to score it.

Each is declared as an entry point of the ``seqlab.tasks`` group in seqlab's pyproject;
``seqlab.registry`` imports a module when its name is first used, so this package imports
nothing itself.
"""
