"""Tokenizers made for each script: SentencePiece training, Hugging Face export, comparison.

- `train`: `train_tokenizer(...)` and the recipe stage `run_stage(ctx)`.
- `export`: tokenizer.json built from the SentencePiece proto, special ids, ChatML template.
- `normalization`: the NFC rule table shared by tokenizer.model and tokenizer.json.
- `sampling`: temperature-sampled language mixing within a character budget.
- `report`: `tokenizer_report(...)`, fertility / bytes per token / premium against English.

Modules are imported on use, so `import tongues.tokenizers` stays light.
"""
