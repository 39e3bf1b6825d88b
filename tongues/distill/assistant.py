"""`tongues distill`: a smaller assistant from a teacher, by one of four methods, judged against a
student of the same shape trained without a teacher.

- logits (default, offline): the teacher runs once over the training windows and its top-k
  distributions are cached (`tongues.distill.cache`); the student trains with the pretraining loop
  itself on alpha*CE + (1-alpha)*T^2*D(teacher || student) (`tongues.lm.distill_loss`). Same
  vocabulary only.
- sequence (Kim & Rush 2016): the teacher answers the instruction prompts and the student is
  instruction-tuned on those answers (`tongues sft`). Works across tokenizers.
- on-policy: TRL's DistillationTrainer (the student generates, the teacher scores; beta 0 = forward
  KL, 1 = reverse KL, 0.5 = JSD), or `gkd` (trl.experimental GKDTrainer, lmbda mixes on/off-policy).
  Same vocabulary.
- gold: cross-tokenizer, trl.experimental GOLDTrainer with the ULD loss (sorted-probability
  Wasserstein distance, Boizard et al. 2024).

The student is `--student DIR`, `--student-params N --tokenizer DIR` (the planner's shape), or
`--student-layers K` (the teacher with K of its layers kept, evenly spaced). The scratch student
(same shape, same tokens, cross-entropy only) is trained beside it for the report (`logits`).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tongues.errors import ConfigError, DataError

METHODS = ("logits", "sequence", "on-policy", "gkd", "gold")
SAME_VOCAB = ("logits", "on-policy", "gkd")
# pretraining settings of a logit-distilled student unless --set says otherwise
STUDENT_DEFAULTS = {"seq_len": 256, "global_batch_tokens": 2048, "micro_batch_size": 8, "lr": 3e-3,
                    "warmup_steps": 20, "eval_every": 100, "checkpoint_every": 200, "log_every": 20, "tensorboard": False}


@dataclass
class DistillJob:
    teacher: str
    data: list[str]
    out: Path
    method: str = "logits"
    student: str | None = None
    student_params: float | None = None
    student_layers: int | None = None
    tokenizer: str | None = None
    objective: str = "fkl"
    temperature: float = 1.0
    alpha: float = 0.5
    k: int = 32
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    scratch: bool = True
    eval_tasks: list[str] | None = None


def distill(job: DistillJob, log: Any = print) -> dict[str, Any]:
    """Run one distillation (module docstring) into job.out; returns its metrics (report.md beside)."""
    if job.method not in METHODS:
        raise ConfigError(f"--method {job.method!r}: one of {', '.join(METHODS)}")
    given = [n for n, v in (("--student", job.student), ("--student-params", job.student_params),
                            ("--student-layers", job.student_layers)) if v]
    if len(given) != 1:
        raise ConfigError("give exactly one of --student DIR, --student-params N (with --tokenizer DIR) or "
                          f"--student-layers K (got {', '.join(given) or 'none'})")
    if job.student_params and not job.tokenizer:
        raise ConfigError("--student-params needs --tokenizer DIR (the student's tokenizer)")
    from tongues.distill.teacher import load_teacher, teacher_id

    job.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    teacher, teacher_tok = load_teacher(job.teacher)
    teacher_dir = _teacher_dir(job, teacher, teacher_tok)
    student_init = _student_init(job, teacher, teacher_dir, teacher_tok)
    from transformers import AutoTokenizer

    student_tok = AutoTokenizer.from_pretrained(student_init)
    from tongues.distill.teacher import same_vocabulary

    same = same_vocabulary(teacher_tok, student_tok)
    if job.method in SAME_VOCAB and not same:
        raise ConfigError(f"--method {job.method}: the teacher's and the student's vocabularies differ; logit "
                          "distillation needs one tokenizer. Across tokenizers use --method sequence or --method gold")
    n_teacher = sum(p.numel() for p in teacher.parameters())
    n_student = _param_count(student_init)
    if n_student > n_teacher:
        warnings.warn(f"the student ({n_student:,} parameters) is larger than its teacher ({n_teacher:,})",
                      stacklevel=2)
        log(f"warning: the student ({n_student:,} parameters) is larger than its teacher ({n_teacher:,})")
    metrics: dict[str, Any] = {"method": job.method, "teacher": str(job.teacher), "teacher_params": n_teacher,
                               "student_params": n_student, "student_init": _init_kind(student_init)}
    runner = {"logits": _logits, "sequence": _sequence, "on-policy": _on_policy, "gkd": _on_policy,
              "gold": _gold}[job.method]
    metrics.update(runner(job, teacher, teacher_dir, student_init, log, teacher_id(job.teacher)))
    from tongues.distill.report import compare, write_report

    models = {"teacher": teacher_dir, "student": job.out / "student" / "model"}
    if (job.out / "scratch" / "model" / "config.json").is_file():
        models["scratch"] = job.out / "scratch" / "model"
    metrics["comparison"] = compare(models, job, log)
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    write_report(job, metrics)
    return metrics


def _teacher_dir(job: DistillJob, teacher: Any, tokenizer: Any) -> Path:
    """A directory holding the teacher (a GGUF teacher is written out once, dequantized, as safetensors)."""
    from tongues.distill.teacher import is_gguf
    from tongues.hub import resolve_model_dir
    from tongues.manifest import atomic_path

    if not is_gguf(job.teacher):
        return resolve_model_dir(job.teacher)
    target = job.out / "teacher"
    if not (target / "config.json").is_file():
        with atomic_path(target) as tmp:
            teacher.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    return target


def _student_init(job: DistillJob, teacher: Any, teacher_dir: Path, teacher_tok: Any) -> Path:
    from tongues.distill.student import layer_dropped_student, planned_student

    target = job.out / "student_init"
    if (target / "config.json").is_file():
        return target
    if job.student:
        from tongues.hub import resolve_model_dir

        return resolve_model_dir(job.student)
    if job.student_layers:
        return layer_dropped_student(teacher, teacher_dir, teacher_tok, job.student_layers, target)
    seq_len = int(job.overrides.get("seq_len", STUDENT_DEFAULTS["seq_len"]))
    return planned_student(float(job.student_params), Path(job.tokenizer), seq_len, target)


def _init_kind(directory: Path) -> str:
    meta = directory / "student.json"
    if meta.is_file():
        return json.loads(meta.read_text(encoding="utf-8"))["init"]
    return "given"


def _param_count(directory: Path) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    with __import__("torch").device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(directory))
    return sum(p.numel() for p in model.parameters())


# ---- logits: offline, through the pretraining loop ------------------------------------------------


def token_dirs(sources: list[str], tokenizer_dir: Path, out: Path) -> dict[str, Path]:
    """{corpus: token dir} from token directories, tokenize-stage directories (one per corpus inside),
    or prepared corpora (tokenized here with the student's tokenizer)."""
    from tongues.data.tokenize import tokenize_corpus

    found: dict[str, Path] = {}
    for src in sources:
        path = Path(src)
        if (path / "meta.json").is_file():
            found[path.name] = path
        elif path.is_dir() and any((d / "meta.json").is_file() for d in path.iterdir() if d.is_dir()):
            found.update({d.name: d for d in sorted(path.iterdir()) if (d / "meta.json").is_file()})
        elif (path / "stats.json").is_file():
            target = out / "tokens" / path.name
            if not (target / "meta.json").is_file():
                tokenize_corpus(path, tokenizer_dir, target)
            found[path.name] = target
        else:
            raise DataError(f"--data {src}: not token shards (tongues data tokenize), a tokenize stage directory, "
                            "or a prepared corpus (tongues data prepare)")
    return found


def student_config(job: DistillJob, init: Path, teacher: bool) -> Any:
    from tongues.lm.config import PretrainConfig
    from tongues.schema import validate

    values = {**STUDENT_DEFAULTS, **job.overrides, "model_config_file": str(init / "config.json")}
    if teacher and _init_kind(init) != "planned":
        values["init_from"] = str(init)
    return validate(PretrainConfig, values, "distill --set")


def _logits(job: DistillJob, teacher: Any, teacher_dir: Path, init: Path, log: Any, teacher_sha: str) -> dict[str, Any]:
    from tongues.distill.cache import build_teacher_cache
    from tongues.lm.distill_loss import KDSettings
    from tongues.lm.pretrain import pretrain

    settings = KDSettings(alpha=job.alpha, temperature=job.temperature, objective=job.objective).check()
    data = token_dirs(job.data, init, job.out)
    cfg = student_config(job, init, teacher=True)
    t0 = time.perf_counter()
    caches = {name: build_teacher_cache(teacher, d, job.out / "teacher_cache" / name, seq_len=cfg.seq_len, k=job.k,
                                        temperature=job.temperature, teacher_sha=teacher_sha)
              for name, d in data.items()}
    cache_seconds = time.perf_counter() - t0
    log(f"distill: teacher cache of {len(caches)} corpus(es) in {cache_seconds:.1f}s")
    mixture = {name: (d, 1.0) for name, d in data.items()}
    t1 = time.perf_counter()
    student = pretrain(cfg, mixture, init, job.out / "student", seed=job.seed,
                       teacher={"caches": caches, "settings": settings, "name": str(job.teacher)})
    student_seconds = time.perf_counter() - t1
    out = {"cache_seconds": round(cache_seconds, 1), "student_seconds": round(student_seconds, 1),
           "student_tokens": student["tokens"], "student_val_bpb": student.get("val_bpb"),
           "kd": {"alpha": job.alpha, "temperature": job.temperature, "objective": job.objective, "k": job.k}}
    if job.scratch:
        t2 = time.perf_counter()
        scratch = pretrain(student_config(job, init, teacher=False), mixture, init, job.out / "scratch", seed=job.seed)
        out.update(scratch_seconds=round(time.perf_counter() - t2, 1), scratch_val_bpb=scratch.get("val_bpb"),
                   scratch_tokens=scratch["tokens"])
        out["cost_per_token_vs_scratch"] = (student_seconds / max(1, student["tokens"])) / (
            out["scratch_seconds"] / max(1, scratch["tokens"]))
    return out


# ---- sequence, on-policy, gold: through TRL ---------------------------------------------------------


def _prompts(job: DistillJob) -> tuple[list[Any], list[Any]]:
    from tongues.instruct.data import load_conversations, split_records

    return split_records(load_conversations(job.data))


def _sequence(job: DistillJob, teacher: Any, teacher_dir: Path, init: Path, log: Any, _sha: str) -> dict[str, Any]:
    """The teacher answers the training prompts (greedy, batched); the student is SFT'd on them."""
    from tongues.infer.generate import LanguageModel
    from tongues.instruct.stage import Job, run_job
    from tongues.instruct.training import load_tokenizer
    from tongues.manifest import atomic_path

    train, _ = _prompts(job)
    lm = LanguageModel(teacher, load_tokenizer(teacher_dir), teacher_dir)
    t0 = time.perf_counter()
    answers = lm.chat([c.prompt for c in train], max_new_tokens=int(job.overrides.pop("max_new_tokens", 128)),
                      temperature=0, batch_size=16)
    path = job.out / "teacher_answers.jsonl"
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps({"id": c.id, "messages": [*c.prompt, {"role": "assistant", "content": a}],
                                           "answer_lang": c.answer_lang}, ensure_ascii=False) + "\n"
                               for c, a in zip(train, answers, strict=True) if a.strip()), encoding="utf-8")
    log(f"distill: the teacher answered {len(train)} prompts in {time.perf_counter() - t0:.1f}s")
    metrics = run_job(Job("sft", _trainable(init, job), [str(path)], job.out / "student", overrides=dict(job.overrides),
                          seed=job.seed, eval_data=job.data), log)
    return {"teacher_answers": len(train), "sft": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}


def _trainable(init: Path, job: DistillJob) -> Path:
    """A student directory with weights (a planned shape gets its seeded random initialization written)."""
    if any(init.glob("*.safetensors")):
        return init
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(job.seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(init))
    model.save_pretrained(init, safe_serialization=True)
    return init


def _on_policy(job: DistillJob, teacher: Any, teacher_dir: Path, init: Path, log: Any, _sha: str) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from tongues.instruct.training import count_params, load_tokenizer, save_model, train, trl_config

    student_dir = _trainable(init, job)
    tokenizer = load_tokenizer(student_dir)
    student = AutoModelForCausalLM.from_pretrained(student_dir, use_safetensors=True)
    train_convs, _ = _prompts(job)
    dataset = Dataset.from_list([{"prompt": c.prompt} for c in train_convs])
    defaults = {"max_completion_length": 48, "per_device_train_batch_size": 8, "learning_rate": 5e-4,
                "num_train_epochs": 1, "logging_steps": 1}
    if job.method == "gkd":
        from trl.experimental.gkd import GKDConfig, GKDTrainer

        config = trl_config(GKDConfig, job.out / "student", params=count_params(student), seed=job.seed,
                            defaults={**defaults, "lmbda": 0.5, "beta": 0.5}, overrides=job.overrides)
        trainer = GKDTrainer(model=student, teacher_model=teacher, args=config, train_dataset=dataset,
                             processing_class=tokenizer)
    else:
        from trl import DistillationConfig, DistillationTrainer

        config = trl_config(DistillationConfig, job.out / "student", params=count_params(student), seed=job.seed,
                            defaults={**defaults, "beta": 0.5}, overrides=job.overrides)
        trainer = DistillationTrainer(model=student, teacher_model=teacher, args=config, train_dataset=dataset,
                                      processing_class=tokenizer)
    metrics = train(trainer, job.out / "student")
    save_model(trainer.model, tokenizer, job.out / "student", stage=f"distill-{job.method}", base=student_dir,
               data=job.data, metrics=metrics, card=f"# distilled ({job.method}) from {job.teacher}\n")
    return {"trl": metrics}


def _gold(job: DistillJob, teacher: Any, teacher_dir: Path, init: Path, log: Any, _sha: str) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl.experimental.gold import GOLDConfig, GOLDTrainer

    from tongues.instruct.training import count_params, load_tokenizer, save_model, train, trl_config

    student_dir = _trainable(init, job)
    tokenizer = load_tokenizer(student_dir)
    student = AutoModelForCausalLM.from_pretrained(student_dir, use_safetensors=True)
    train_convs, _ = _prompts(job)
    dataset = Dataset.from_list([{"messages": c.messages} for c in train_convs])
    config = trl_config(GOLDConfig, job.out / "student", params=count_params(student), seed=job.seed,
                        defaults={"use_uld_loss": True, "use_extended_uld": False,
                                  "teacher_tokenizer_name_or_path": str(teacher_dir), "max_completion_length": 48,
                                  "per_device_train_batch_size": 4, "learning_rate": 5e-4, "num_train_epochs": 1,
                                  "packing": False, "logging_steps": 1, "lmbda": 0.0},
                        overrides=job.overrides)
    trainer = GOLDTrainer(model=student, teacher_model=teacher, args=config, train_dataset=dataset,
                          processing_class=tokenizer)
    metrics = train(trainer, job.out / "student")
    save_model(trainer.model, tokenizer, job.out / "student", stage="distill-gold", base=student_dir, data=job.data,
               metrics=metrics, card=f"# distilled (GOLD, cross-tokenizer ULD) from {job.teacher}\n")
    return {"trl": metrics}


__all__ = ["DistillJob", "METHODS", "distill", "token_dirs"]
