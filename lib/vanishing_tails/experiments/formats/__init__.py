"""Chapter 4, "One format wins": its spec, the format task (:mod:`.task`, :mod:`.vocab`) and
pretraining and RL on tiny transformers (:mod:`.echo`)."""
