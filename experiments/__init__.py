"""Training and evaluation of the DNC on the paper's tasks.

Kept apart from the library: everything here uses ``dnc_jax``'s public API
only. ``dnc-train`` (:mod:`experiments.cli`) trains any task of
:mod:`experiments.tasks` with the loop of :mod:`experiments.loop`;
``dnc-plot`` (:mod:`experiments.plot`) draws a trained model's memory.
"""
