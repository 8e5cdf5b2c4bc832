"""GGUF model files: what a file says about itself (``header``: read without any optional
package; ``info``: its quantization, architecture and chat template for the fingerprint,
llama.cpp's file-type names), and writing and quantizing agenteval's tiny test model
(``write``: the ``serve`` and ``llamacpp`` extras).

Below both the model clients (a server's probe reads the file the server names) and the
servers agenteval starts (preflight, the engines' fingerprints), so neither imports the other
for it.
"""
