"""Quantization ladders: one source GGUF, every quant of it, what each rung costs in task success,
speed, memory and next-token fidelity (``agenteval ladder``).

A ladder is one run whose models are the rungs (``quantize``), served one after another by
the same engine with the same context, sampling and seed; each rung's next-token
distributions are compared with the reference's over a fixed text (``divergence``); its
figures are recorded in ``ladder_rungs`` beside the run's trials and drawn on the report's
ladder page.
"""
