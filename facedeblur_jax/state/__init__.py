"""The train state and its checkpoints: what training writes and serving reads.

- ``train_state.py``: the state pytree (every net's params, per-net Adam, BatchNorm
  statistics, step, PRNG key) and the generator's variables out of it.
- ``checkpoint.py``: Orbax checkpoints of the whole state, the config stored beside it, and
  the checks before a resume.
"""
