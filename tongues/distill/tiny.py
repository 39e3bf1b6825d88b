"""A tiny, random Stable Diffusion stack built in-process (as diffusers' own tests build theirs), for
the demo and the tests: a CLIP text encoder with a small English tokenizer as the teacher, and a
pipeline (UNet2DConditionModel, AutoencoderKL, DDIM) that cross-attends to its width. Nothing is
downloaded; the images are noise (the weights are random): it proves the plumbing, not the art."""

from __future__ import annotations

from pathlib import Path

WIDTH = 32  # the teacher's hidden size = the UNet's cross_attention_dim


def tiny_clip_teacher(out_dir: Path, texts: list[str], seed: int = 0) -> Path:
    """A random CLIPTextModel (2 layers, 32 wide, 77 positions) with a BPE tokenizer trained on `texts`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

    from tongues.manifest import atomic_path

    tok = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>"]
    tok.train_from_iterator(texts or ["a photo"], trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                                                      show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<|startoftext|> $A <|endoftext|>",
                                                       special_tokens=[("<|startoftext|>", 2), ("<|endoftext|>", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", unk_token="<|unk|>",
                                   bos_token="<|startoftext|>", eos_token="<|endoftext|>", model_max_length=77)
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=tok.get_vocab_size(), hidden_size=WIDTH, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                            bos_token_id=2, eos_token_id=3, pad_token_id=0, projection_dim=WIDTH)
    with atomic_path(out_dir) as tmp:
        CLIPTextModel(config).save_pretrained(tmp, safe_serialization=True)
        fast.save_pretrained(tmp)
    return out_dir


def tiny_pipeline(out_dir: Path, teacher_dir: Path, seed: int = 0) -> Path:
    """A random StableDiffusionPipeline folder whose text encoder is `teacher_dir`'s (32 wide, 32x32)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    from tongues.manifest import atomic_path

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=WIDTH,
                                norm_num_groups=2, attention_head_dim=2)
    vae = AutoencoderKL(block_out_channels=(4, 8), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=2)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=CLIPTextModel.from_pretrained(teacher_dir),
                                   tokenizer=AutoTokenizer.from_pretrained(teacher_dir), unet=unet,
                                   scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    with atomic_path(out_dir) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
    return out_dir


__all__ = ["WIDTH", "tiny_clip_teacher", "tiny_pipeline"]
