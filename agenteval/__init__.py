"""agenteval: can this local, quantized model really do the job, and how fast?"""

__version__ = "0.1.0"
