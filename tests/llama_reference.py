"""An independent NumPy forward pass of a Llama-architecture GGUF file (float64).

It reads the GGUF tensors as llama.cpp stores them (q/k rows in llama.cpp's order) and applies
rotary embeddings to interleaved pairs, as llama.cpp does, so it checks tfsft's conversion
(which restores Hugging Face's row order for keras-hub) from the other side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class GGUFLlama:
    def __init__(self, path: str | Path):
        from gguf import GGUFReader
        from gguf.quants import dequantize

        reader = GGUFReader(str(path))
        field = lambda key: reader.fields[key].contents()  # noqa: E731
        self.layers = int(field("llama.block_count"))
        self.heads = int(field("llama.attention.head_count"))
        self.kv_heads = int(field("llama.attention.head_count_kv"))
        self.eps = float(field("llama.attention.layer_norm_rms_epsilon"))
        self.base = float(field("llama.rope.freq_base"))
        self.weights = {}
        for tensor in reader.tensors:
            value = dequantize(tensor.data, tensor.tensor_type).astype(np.float64)
            self.weights[tensor.name] = value.reshape([int(d) for d in reversed(tensor.shape)])

    def _norm(self, x: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * scale

    def _rope(self, x: np.ndarray) -> np.ndarray:
        """Rotate interleaved pairs (x[2i], x[2i+1]) of each head; x: [T, heads, dim]."""
        steps, _, dim = x.shape
        angles = (np.arange(steps)[:, None]
                  * self.base ** (-np.arange(0, dim, 2) / dim))[:, None, :]
        even, odd = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = even * np.cos(angles) - odd * np.sin(angles)
        out[..., 1::2] = even * np.sin(angles) + odd * np.cos(angles)
        return out

    def logits(self, token_ids: list[int]) -> np.ndarray:
        """Next-token logits at every position of one unpadded sequence, [T, vocab]."""
        w = self.weights
        h = w["token_embd.weight"][token_ids]
        steps = len(token_ids)
        causal = np.triu(np.full((steps, steps), -np.inf), k=1)
        for i in range(self.layers):
            p = f"blk.{i}."
            x = self._norm(h, w[p + "attn_norm.weight"])
            q = (x @ w[p + "attn_q.weight"].T).reshape(steps, self.heads, -1)
            k = (x @ w[p + "attn_k.weight"].T).reshape(steps, self.kv_heads, -1)
            v = (x @ w[p + "attn_v.weight"].T).reshape(steps, self.kv_heads, -1)
            q, k = self._rope(q), self._rope(k)
            group = self.heads // self.kv_heads
            k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
            scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(q.shape[-1]) + causal
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            attended = np.einsum("hts,shd->thd", scores, v).reshape(steps, -1)
            h = h + attended @ w[p + "attn_output.weight"].T
            x = self._norm(h, w[p + "ffn_norm.weight"])
            gate = x @ w[p + "ffn_gate.weight"].T
            h = h + ((gate / (1 + np.exp(-gate))) * (x @ w[p + "ffn_up.weight"].T)) \
                @ w[p + "ffn_down.weight"].T
        h = self._norm(h, w["output_norm.weight"])
        head = w.get("output.weight", w["token_embd.weight"])
        return h @ head.T
