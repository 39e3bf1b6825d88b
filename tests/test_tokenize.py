"""Token shards: layout, determinism across process counts, uint32 vocabularies, tokenizer mismatch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pretrain_fixtures import make_documents, make_prepared, make_tokenizer

from tongues.data.tokenize import EOS_ID, check_tokenizer, load_split, read_meta, tokenize_corpus
from tongues.errors import DataError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    # 3 parquet shards per split boundary case: documents span several shards and batches
    return make_tokenizer(root / "tok"), make_prepared(root / "prep", n_train=1300, n_val=40, shard_docs=600)


def test_shards_hold_every_document_with_eos_and_its_bytes(corpus, tmp_path):
    tok_dir, prep = corpus
    meta = tokenize_corpus(prep, tok_dir, tmp_path / "t")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    docs = make_documents(1340, seed=0)
    train = load_split(tmp_path / "t", "train")
    assert meta["dtype"] == "uint16" and train.tokens.dtype == np.uint16
    assert len(train.offsets) == 1301 and train.offsets[-1] == train.num_tokens == meta["splits"]["train"]["tokens"]
    for i in (0, 599, 600, 1299):  # around shard and batch boundaries
        ids = train.tokens[train.offsets[i] : train.offsets[i + 1]].tolist()
        assert ids == tok.encode(docs[i], add_special_tokens=False).ids + [EOS_ID]
    assert meta["splits"]["train"]["bytes"] == sum(len(d.encode()) for d in docs[:1300])
    assert train.doc_bytes[5] == len(docs[5].encode())
    val = load_split(tmp_path / "t", "validation")
    assert meta["splits"]["validation"]["documents"] == 40 and int(val.tokens[-1]) == EOS_ID
    assert meta["tokenizer_sha256"] == read_meta(tmp_path / "t")["tokenizer_sha256"]


def test_same_bytes_whatever_the_process_count(corpus, tmp_path):
    tok_dir, prep = corpus
    tokenize_corpus(prep, tok_dir, tmp_path / "one", num_proc=1)
    tokenize_corpus(prep, tok_dir, tmp_path / "two", num_proc=2)
    for name in ("train.bin", "train.idx.npy", "train.bytes.npy", "validation.bin", "validation.idx.npy"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    one = json.loads((tmp_path / "one" / "meta.json").read_text())
    assert one == json.loads((tmp_path / "two" / "meta.json").read_text())


def test_large_vocabularies_use_uint32(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"])}
    vocab.update({f"w{i}": i for i in range(6, 70_000)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(str(tmp_path / "tok"))
    prep = make_prepared(tmp_path / "prep", n_train=2, n_val=1)
    for split in ("train", "validation"):  # replace the text by words with ids above 65535
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": ["w69999 w7 w65536"], "id": ["a"], "source": ["s"]}),
                       prep / split / "shard-00000.parquet")
    meta = tokenize_corpus(prep, tmp_path / "tok", tmp_path / "t")
    assert meta["dtype"] == "uint32"
    assert load_split(tmp_path / "t", "train").tokens.tolist() == [69999, 7, 65536, EOS_ID]


def test_training_with_another_tokenizer_is_an_error_that_says_so(corpus, tmp_path):
    tok_dir, prep = corpus
    tokenize_corpus(prep, tok_dir, tmp_path / "t")
    check_tokenizer(tmp_path / "t", tok_dir)  # the right one passes
    other = make_tokenizer(tmp_path / "other", vocab_size=90)
    with pytest.raises(DataError, match="tokenized with a different tokenizer"):
        check_tokenizer(tmp_path / "t", other)
    with pytest.raises(DataError, match="not a token directory"):
        load_split(tmp_path, "train")
