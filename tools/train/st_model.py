"""The paper's speech-translation model (DESIGN.md section 2, family 2) in PyTorch.

The project's own definition, used to train the embedded default model. Module
names equal the fairseq state-dict names the C++ engine loads
(engine/speech, FairseqMtlaDecoderSpec), so `state_dict()` is the served
checkpoint as is. The math is the engine's, term for term:

  encoder: Conv1d(k 5, stride 2, pad 2) + GLU, twice -> x * sqrt(E) + fairseq
    sinusoidal positions (padding_idx 1, frame i at position 2 + i) -> pre-LN
    Transformer layers (ReLU FFN) -> final LayerNorm.
  projector: k = projector_ds_rate consecutive frames concatenated (a last
    incomplete group dropped) -> Linear(k E, E/2) -> ReLU -> Linear(E/2, E) =
    the decoder prefix.
  decoder: tokens * sqrt(E) (no positions); per layer h = LN_a(x);
    x = LN_a(x + MTLA(h)); x = LN_f(x + fc2(relu(fc1(x)))); final LN; untied
    output projection. MTLA keys are [prefix ; h] at every layer, queries the
    tokens only, RoPE (interleaved pairs) positions 0..P-1 then P + i.

`decode_greedy` follows fairseq's SequenceGenerator at beam 1 exactly as
engine/speech/speech_decoding.h states it, so its tokens are the engine's.
"""
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

BOS, PAD, EOS, UNK = 0, 1, 2, 3


@dataclasses.dataclass
class ModelDims:
    vocab: int
    embed: int = 192          # E, encoder and decoder
    heads: int = 4
    ffn: int = 768
    encoder_layers: int = 4
    conv_channels: int = 256
    decoder_layers: int = 3
    kv_lora_rank: int = 96    # r
    rope_dim: int = 16        # dR
    nope_dim: int = 48        # dn
    v_dim: int = 48           # dv
    down_rate: int = 2        # s
    projector_ds_rate: int = 1  # encoder frames per decoder prefix row
    max_source_positions: int = 6000
    max_target_positions: int = 1024

    def fairseq_config(self):
        """config.json in the served (fairseq argument) layout."""
        return {
            "arch": "s2t_decoder_only_MTLA_cross_xm",
            "input_feat_per_channel": 80, "conv_kernel_sizes": "5,5",
            "conv_channels": self.conv_channels,
            "encoder_embed_dim": self.embed, "encoder_ffn_embed_dim": self.ffn,
            "encoder_layers": self.encoder_layers, "encoder_attention_heads": self.heads,
            "encoder_normalize_before": True, "encoder_projector_ds_rate": self.projector_ds_rate,
            "decoder_embed_dim": self.embed, "decoder_ffn_embed_dim": self.ffn,
            "decoder_layers": self.decoder_layers, "decoder_attention_heads": self.heads,
            "decoder_kv_lora_rank": self.kv_lora_rank, "decoder_qk_rope_head_dim": self.rope_dim,
            "decoder_qk_nope_head_dim": self.nope_dim, "decoder_v_head_dim": self.v_dim,
            "decoder_q_lora_rank": 0, "decoder_down_rate": self.down_rate,
            "vocab_size": self.vocab, "activation_fn": "relu", "cmvn": "utterance",
            "share_decoder_input_output_embed": False, "no_scale_embedding": False,
            "max_source_positions": self.max_source_positions,
            "max_target_positions": self.max_target_positions,
            "bos": BOS, "pad": PAD, "eos": EOS, "unk": UNK,
            # The direction served (GetModelInfo.language_pairs): English speech, German text.
            "source_language": "en", "target_language": "de",
        }


def conv_output_lengths(lengths):
    """Frames after one Conv1d(k 5, stride 2, pad 2)."""
    return torch.div(lengths - 1, 2, rounding_mode="floor") + 1


def fairseq_sinusoidal_table(num_positions, dim, padding_idx=PAD):
    half = dim // 2
    step = math.log(10000.0) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -step)
    angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    table[padding_idx] = 0
    return table


def length_mask(lengths, max_len):
    """(B, max_len) True where the position is inside the sequence."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class Subsampler(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.conv_layers = nn.ModuleList([
            nn.Conv1d(80, dims.conv_channels, 5, stride=2, padding=2),
            nn.Conv1d(dims.conv_channels // 2, 2 * dims.embed, 5, stride=2, padding=2),
        ])

    def forward(self, feats, lengths):
        x = feats.transpose(1, 2)
        for conv in self.conv_layers:
            x = F.glu(conv(x), dim=1)
            lengths = conv_output_lengths(lengths)
            # The engine convolves each utterance alone: frames past its end are zeros.
            x = x * length_mask(lengths, x.shape[2])[:, None, :]
        return x.transpose(1, 2), lengths


class EncoderAttention(nn.Module):
    def __init__(self, dims):
        super().__init__()
        e = dims.embed
        self.heads = dims.heads
        self.q_proj, self.k_proj = nn.Linear(e, e), nn.Linear(e, e)
        self.v_proj, self.out_proj = nn.Linear(e, e), nn.Linear(e, e)

    def forward(self, x, key_mask):
        b, t, e = x.shape
        d = e // self.heads

        def split(y):
            return y.view(b, t, self.heads, d).transpose(1, 2)

        q = split(self.q_proj(x)) * d ** -0.5
        scores = q @ split(self.k_proj(x)).transpose(2, 3)
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        ctx = torch.softmax(scores, dim=-1) @ split(self.v_proj(x))
        return self.out_proj(ctx.transpose(1, 2).reshape(b, t, e))


class EncoderLayer(nn.Module):
    def __init__(self, dims, dropout):
        super().__init__()
        self.self_attn = EncoderAttention(dims)
        self.self_attn_layer_norm = nn.LayerNorm(dims.embed)
        self.fc1 = nn.Linear(dims.embed, dims.ffn)
        self.fc2 = nn.Linear(dims.ffn, dims.embed)
        self.final_layer_norm = nn.LayerNorm(dims.embed)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, key_mask):
        x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), key_mask))
        h = self.dropout(F.relu(self.fc1(self.final_layer_norm(x))))
        return x + self.dropout(self.fc2(h))


class Encoder(nn.Module):
    def __init__(self, dims, dropout):
        super().__init__()
        self.dims = dims
        self.subsample = Subsampler(dims)
        self.transformer_layers = nn.ModuleList(
            [EncoderLayer(dims, dropout) for _ in range(dims.encoder_layers)])
        self.layer_norm = nn.LayerNorm(dims.embed)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("positions", fairseq_sinusoidal_table(
            dims.max_source_positions + PAD + 1, dims.embed), persistent=False)

    def forward(self, feats, lengths):
        """feats (B, T, 80) zero-padded, lengths (B,) -> (B, T/4, E), lengths."""
        x, lengths = self.subsample(feats, lengths)
        t = x.shape[1]
        x = x * math.sqrt(self.dims.embed) + self.positions[PAD + 1:PAD + 1 + t][None]
        x = self.dropout(x)
        key_mask = length_mask(lengths, t)
        for layer in self.transformer_layers:
            x = layer(x, key_mask)
        return self.layer_norm(x), lengths


class Projector(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.ds_rate = dims.projector_ds_rate
        self.linear1 = nn.Linear(dims.embed * self.ds_rate, dims.embed // 2)
        self.linear2 = nn.Linear(dims.embed // 2, dims.embed)

    def forward(self, x, lengths):
        """(B, T, E) encoder frames -> (B, T // k, E) prefix rows and their counts."""
        b, t, e = x.shape
        rows = t // self.ds_rate
        x = x[:, :rows * self.ds_rate].reshape(b, rows, e * self.ds_rate)
        return self.linear2(F.relu(self.linear1(x))), torch.div(lengths, self.ds_rate,
                                                                 rounding_mode="floor")


class HyperNetwork(nn.Module):
    """Merge weight w_t = sigmoid(fc_c(PE(t // s)) . fc_p(c_t))."""

    def __init__(self, r):
        super().__init__()
        self.fc_c = nn.Linear(r, r // 4)
        self.fc_p = nn.Linear(r, r // 4)

    def slot_encoding(self, num_slots, r, device):
        div = torch.exp(torch.arange(0, r, 2, dtype=torch.float32, device=device)
                        * (-math.log(10000.0) / r))
        angles = torch.arange(num_slots, dtype=torch.float32, device=device)[:, None] * div
        pe = torch.zeros(num_slots, r, device=device)
        pe[:, 0::2] = torch.sin(angles)
        pe[:, 1::2] = torch.cos(angles)
        return pe

    def forward(self, c, slots):
        """c (B, L, r); slots (L,) slot index of each position -> w (B, L)."""
        num_slots = int(slots.max()) + 1
        pe = self.fc_c(self.slot_encoding(num_slots, c.shape[-1], c.device))[slots]
        return torch.sigmoid((self.fc_p(c) * pe[None]).sum(-1))


def rope_interleaved(x, positions, theta=10000.0):
    """x (..., L, H, d) rotated by positions (..., L) in pairs (2j, 2j+1)."""
    d = x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d)
    angles = positions.to(torch.float32)[..., None] * inv_freq  # (..., L, d/2)
    cos, sin = torch.cos(angles)[..., None, :], torch.sin(angles)[..., None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2)


class MtlaAttention(nn.Module):
    """Multi-head temporal latent attention over [prefix ; tokens] (parallel path).

    Keys at position j are the running partial merge of j's slot up to j (and
    k_pe_j); query at position i sees j iff (j <= i and (j + 1) % s == 0) or
    j == i -- the stride-aware mask, equal to token-by-token decoding.
    """

    def __init__(self, dims):
        super().__init__()
        self.dims = dims
        h, r, dr, dn, dv = (dims.heads, dims.kv_lora_rank, dims.rope_dim, dims.nope_dim,
                            dims.v_dim)
        self.wq = nn.Linear(dims.embed, h * (dn + dr), bias=False)
        self.wkv_a = nn.Linear(dims.embed, r + dr, bias=False)
        self.kv_norm = nn.LayerNorm(r)
        self.wkv_b = nn.Linear(r, h * (dn + dv), bias=False)
        self.wo = nn.Linear(h * dv, dims.embed, bias=False)
        self.hypernet_down = HyperNetwork(r)

    def forward(self, keys_in, query_in, query_pos):
        """keys_in (B, L, E) at positions 0..L-1; query_in (B, T, E) at absolute
        positions query_pos (B, T), whose keys are keys_in at those positions.
        Returns (B, T, E)."""
        d = self.dims
        b, length, _ = keys_in.shape
        s, r = d.down_rate, d.kv_lora_rank
        kv = self.wkv_a(keys_in)
        c = self.kv_norm(kv[..., :r])
        positions = torch.arange(length, device=keys_in.device)
        k_pe = rope_interleaved(kv[..., None, r:], positions[None])  # (B, L, 1, dR)
        w = self.hypernet_down(c, torch.div(positions, s, rounding_mode="floor"))
        merged = w[..., None] * c
        pad = (-length) % s
        merged = F.pad(merged, (0, 0, 0, pad)).view(b, -1, s, r).cumsum(2).view(b, -1, r)
        merged = merged[:, :length]
        w_b = self.wkv_b.weight.view(d.heads, d.nope_dim + d.v_dim, r)
        k_nope = torch.einsum("blr,hdr->bhld", merged, w_b[:, :d.nope_dim])
        values = torch.einsum("blr,hdr->bhld", merged, w_b[:, d.nope_dim:])

        t = query_in.shape[1]
        q = self.wq(query_in).view(b, t, d.heads, d.nope_dim + d.rope_dim)
        q_nope = q[..., :d.nope_dim].transpose(1, 2)                     # (B, H, T, dn)
        q_pe = rope_interleaved(q[..., d.nope_dim:], query_pos).transpose(1, 2)
        scores = q_nope @ k_nope.transpose(2, 3) + q_pe @ k_pe.permute(0, 2, 3, 1)
        scores = scores * (d.nope_dim + d.rope_dim) ** -0.5
        j = positions[None, None, :]
        i = query_pos[:, :, None]
        # Valid queries see only j <= i, all valid; padded queries (past T_b)
        # see at least themselves, so no row is empty (no NaN).
        visible = ((j <= i) & ((j + 1) % s == 0)) | (j == i)
        scores = scores.masked_fill(~visible[:, None], float("-inf"))
        out = torch.softmax(scores, dim=-1) @ values                      # (B, H, T, dv)
        return self.wo(out.transpose(1, 2).reshape(b, t, d.heads * d.v_dim))


class DecoderLayer(nn.Module):
    def __init__(self, dims, dropout):
        super().__init__()
        self.self_attn = MtlaAttention(dims)
        self.self_attn_layer_norm = nn.LayerNorm(dims.embed)
        self.fc1 = nn.Linear(dims.embed, dims.ffn)
        self.fc2 = nn.Linear(dims.ffn, dims.embed)
        self.final_layer_norm = nn.LayerNorm(dims.embed)
        self.dropout = nn.Dropout(dropout)


class Decoder(nn.Module):
    def __init__(self, dims, dropout):
        super().__init__()
        self.dims = dims
        self.embed_tokens = nn.Embedding(dims.vocab, dims.embed, padding_idx=PAD)
        nn.init.normal_(self.embed_tokens.weight, 0, dims.embed ** -0.5)
        self.projector = Projector(dims)
        self.layers = nn.ModuleList([DecoderLayer(dims, dropout) for _ in range(dims.decoder_layers)])
        self.layer_norm = nn.LayerNorm(dims.embed)
        self.output_projection = nn.Linear(dims.embed, dims.vocab, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, encoder_out, enc_lengths, tokens, token_lengths):
        """Teacher-forced logits (B, T, vocab) for decoder inputs `tokens` (B, T)."""
        prefix, prefix_lengths = self.projector(encoder_out, enc_lengths)  # (B, P, E)
        b, t = tokens.shape
        p_max = prefix.shape[1]
        # Per sequence, keys are [its P_b prefix rows ; its T_b tokens]: token i
        # sits at position P_b + i, then padding.
        batch = torch.arange(b, device=tokens.device)[:, None]
        token_pos = prefix_lengths[:, None] + torch.arange(t, device=tokens.device)[None, :]
        prefix_keys = prefix * length_mask(prefix_lengths, p_max)[..., None]
        prefix_keys = F.pad(prefix_keys, (0, 0, 0, t))

        x = self.dropout(self.embed_tokens(tokens) * math.sqrt(self.dims.embed))
        for layer in self.layers:
            h = layer.self_attn_layer_norm(x)
            keys = prefix_keys.index_put((batch.expand(b, t), token_pos), h)
            attn = layer.self_attn(keys, h, token_pos)
            x = layer.self_attn_layer_norm(x + layer.dropout(attn))
            ffn = layer.fc2(layer.dropout(F.relu(layer.fc1(x))))
            x = layer.final_layer_norm(x + layer.dropout(ffn))
        return self.output_projection(self.layer_norm(x))


class SpeechTranslationModel(nn.Module):
    def __init__(self, dims, dropout=0.1):
        super().__init__()
        self.dims = dims
        self.encoder = Encoder(dims, dropout)
        self.decoder = Decoder(dims, dropout)

    def forward(self, feats, feat_lengths, tokens, token_lengths):
        encoder_out, enc_lengths = self.encoder(feats, feat_lengths)
        return self.decoder(encoder_out, enc_lengths, tokens, token_lengths)

    @torch.no_grad()
    def decode_greedy(self, feats, max_len_b=200, min_len=1):
        """One utterance (T, 80) -> dict(tokens, step_logits, score, encoder_out):
        fairseq SequenceGenerator at beam 1 (max_len_a 0, len_penalty 1,
        normalize_scores), recomputing the whole decoder every step."""
        lengths = torch.tensor([feats.shape[0]])
        encoder_out, enc_lengths = self.encoder(feats[None], lengths)
        max_len = min(max_len_b, self.dims.max_target_positions - 1)
        inputs = [EOS]
        tokens, step_logits, total = [], [], 0.0
        for step in range(max_len + 1):
            x = torch.tensor([inputs])
            logits = self.decoder(encoder_out, enc_lengths, x, torch.tensor([len(inputs)]))[0, -1]
            step_logits.append(logits)
            lprobs = torch.log_softmax(logits.double(), dim=-1)
            masked = lprobs.clone()
            masked[PAD] = float("-inf")
            if step >= max_len:
                keep = masked[EOS].clone()
                masked.fill_(float("-inf"))
                masked[EOS] = keep
            elif step < min_len:
                masked[EOS] = float("-inf")
            best = int(torch.argmax(masked))
            tokens.append(best)
            total += float(masked[best])
            if best == EOS:
                break
            inputs.append(best)
        return dict(tokens=tokens, step_logits=torch.stack(step_logits),
                    score=total / len(tokens), encoder_out=encoder_out[0])
