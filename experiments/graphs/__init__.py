"""Graph tasks of the DNC paper: traversal, shortest path and inference.

See ``README.md`` here: data as pure functions of a seed (``generate``,
``tasks``), the encoding (``encoding``), closed-loop shortest path
(``dagger``), curricula (``curriculum``), the trainer protocol
(``protocol``, ``presets``) and the test graphs (``underground``,
``family_tree``).
"""
