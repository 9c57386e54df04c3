"""Training and evaluation of the DNC on the paper's tasks.

Kept apart from the library: everything here uses ``dnc_jax``'s public API
only. ``python -m experiments.train`` (``dnc-train``) trains on the bit tasks,
``python -m experiments.plot`` (``dnc-plot``) draws a trained model's memory.
"""
