"""How honest and how cheap agenteval's telemetry is, against llama-cpp-python's
server on a Q4_K_M test model (random weights, big enough that decoding is
compute-bound). Prints figures; asserts nothing.

1. agenteval's decode tokens/s (client clock, tokens from llama.cpp's own
   count) against llama.cpp's own timing of the same requests: its eval time
   (model decode only) and its generation loop (total time less prompt
   evaluation: decode plus sampling, what a user waits for) (target: within 5%).
2. agenteval's client against a bare httpx stream of the same requests:
   added end-to-end time (target: <= 2%).

    python3 bench/telemetry.py [--requests 12] [--max-tokens 128] [--hidden 1536 --layers 12]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from agenteval.config import ModelConfig, ProjectConfig
from agenteval.models.served import build_served
from agenteval.models.testmodel import create_test_model

PROMPT = [{"role": "user", "content": "Write a Python function that adds two numbers, with a docstring."}]


def bare_stream(base_url: str, max_tokens: int) -> float:
    t0 = time.perf_counter()
    body = {"model": "bench", "messages": PROMPT, "stream": True, "max_tokens": max_tokens,
            "temperature": 0.0, "seed": 0}
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=300) as r:
        for _ in r.iter_lines():
            pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=1536)
    ap.add_argument("--layers", type=int, default=12)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "bench-model"
        written = create_test_model(model_dir, gguf="Q4_K_M", hidden_size=args.hidden, layers=args.layers)
        cfg = ModelConfig(engine="llamacpp", path=str(model_dir / "model-Q4_K_M.gguf"), context=4096,
                          name="bench")
        model = build_served("bench", cfg, ProjectConfig(models={"bench": cfg}))
        ours_rate, server_rate, server_gen_rate, ours_e2e, bare_e2e = [], [], [], [], []
        with model.serving(log=lambda m: None):
            assert model.server is not None
            base_url = model.server.base_url
            for _ in range(2):  # warm both paths
                model.chat(PROMPT, max_tokens=args.max_tokens)
                bare_stream(base_url, args.max_tokens)
            for i in range(args.requests):
                order = (0, 1) if i % 2 == 0 else (1, 0)  # interleave: drift hits both sides
                for which in order:
                    if which == 0:
                        t0 = time.perf_counter()
                        call = model.chat(PROMPT, max_tokens=args.max_tokens).call
                        ours_e2e.append(time.perf_counter() - t0)
                        if call.decode_s and call.completion_tokens:
                            # tokens after the first, over first-to-last token time: what llama.cpp's eval covers
                            ours_rate.append((call.completion_tokens - 1) / call.decode_s)
                            server_rate.append(call.server_timings["eval_tokens_per_s"])
                            server_gen_rate.append(call.server_timings["generation_tokens_per_s"])
                    else:
                        bare_e2e.append(bare_stream(base_url, args.max_tokens))
    o, s, g = statistics.median(ours_rate), statistics.median(server_rate), statistics.median(server_gen_rate)
    oe, be = statistics.median(ours_e2e), statistics.median(bare_e2e)
    print(f"model: random-weight Llama, {written['parameters']:,} parameters, Q4_K_M, llama-cpp-python server; "
          f"{args.requests} requests of {args.max_tokens} tokens each side")
    print(f"decode tokens/s, agenteval (client clock):  median {o:8.1f}")
    print(f"decode tokens/s, llama.cpp's own eval time: median {s:8.1f}   "
          f"difference {100 * (o - s) / s:+.1f}% (decode only)")
    print(f"decode tokens/s, llama.cpp's generation loop (sampling incl.): {g:8.1f}   "
          f"difference {100 * (o - g) / g:+.1f}% (target within 5%)")
    print(f"end-to-end per request, bare httpx stream:  median {be * 1000:8.1f} ms")
    print(f"end-to-end per request, agenteval client:   median {oe * 1000:8.1f} ms   "
          f"added {100 * (oe - be) / be:+.1f}% (target <= 2%)")


if __name__ == "__main__":
    main()
