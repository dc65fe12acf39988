"""Configuration of jina-vlm, read from the released `config.json` (`model_type: "jvlm"`).

The released file nests OLMo-style block configs; only the fields that change the module tree
or the computation are kept here. Unknown fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NormConfig:
    kind: str  # "rms" or "default" (LayerNorm)
    eps: float = 1e-6
    bias: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> NormConfig:
        kind = d.get("type", "default")
        bias = d.get("bias")
        return cls(kind, d.get("eps") or 1e-6, kind != "rms" if bias is None else bool(bias))


@dataclass(frozen=True)
class AttentionConfig:
    n_heads: int
    head_dim: int
    n_kv_heads: int
    qk_norm: bool  # per-head RMSNorm of q and k (shared gain over heads)
    norm: NormConfig  # the q/k norms' settings

    @classmethod
    def from_dict(cls, d: dict) -> AttentionConfig:
        return cls(
            n_heads=d["n_heads"],
            head_dim=d["head_dim"],
            n_kv_heads=d.get("n_kv_heads") or d["n_heads"],
            qk_norm=bool(d.get("q_lnorm") and d.get("k_lnorm")),
            norm=NormConfig.from_dict(d.get("lnorm_config", {})),
        )

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim


@dataclass(frozen=True)
class FFNConfig:
    size: int  # inner width (for a gated FFN: the width after gating)
    activation: str  # "silu", "gelu_pytorch_tanh"
    gated: bool  # SwiGLU-style: up gives [value | gate]
    bias: bool

    @classmethod
    def from_dict(cls, d: dict) -> FFNConfig:
        return cls(d["size"], d["activation_type"], bool(d["gated_activation"]), bool(d["bias"]))


@dataclass(frozen=True)
class BlockConfig:
    attention: AttentionConfig
    ffn: FFNConfig
    norm: NormConfig

    @classmethod
    def from_dict(cls, d: dict) -> BlockConfig:
        return cls(
            AttentionConfig.from_dict(d["attn_config"]),
            FFNConfig.from_dict(d["ffn_config"]),
            NormConfig.from_dict(d["lnorm_config"]),
        )


@dataclass(frozen=True)
class ConnectorConfig:
    pooling: AttentionConfig  # attention pooling of each 2x2 window
    projector: FFNConfig  # gated MLP to the decoder width
    pool_h: int = 2
    pool_w: int = 2

    @classmethod
    def from_dict(cls, d: dict) -> ConnectorConfig:
        if d.get("pooling_type") != "attention_meanq":
            raise ValueError(f"unsupported jina-vlm pooling {d.get('pooling_type')!r}")
        if d.get("padding_embed_type") != "pad_and_partial_pad":
            raise ValueError(f"unsupported padding embed {d.get('padding_embed_type')!r}")
        return cls(
            AttentionConfig.from_dict(d["attn_pooling_config"]),
            FFNConfig.from_dict(d["mlp_projector_config"]),
            d.get("pooling_h", 2),
            d.get("pooling_w", 2),
        )


@dataclass(frozen=True)
class VisionConfig:
    block: BlockConfig
    connector: ConnectorConfig
    n_layers: int
    hidden_size: int
    input_size: int  # square crops, pixels
    patch_size: int
    n_channels: int
    vit_layers: tuple[int, ...]  # indices into [block outputs..., post_lnorm(last)]
    post_lnorm: bool
    output_size: int  # decoder width

    @classmethod
    def from_dict(cls, d: dict) -> VisionConfig:
        size = d["input_size"]
        return cls(
            block=BlockConfig.from_dict(d["block_config"]),
            connector=ConnectorConfig.from_dict(d["vl_connector_config"]),
            n_layers=d["n_layers"],
            hidden_size=d["hidden_size"],
            input_size=size[0] if isinstance(size, list) else size,
            patch_size=d["patch_size"],
            n_channels=d.get("n_channels", 3),
            vit_layers=tuple(d["vit_layers"]),
            post_lnorm=bool(d.get("post_lnorm", True)),
            output_size=d["output_size"],
        )

    @property
    def grid(self) -> int:
        """Patches per side of a crop (27 for 378 px / 14)."""
        return self.input_size // self.patch_size

    @property
    def patch_dim(self) -> int:
        return self.patch_size * self.patch_size * self.n_channels


@dataclass(frozen=True)
class TextConfig:
    block: BlockConfig
    n_layers: int
    hidden_size: int
    vocab_size: int
    embedding_size: int  # rows of `embedding`; lm_head predicts these only
    additional_vocab_size: int  # rows of `new_embedding` (image tokens)
    rope_theta: float
    max_sequence_length: int
    tie_word_embeddings: bool

    @classmethod
    def from_dict(cls, d: dict, tie_default: bool = True) -> TextConfig:
        return cls(
            block=BlockConfig.from_dict(d["block_config"]),
            n_layers=d["n_layers"],
            hidden_size=d["hidden_size"],
            vocab_size=d["vocab_size"],
            embedding_size=d.get("embedding_size") or d["vocab_size"],
            additional_vocab_size=d.get("additional_vocab_size") or 0,
            rope_theta=float(d.get("rope_theta", 10000.0)),
            max_sequence_length=d.get("max_sequence_length", 4096),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", tie_default)),
        )


@dataclass(frozen=True)
class JinaVLMConfig:
    text: TextConfig
    vision: VisionConfig

    @classmethod
    def from_dict(cls, d: dict) -> JinaVLMConfig:
        """The text config's tying flag wins; absent, the top-level one; absent too, tied."""
        tie_default = bool(d.get("tie_word_embeddings", True))
        return cls(TextConfig.from_dict(d["text_config"], tie_default),
                   VisionConfig.from_dict(d["vision_config"]))
