"""How honest and how cheap agenteval's telemetry is, against the server's own figures.
Prints figures; asserts nothing.

Models: ``smollm2`` (the built-in real model, SmolLM2 135M Instruct Q4_1, downloaded on
first use) or ``tiny`` (a random-weight Llama built here, Q4_K_M, big enough that decoding
is compute-bound). Engines: llama-cpp-python (``llamacpp``) and llama.cpp's own
``llama-server`` (binary from $AGENTEVAL_LLAMA_SERVER, PATH, or .ci/llama-server.sh's cache).

1. agenteval's decode tokens/s (client clock) against the server's own timing of the
   same requests, medians over ``--requests``: llama-server's ``timings.predicted_per_second``;
   llama-cpp-python's llama.cpp perf report (eval time: decode only; generation loop: total
   less prompt evaluation, sampling included). agenteval records completion_tokens /
   (last token - first token); over N tokens that spans N-1 decode steps, so the
   like-for-like figure is (N-1) / that time (target: within 5%).
2. agenteval's client against a bare httpx stream of the same requests: added
   end-to-end time (target: <= 2%).

    python3 bench/telemetry.py [--model smollm2|tiny] [--engine llamacpp|llama-server|both]
                               [--requests 12] [--max-tokens 128] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from agenteval.config import BUILTIN_MODELS, EngineName, ModelConfig, ProjectConfig
from agenteval.records import ModelCall
from agenteval.runner.model_registry import build_served
from agenteval.serving.served import ServedModel

PROMPT = [{"role": "user", "content": "Write a detailed essay about the history of computing."}]
ENGINES: dict[str, list[EngineName]] = {"llamacpp": ["llamacpp"], "llama-server": ["llama-server"],
                                        "both": ["llamacpp", "llama-server"]}


def bare_stream(base_url: str, name: str, max_tokens: int) -> float:
    t0 = time.perf_counter()
    body = {"model": name, "messages": PROMPT, "stream": True, "max_tokens": max_tokens,
            "temperature": 0.0, "seed": 0}
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=300) as r:
        for _ in r.iter_lines():
            pass
    return time.perf_counter() - t0


def model_config(model: str, engine: EngineName, tmp: Path, hidden: int, layers: int,
                 threads: int | None) -> tuple[ModelConfig, str]:
    thread_args = [] if threads is None else ["-t", str(threads)] if engine == "llama-server" \
        else ["--n_threads", str(threads)]
    if model == "smollm2":
        base = BUILTIN_MODELS["smollm2"]
        return (base.model_copy(update={"engine": engine, "name": "bench", "context": 4096, "args": thread_args}),
                "SmolLM2 135M Instruct, Q4_1 (real weights)")
    from agenteval.serving.testmodel import create_test_model

    model_dir = tmp / "bench-model"
    if not (model_dir / "model-Q4_K_M.gguf").exists():
        create_test_model(model_dir, gguf="Q4_K_M", hidden_size=hidden, layers=layers)
    return (ModelConfig(engine=engine, path=str(model_dir / "model-Q4_K_M.gguf"), context=4096, name="bench",
                        args=thread_args), f"random-weight Llama (hidden {hidden}, {layers} layers), Q4_K_M")


def server_rates(call: ModelCall, engine: EngineName) -> dict[str, float]:
    t = call.server_timings
    if engine == "llama-server":
        return {"predicted_per_second": float(t["predicted_per_second"])} if "predicted_per_second" in t else {}
    return {k: float(t[k]) for k in ("eval_tokens_per_s", "generation_tokens_per_s") if k in t}


def run(model: ServedModel, engine: EngineName, requests: int, max_tokens: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"recorded": [], "like_for_like": [], "ours_e2e": [], "bare_e2e": [],
                                       "tokens": []}
    with model.serving(log=lambda m: None):
        assert model.server is not None
        base_url = model.server.base_url
        for _ in range(2):  # warm both paths
            model.chat(PROMPT, max_tokens=max_tokens)
            bare_stream(base_url, "bench", max_tokens)
        for i in range(requests):
            order = (0, 1) if i % 2 == 0 else (1, 0)  # interleave: drift hits both sides
            for which in order:
                if which == 1:
                    figures["bare_e2e"].append(bare_stream(base_url, "bench", max_tokens))
                    continue
                t0 = time.perf_counter()
                call = model.chat(PROMPT, max_tokens=max_tokens).call
                figures["ours_e2e"].append(time.perf_counter() - t0)
                if call.decode_s and call.completion_tokens and call.decode_tokens_per_s:
                    figures["recorded"].append(call.decode_tokens_per_s)
                    figures["like_for_like"].append((call.completion_tokens - 1) / call.decode_s)
                    figures["tokens"].append(call.completion_tokens)
                    for key, value in server_rates(call, engine).items():
                        figures.setdefault(key, []).append(value)
    return figures


def report(engine: EngineName, what: str, figures: dict[str, list[float]], requests: int) -> None:
    med = {k: statistics.median(v) for k, v in figures.items() if v}
    print(f"\n{what}, {engine}: {requests} requests each side, median {med['tokens']:.0f} completion tokens")
    print(f"  decode tokens/s, agenteval as recorded (N / first-to-last):  {med['recorded']:8.1f}")
    print(f"  decode tokens/s, agenteval like-for-like ((N-1) / same):      {med['like_for_like']:8.1f}")
    labels = {"predicted_per_second": "llama-server timings.predicted_per_second",
              "eval_tokens_per_s": "llama.cpp perf report, eval time (decode only)",
              "generation_tokens_per_s": "llama.cpp perf report, generation loop"}
    for key, label in labels.items():
        if key in med:
            diff = 100 * (med["like_for_like"] - med[key]) / med[key]
            print(f"  decode tokens/s, {label:<47} {med[key]:8.1f}   like-for-like differs {diff:+.1f}%")
    oe, be = med["ours_e2e"], med["bare_e2e"]
    print(f"  end-to-end per request, bare httpx {be * 1000:8.1f} ms, agenteval {oe * 1000:8.1f} ms: "
          f"added {100 * (oe - be) / be:+.1f}% (target <= 2%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    ap.add_argument("--engine", choices=sorted(ENGINES), default="both")
    ap.add_argument("--requests", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="server threads (default: the server's own)")
    ap.add_argument("--hidden", type=int, default=1536, help="tiny model only")
    ap.add_argument("--layers", type=int, default=12, help="tiny model only")
    args = ap.parse_args()
    if args.requests < 10:
        ap.error("--requests must be at least 10 (medians)")
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ENGINES[args.engine]:
            cfg, what = model_config(args.model, engine, Path(tmp), args.hidden, args.layers, args.threads)
            model = build_served("bench", cfg, ProjectConfig(models={"bench": cfg}))
            model.preflight(print)  # downloads the built-in model on first use
            report(engine, what, run(model, engine, args.requests, args.max_tokens), args.requests)


if __name__ == "__main__":
    main()
