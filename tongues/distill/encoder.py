"""National-language text encoders in a frozen English text space (teacher learning, Reimers &
Gurevych 2020 / M-CLIP; the conditioning alignment of GlueGen): the image pipeline's own UNet is
never retrained, it receives `prompt_embeds` made from Korean, Hindi or Vietnamese.

Teachers (frozen), by what the pipeline consumes:
- "clip": a CLIPTextModel (Stable Diffusion 1.x / 2.x) — the conditioning is its last hidden
  state over 77 positions, padding included, exactly as `StableDiffusionPipeline.encode_prompt`
  makes it; the pooled target is its pooled output;
- "sdxl": SDXL's two CLIP encoders — penultimate hidden states concatenated (77 x 2048) and the
  second encoder's projected `pooled_prompt_embeds`;
- "pooled": any other HF text encoder or a sentence-transformers model (mean pooling, normalized):
  a pooled target only (retrieval; not enough for a diffusion pipeline).

Student: a tongues decoder trunk (a pretrained or instruction-tuned model of the language: it knows
the language and its tokenizer), or a small fresh one, plus an alignment head — a fixed set of
learned queries (77 for CLIP) attending to the student's hidden states -> (77, D), and a pooled
projection. Trained on parallel text (English<TAB>xx): MSE to the teacher's conditioning of the
English + (1 - cosine) of the pooled vectors + an in-batch contrastive term on them; the English side goes through the student too
(student(en) ~ teacher(en)), and the empty prompt is included so unconditional guidance matches.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tongues.errors import ConfigError, DataError
from tongues.manifest import atomic_path, write_json

CONFIG = "tongues_encoder.json"
WEIGHTS = "encoder.safetensors"
CLIP_LENGTH = 77


# ---- parallel data ----------------------------------------------------------------------------------


def read_parallel(paths: list[str | Path]) -> list[tuple[str, str]]:
    """(English, xx) pairs from TSV files `English<TAB>xx`; DataError names file:line."""
    pairs: list[tuple[str, str]] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"--parallel {path}: no such file")
        for lineno, raw in enumerate(path.read_bytes().split(b"\n"), 1):
            try:
                line = raw.decode("utf-8").rstrip("\r")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{lineno}: invalid UTF-8 (byte {err.start})") from None
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise DataError(f"{path}:{lineno}: expected 'English<TAB>translation' (two non-empty fields)")
            pairs.append((parts[0].strip(), parts[1].strip()))
    if not pairs:
        raise DataError(f"{', '.join(map(str, paths))}: no parallel pairs")
    return pairs


def split_pairs(pairs: list[tuple[str, str]], share: float = 0.2) -> tuple[list, list]:
    """(train, held-out) by a stable hash of the English side (the instruct sets' rule)."""
    from tongues.data.split import heldout_split

    return heldout_split(pairs, lambda pair: pair[0], share)


# ---- teachers ---------------------------------------------------------------------------------------


class Teacher:
    """A frozen text encoder: `targets(texts)` -> (conditioning [B, L, D] or None, pooled [B, P])."""

    kind: str
    length: int | None
    dim: int | None
    pooled_dim: int

    def targets(self, texts: list[str]) -> tuple[torch.Tensor | None, torch.Tensor]:
        raise NotImplementedError


class ClipTeacher(Teacher):
    """CLIPTextModel as Stable Diffusion 1.x/2.x uses it (conditioning = last hidden state, 77 positions)."""

    kind = "clip"

    def __init__(self, directory: Path) -> None:
        from transformers import AutoTokenizer, CLIPTextModel

        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.model = CLIPTextModel.from_pretrained(directory, use_safetensors=True).eval()
        self.length = int(getattr(self.tokenizer, "model_max_length", CLIP_LENGTH) or CLIP_LENGTH)
        self.length = min(self.length, self.model.config.max_position_embeddings)
        self.dim = self.model.config.hidden_size
        self.pooled_dim = self.dim

    @torch.no_grad()
    def targets(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.tokenizer(texts, padding="max_length", max_length=self.length, truncation=True, return_tensors="pt")
        out = self.model(input_ids=batch.input_ids)
        return out.last_hidden_state, out.pooler_output


class PooledTeacher(Teacher):
    """Any HF text encoder (a sentence-transformers directory included): mean pooling, normalized."""

    kind = "pooled"
    length = None
    dim = None

    def __init__(self, directory: Path) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.model = AutoModel.from_pretrained(directory, use_safetensors=True, trust_remote_code=False).eval()
        self.pooled_dim = self.model.config.hidden_size

    @torch.no_grad()
    def targets(self, texts: list[str]) -> tuple[None, torch.Tensor]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = self.model(**batch).last_hidden_state
        mask = batch.attention_mask.unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return None, F.normalize(pooled, dim=-1)


class SdxlTeacher(Teacher):
    """SDXL's two encoders: penultimate hidden states concatenated, and encoder 2's text_embeds."""

    kind = "sdxl"

    def __init__(self, directory: Path) -> None:
        from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

        self.tokenizers = [AutoTokenizer.from_pretrained(directory / "tokenizer"),
                           AutoTokenizer.from_pretrained(directory / "tokenizer_2")]
        self.models = [CLIPTextModel.from_pretrained(directory / "text_encoder", use_safetensors=True).eval(),
                       CLIPTextModelWithProjection.from_pretrained(directory / "text_encoder_2",
                                                                   use_safetensors=True).eval()]
        self.length = CLIP_LENGTH
        self.dim = sum(m.config.hidden_size for m in self.models)
        self.pooled_dim = self.models[1].config.projection_dim

    @torch.no_grad()
    def targets(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        states, pooled = [], None
        for tokenizer, model in zip(self.tokenizers, self.models, strict=True):
            ids = tokenizer(texts, padding="max_length", max_length=self.length, truncation=True,
                            return_tensors="pt").input_ids
            out = model(ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])
            if hasattr(out, "text_embeds"):
                pooled = out.text_embeds
        return torch.cat(states, dim=-1), pooled


def load_teacher(spec: str | Path) -> Teacher:
    """A teacher by directory or hub name: a diffusers pipeline folder (its text encoder(s)), a
    CLIPTextModel directory, or another encoder (pooled only)."""
    from tongues.hub import resolve_model_dir

    path = Path(spec)
    if not path.exists():
        path = resolve_model_dir(spec)
    if (path / "text_encoder_2").is_dir():
        return SdxlTeacher(path)
    if (path / "text_encoder").is_dir():  # a Stable Diffusion pipeline folder
        import shutil
        import tempfile

        merged = Path(tempfile.mkdtemp(prefix="tongues-clip-"))
        for sub in ("text_encoder", "tokenizer"):
            for f in (path / sub).iterdir():
                shutil.copy2(f, merged / f.name)
        return ClipTeacher(merged)
    config = json.loads((path / "config.json").read_text(encoding="utf-8")) if (path / "config.json").is_file() else {}
    if config.get("model_type") in ("clip_text_model", "clip"):
        return ClipTeacher(path)
    return PooledTeacher(path)


# ---- the student --------------------------------------------------------------------------------------


@dataclass
class EncoderConfig:
    teacher: str
    kind: str  # clip | sdxl | pooled
    length: int | None  # conditioning positions (77 for CLIP), None: pooled only
    dim: int | None  # conditioning width D
    pooled_dim: int
    trunk: dict[str, Any]  # the trunk's LlamaConfig
    heads: int = 4
    head_dim: int = 0  # width inside the alignment head (0: the trunk's width)
    max_tokens: int = 128
    languages: list[str] = field(default_factory=list)


class AlignmentHead(nn.Module):
    """Learned queries cross-attending to the trunk's states -> (length, dim), and a pooled projection."""

    def __init__(self, width: int, cfg: EncoderConfig) -> None:
        super().__init__()
        inner = cfg.head_dim or width
        self.inner = inner
        if cfg.length:
            self.queries = nn.Parameter(torch.randn(cfg.length, inner) * 0.02)
            self.attend = nn.MultiheadAttention(inner, cfg.heads, kdim=width, vdim=width, batch_first=True)
            self.out = nn.Sequential(nn.LayerNorm(inner), nn.Linear(inner, 2 * inner), nn.GELU(),
                                     nn.Linear(2 * inner, cfg.dim))
        self.pool_query = nn.Parameter(torch.randn(1, inner) * 0.02)
        self.pool_attend = nn.MultiheadAttention(inner, cfg.heads, kdim=width, vdim=width, batch_first=True)
        self.pool_out = nn.Sequential(nn.LayerNorm(inner), nn.Linear(inner, cfg.pooled_dim))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        pad = ~mask.bool()
        b = states.shape[0]
        cond = None
        if hasattr(self, "queries"):
            q = self.queries.unsqueeze(0).expand(b, -1, -1)
            attended, _ = self.attend(q, states, states, key_padding_mask=pad, need_weights=False)
            cond = self.out(attended + q)
        pq = self.pool_query.unsqueeze(0).expand(b, -1, -1)
        pooled, _ = self.pool_attend(pq, states, states, key_padding_mask=pad, need_weights=False)
        return cond, self.pool_out(pooled[:, 0] + pq[:, 0])


class PromptEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        from transformers import LlamaConfig, LlamaModel

        self.cfg = cfg
        self.trunk = LlamaModel(LlamaConfig(**cfg.trunk))
        self.head = AlignmentHead(self.trunk.config.hidden_size, cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        states = self.trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(states, attention_mask)


def _tokenize(tokenizer: Any, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each text + EOS (so a causal trunk's last state has read all of it); right-padded."""
    eos = tokenizer.eos_token_id
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"][: max_tokens - 1] + [eos] for t in texts]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    return ids, mask


class TextEncoder:
    """A trained prompt encoder: `encode` gives a diffusers pipeline its prompt_embeds, `embed` gives
    normalized pooled vectors for retrieval."""

    def __init__(self, model: PromptEncoder, tokenizer: Any, path: Path | None = None) -> None:
        self.model, self.tokenizer, self.path = model.eval(), tokenizer, path
        self.config = model.cfg

    @torch.no_grad()
    def encode(self, prompts: str | list[str], batch_size: int = 64) -> dict[str, torch.Tensor]:
        """{"prompt_embeds": [B, 77, D], "pooled_prompt_embeds": [B, P]} for a CLIP/SDXL-aligned encoder."""
        if self.config.length is None:
            raise ConfigError(f"{self.path}: this encoder was aligned to a pooled-only teacher "
                              f"({self.config.teacher}); it gives embeddings for retrieval (embed), not prompt_embeds")
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        conds, pools = [], []
        for i in range(0, len(texts), batch_size):
            ids, mask = _tokenize(self.tokenizer, texts[i:i + batch_size], self.config.max_tokens)
            cond, pooled = self.model(ids, mask)
            conds.append(cond)
            pools.append(pooled)
        return {"prompt_embeds": torch.cat(conds), "pooled_prompt_embeds": torch.cat(pools)}

    @torch.no_grad()
    def embed(self, texts: str | list[str], batch_size: int = 64) -> torch.Tensor:
        """Normalized pooled vectors [B, P] (the teacher's pooled space)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = []
        for i in range(0, len(texts), batch_size):
            ids, mask = _tokenize(self.tokenizer, texts[i:i + batch_size], self.config.max_tokens)
            out.append(F.normalize(self.model(ids, mask)[1], dim=-1))
        return torch.cat(out)


def load_encoder(path: str | Path) -> TextEncoder:
    """A prompt encoder directory written by `tongues encoder distill`."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    path = Path(path)
    if not (path / CONFIG).is_file():
        raise DataError(f"{path}: not a tongues text encoder (no {CONFIG}); make one with `tongues encoder distill`")
    cfg = EncoderConfig(**json.loads((path / CONFIG).read_text(encoding="utf-8")))
    model = PromptEncoder(cfg)
    model.load_state_dict(load_file(path / WEIGHTS))
    return TextEncoder(model, AutoTokenizer.from_pretrained(path), path)


# ---- training -----------------------------------------------------------------------------------------


@dataclass
class EncoderJob:
    teacher: str
    student: str
    parallel: list[str]
    out: Path
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    trunk_lr: float = 2e-4
    pooled_weight: float = 1.0
    english_weight: float = 0.5
    contrastive_temperature: float = 0.05
    checkpoint_every: int = 100
    seed: int = 0


def _trunk_from(student: Path, seed: int) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """The trunk's LlamaConfig and (for a trained model) its weights under `model.`."""
    from safetensors.torch import load_file

    config = json.loads((student / "config.json").read_text(encoding="utf-8"))
    keep = {k: v for k, v in config.items() if k not in ("architectures", "model_type", "transformers_version",
                                                         "_name_or_path", "dtype", "torch_dtype", "auto_map")}
    files = sorted(student.glob("*.safetensors"))
    if not files:
        return keep, None
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        weights.update(load_file(f))
    trunk = {k[len("model."):]: v for k, v in weights.items() if k.startswith("model.")}
    return keep, trunk


def _teacher_targets(teacher: Teacher, texts: list[str], batch: int = 64) -> tuple[torch.Tensor | None, torch.Tensor]:
    conds, pools = [], []
    for i in range(0, len(texts), batch):
        c, p = teacher.targets(texts[i:i + batch])
        conds.append(c)
        pools.append(p)
    return (torch.cat(conds) if conds[0] is not None else None), torch.cat(pools)


def contrastive(pooled: torch.Tensor, targets_all: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """In-batch InfoNCE: each student vector against the batch's distinct teacher vectors, its own
    the positive. The cosine term pulls vectors toward their targets; this one pushes them apart
    from the others', which is what retrieval measures."""
    unique, label = torch.unique(targets, return_inverse=True)
    logits = F.normalize(pooled, dim=-1) @ F.normalize(targets_all[unique], dim=-1).t() / temperature
    return F.cross_entropy(logits, label)


def train_encoder(job: EncoderJob, log: Any = print) -> dict[str, Any]:
    """Align a student to the teacher on the parallel files (module docstring); writes job.out."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from tongues.hub import resolve_model_dir
    from tongues.instruct.evaluate import model_languages
    from tongues.progress import progress_bar

    torch.manual_seed(job.seed)
    pairs = read_parallel(job.parallel)
    train, held = split_pairs(pairs)
    teacher = load_teacher(job.teacher)
    student_dir = resolve_model_dir(job.student)
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    trunk_cfg, trunk_weights = _trunk_from(student_dir, job.seed)
    cfg = EncoderConfig(teacher=str(job.teacher), kind=teacher.kind, length=teacher.length, dim=teacher.dim,
                        pooled_dim=teacher.pooled_dim, trunk=trunk_cfg, languages=model_languages(student_dir))
    model = PromptEncoder(cfg)
    if trunk_weights is not None:
        model.trunk.load_state_dict(trunk_weights, strict=False)
    english = sorted({en for en, _ in train} | {""})
    t0 = time.perf_counter()
    cond_t, pooled_t = _teacher_targets(teacher, english)
    log(f"encoder: teacher targets for {len(english)} English texts in {time.perf_counter() - t0:.1f}s "
        f"({teacher.kind}, conditioning {tuple(cond_t.shape[1:]) if cond_t is not None else 'none'}, pooled {pooled_t.shape[1]})")
    index = {t: i for i, t in enumerate(english)}
    examples = [(xx, index[en]) for en, xx in train] + [(en, index[en]) for en, _ in train] + [("", index[""])]
    weights = [1.0] * len(train) + [job.english_weight] * len(train) + [1.0]
    optimizer = torch.optim.AdamW([{"params": model.trunk.parameters(), "lr": job.trunk_lr},
                                   {"params": model.head.parameters(), "lr": job.lr}], weight_decay=0.01)
    ckpt = job.out / "checkpoint"
    step = 0
    if (ckpt / "state.json").is_file():  # resume: weights, optimizer, step, RNG
        model.load_state_dict(load_file(ckpt / WEIGHTS))
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        state = json.loads((ckpt / "state.json").read_text())
        step = state["step"]
        torch.set_rng_state(torch.tensor(state["rng"], dtype=torch.uint8))
        log(f"encoder: resuming at step {step}")
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    rng = torch.Generator().manual_seed(job.seed)
    order = torch.randperm(len(examples), generator=rng).tolist()
    history = []
    bar = progress_bar(total=job.steps, initial=step, desc="encoder", unit="step")
    model.train()
    while step < job.steps:
        start = (step * job.batch_size) % len(order)
        pick = [order[(start + j) % len(order)] for j in range(job.batch_size)]
        xs = [examples[i][0] for i in pick]
        targets = torch.tensor([examples[i][1] for i in pick])
        w = torch.tensor([weights[i] for i in pick])
        ids, mask = _tokenize(tokenizer, xs, cfg.max_tokens)
        cond, pooled = model(ids, mask)
        loss_pool = ((1 - F.cosine_similarity(pooled, pooled_t[targets], dim=-1)) * w).mean()
        loss = job.pooled_weight * (loss_pool + contrastive(pooled, pooled_t, targets, job.contrastive_temperature))
        loss_cond = torch.zeros(())
        if cond is not None:
            loss_cond = (((cond - cond_t[targets]) ** 2).mean(dim=(1, 2)) * w).mean()
            loss = loss + loss_cond
        scale = 0.5 * (1 + math.cos(math.pi * step / job.steps)) * min(1.0, (step + 1) / 20)
        for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = lr * scale
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        history.append({"step": step, "loss": loss.item(), "mse": loss_cond.item(), "cosine_loss": loss_pool.item()})
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        bar.update(1)
        if step % job.checkpoint_every == 0 or step == job.steps:
            with atomic_path(ckpt) as tmp:
                tmp.mkdir()
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / WEIGHTS)
                torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
                write_json(tmp / "state.json", {"step": step, "rng": torch.get_rng_state().tolist()})
    bar.close()
    with open(job.out / "train.jsonl", "a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in history)
    encoder = TextEncoder(model.eval(), tokenizer)
    metrics = {"steps": step, "train_pairs": len(train), "heldout_pairs": len(held),
               "final_loss": history[-1]["loss"] if history else None, "teacher_kind": teacher.kind,
               "conditioning": [cfg.length, cfg.dim] if cfg.length else None, "pooled_dim": cfg.pooled_dim}
    if held:
        metrics.update(retrieval(encoder, teacher, held))
    save_encoder(encoder, job, metrics, student_dir)
    return metrics


def save_encoder(encoder: TextEncoder, job: EncoderJob, metrics: dict[str, Any], student_dir: Path) -> Path:
    from safetensors.torch import save_file

    target = job.out / "encoder"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in encoder.model.state_dict().items()}, tmp / WEIGHTS)
        write_json(tmp / CONFIG, asdict(encoder.config))
        encoder.tokenizer.save_pretrained(tmp)
        write_json(tmp / "metrics.json", metrics)
        cfg = encoder.config
        shape = f"{cfg.length} x {cfg.dim}" if cfg.length else "none (pooled only)"
        (tmp / "README.md").write_text(
            f"# A prompt encoder aligned to `{cfg.teacher}`\n\nMade with `tongues encoder distill` from the "
            f"tongues model `{student_dir}` ({', '.join(cfg.languages) or 'its language'}). Conditioning: {shape}; "
            f"pooled: {cfg.pooled_dim}. Load with `tongues.load_encoder(PATH)`; `encode(prompts)` gives a "
            "diffusers pipeline its `prompt_embeds` (its own text encoder is not run), `embed(texts)` normalized "
            "vectors for retrieval.\n\n## Held-out retrieval (xx -> en)\n\n"
            + "\n".join(f"- {k}: {v:.4f}" for k, v in metrics.items() if isinstance(v, float)) + "\n",
            encoding="utf-8")
    return target


# ---- evaluation -------------------------------------------------------------------------------------


def _recall(queries: torch.Tensor, keys: torch.Tensor) -> dict[str, float]:
    sims = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).t()
    ranks = (sims > sims.diagonal().unsqueeze(1)).sum(1)  # how many English texts beat the right one
    return {"r@1": (ranks < 1).float().mean().item(), "r@10": (ranks < 10).float().mean().item()}


def retrieval(encoder: TextEncoder, teacher: Teacher, pairs: list[tuple[str, str]]) -> dict[str, float]:
    """xx->en retrieval over all `pairs`: the student's pooled xx against the teacher's pooled en
    (R@1, R@10), the baseline of the teacher fed the xx text itself, and the cosine of the
    student's conditioning to the teacher's."""
    english = [en for en, _ in pairs]
    foreign = [xx for _, xx in pairs]
    cond_t, pooled_t = _teacher_targets(teacher, english)
    student = _recall(encoder.embed(foreign), pooled_t)
    _, teacher_raw = _teacher_targets(teacher, foreign)
    baseline = _recall(teacher_raw, pooled_t)
    out = {"r@1": student["r@1"], "r@10": student["r@10"], "teacher_on_xx_r@1": baseline["r@1"],
           "teacher_on_xx_r@10": baseline["r@10"]}
    if cond_t is not None:
        cond_s = encoder.encode(foreign)["prompt_embeds"]
        out["conditioning_cosine"] = F.cosine_similarity(cond_s.flatten(1), cond_t.flatten(1), dim=-1).mean().item()
    start = time.perf_counter()
    encoder.embed(foreign)
    out["prompts_per_s"] = len(foreign) / max(1e-9, time.perf_counter() - start)
    return out


__all__ = ["EncoderJob", "TextEncoder", "load_encoder", "load_teacher", "read_parallel", "retrieval", "train_encoder"]


def retrieval_line(m: dict[str, Any]) -> str:
    """The one-line summary of `retrieval` metrics that the CLI and the run summary print."""
    if "r@1" not in m:
        return "no held-out pairs to score"
    text = (f"held-out xx->en retrieval: R@1 {m['r@1']:.3f}, R@10 {m['r@10']:.3f} (the teacher fed the xx text itself: "
            f"R@1 {m['teacher_on_xx_r@1']:.3f}, R@10 {m['teacher_on_xx_r@10']:.3f})")
    if "conditioning_cosine" in m:
        text += f"; conditioning cosine {m['conditioning_cosine']:.3f}"
    return text + f"; {m['prompts_per_s']:.0f} prompts/s"
