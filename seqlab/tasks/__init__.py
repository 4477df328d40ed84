"""Built-in tasks: what to learn and how to score it.

Each module registers its task with ``@register_task(name)``; the registry imports them lazily,
so this package imports nothing itself.
"""
