"""CLI: `tongues generate`, `tongues chat` (interactive, streaming) and `tongues serve` (OpenAI API)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import IO, Any

from tongues.errors import TonguesError

CHAT_HELP = "commands: /reset forgets the conversation, /exit (or Ctrl-D) quits"


def register(commands: Any) -> None:
    """Add the generate, chat and serve subcommands."""
    p = commands.add("generate", "continue one or more prompts with a model", _handle_generate,
                     description="Continue prompts with a model directory (ours or any Hugging Face causal LM). "
                                 "Several prompts are decoded as one batch.")
    _model_options(p)
    p.add_argument("prompts", nargs="+", metavar="PROMPT", help="prompt text; several prompts make a batch")
    _sampling_options(p)
    p.add_argument("--stream", action="store_true", help="print text as it is generated (one prompt only)")
    p.add_argument("--details", action="store_true",
                   help="print JSON lines with text, token_ids, logprobs and finish_reason")
    p.add_argument("--no-special-tokens", action="store_true",
                   help="do not add the tokenizer's special tokens (bos) to the prompt")

    p = commands.add("chat", "talk with a model in the terminal (streaming, with history)", _handle_chat,
                     description="Interactive chat using the tokenizer's chat template. " + CHAT_HELP)
    _model_options(p)
    _sampling_options(p)
    p.add_argument("--system", default=None, help="a system message that starts every conversation")

    p = commands.add("serve", "serve a model over an OpenAI-compatible HTTP API", _handle_serve,
                     description="OpenAI-compatible API: /v1/models, /v1/completions, /v1/chat/completions "
                                 "(stream: true as server-sent events), /health. Concurrent requests are "
                                 "batched onto the model.")
    _model_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on every /v1 request; None reads $TONGUES_API_KEY")
    p.add_argument("--model-name", default=None, help="the model id clients use; None = the directory name")
    p.add_argument("--max-batch-size", type=int, default=8, help="most sequences decoded together")
    p.add_argument("--max-queue", type=int, default=32, help="most requests waiting; past it, 503 + Retry-After")
    p.add_argument("--max-tokens-limit", type=int, default=1024, help="the largest max_tokens a request may ask")
    p.add_argument("--max-prompt-tokens", type=int, default=None,
                   help="the longest prompt accepted, in tokens; None = the model's context - 1")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a request may take, queue wait included")


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR", help="model directory (config.json + *.safetensors + "
                                                                  "tokenizer), or a Hub name org/model")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps; None = cuda if available, else cpu")
    p.add_argument("--dtype", default=None, choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights dtype; None = float32 on CPU, the checkpoint's on GPU")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch; None = torch's choice")


def _sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="most tokens to generate; None = generation_config.json's, else 256")
    p.add_argument("--temperature", type=float, default=None,
                   help="0 = greedy, higher = more random; None = generation_config.json's, else greedy")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: keep the top tokens holding this mass")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (0 = off)")
    p.add_argument("--repetition-penalty", type=float, default=None,
                   help="divide the scores of tokens already seen by this (1 = off)")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="stop when the text contains TEXT (cut before it); repeatable")
    p.add_argument("--seed", type=int, default=None, help="fix sampling: same seed, same output")


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
            "top_k": args.top_k, "repetition_penalty": args.repetition_penalty, "stop": args.stop, "seed": args.seed}


def _load(args: argparse.Namespace) -> Any:
    from tongues.hub import resolve_model_dir

    args.model = str(resolve_model_dir(args.model))  # a missing path or an offline hub fails before torch loads
    from transformers.utils import logging as hf_logging

    from tongues.infer.generate import load

    hf_logging.disable_progress_bar()  # a weights-loading bar on every command is noise
    return load(args.model, device=args.device, dtype=args.dtype, threads=args.threads)


def _handle_generate(args: argparse.Namespace) -> int:
    import json
    import warnings
    from dataclasses import asdict

    lm = _load(args)
    from tongues.infer.generate import EmptyPromptWarning

    options = _sampling(args)
    special = not args.no_special_tokens
    if any(not p for p in args.prompts):
        print(f"note: an empty prompt starts from the BOS token {lm.tokenizer.bos_token!r} alone "
              "(unconditional text)", file=sys.stderr)
        warnings.simplefilter("ignore", EmptyPromptWarning)
    if args.stream:
        if len(args.prompts) != 1:
            raise TonguesError("--stream takes one prompt")
        for piece in lm.generate(args.prompts[0], **options, stream=True, add_special_tokens=special):
            print(piece, end="", flush=True)
        print()
        return 0
    results = lm.generate(args.prompts, **options, return_details=args.details, add_special_tokens=special)
    for prompt, result in zip(args.prompts, results, strict=True):
        if args.details:
            print(json.dumps({"prompt": prompt, **asdict(result)}, ensure_ascii=False))
        elif len(args.prompts) > 1:
            print(f"=== {prompt}\n{result}")
        else:
            print(result)
    return 0


def chat_repl(
    reply: Callable[[list[dict[str, str]]], Any],
    read: Callable[[str], str] | None = None,
    out: IO[str] | None = None,
    system: str | None = None,
) -> int:
    """Run the chat loop: read a line, stream `reply(messages)`'s pieces to `out`, keep the history.

    `reply` takes the conversation so far and returns an iterator of text pieces; `read` defaults to
    input() and `out` to stdout. "/reset" forgets the conversation (the system message stays), "/exit"
    or end of input quits.
    """
    read = read or input
    out = out or sys.stdout
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    print(CHAT_HELP, file=out, flush=True)
    while True:
        try:
            line = read("you> ")
        except (EOFError, KeyboardInterrupt):
            print(file=out)
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            history = list(start)
            print("(conversation reset)", file=out, flush=True)
            continue
        if text.startswith("/"):
            print(f"unknown command {text}; {CHAT_HELP}", file=out, flush=True)
            continue
        history.append({"role": "user", "content": text})
        print("model> ", end="", file=out, flush=True)
        pieces = []
        try:
            for piece in reply(history):
                pieces.append(piece)
                print(piece, end="", file=out, flush=True)
        except KeyboardInterrupt:  # stop this answer, keep the session
            print(" [interrupted]", end="", file=out)
        except TonguesError as err:  # e.g. the conversation outgrew the context: say so, let /reset fix it
            history.pop()
            print(f"\nerror: {err} (/reset starts over)", file=out, flush=True)
            continue
        print(file=out, flush=True)
        history.append({"role": "assistant", "content": "".join(pieces)})


def _handle_chat(args: argparse.Namespace) -> int:
    try:
        import readline  # noqa: F401  (line editing and input history for input())
    except ImportError:
        pass
    lm = _load(args)
    options = _sampling(args)
    return chat_repl(lambda messages: lm.chat(messages, **options, stream=True), system=args.system)


def _handle_serve(args: argparse.Namespace) -> int:
    from tongues.infer.serve import ServerLimits, serve

    for name in ("max_batch_size", "max_queue", "max_tokens_limit"):
        if getattr(args, name) < 1:
            raise TonguesError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.timeout <= 0:
        raise TonguesError(f"--timeout must be > 0 seconds, got {args.timeout}")
    limits = ServerLimits(max_batch_size=args.max_batch_size, max_queue=args.max_queue,
                          max_tokens=args.max_tokens_limit, max_prompt_tokens=args.max_prompt_tokens,
                          timeout_s=args.timeout)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    serve(args.model, host=args.host, port=args.port, api_key=args.api_key or os.environ.get("TONGUES_API_KEY"), model_name=args.model_name,
          limits=limits, threads=args.threads, device=args.device, dtype=args.dtype)
    return 0
