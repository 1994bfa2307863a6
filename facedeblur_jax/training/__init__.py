"""Training: the losses (§4), the phase records (§5), the sharded step and the loop (§6).

- ``losses.py``, ``schedule.py``, ``step.py`` (``jit(shard_map(...))``), ``loop.py``
  (``train(config, workdir)``: data, checkpoints, evaluations), ``distributed.py``
  (multi-host). docs/design.md §4–6.
"""
