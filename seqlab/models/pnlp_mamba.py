"""PaddleNLP's Mamba as a seqlab model: a selective state-space RNN, rival to RWKV-7.

What is wrapped: ``paddlenlp.transformers.MambaForCausalLM`` (paddlenlp 3.0.0b4): its embedding,
``n_layer`` Mamba blocks, final RMSNorm, the LM head tied to the embedding, and its own init (S4D
A = -[1..d_state], D = 1, dt bias from log-uniform [0.001, 0.1]). One block::

    x = x + out_proj( SSM(silu(conv1d(in_x))) * silu(gate) ),  (in_x, gate) = in_proj(RMSNorm(x))
    SSM, per channel i and state n:  h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t,   y_t = C_t h_t + D u_t
    with dt_t = softplus(dt_proj(x_proj(u_t))), B_t, C_t = x_proj(u_t)   (the "selective" part)

One change, on the training path only: PaddleNLP's selective scan without its CUDA kernels
(``mamba_ssm_paddle``) is a Python loop that slices step t out of ``[B, I, T, N]`` tensors; on
CPU the gradient of every slice is a full-size tensor, which makes a training step O(T^2).
``fast_scan`` (the default) runs the same recurrence, same formulas, on time-major tensors
(``unbind`` along T, whose gradient is one concat): much faster (benchmarks/bench_pnlp.py;
``benchmarks/RESULTS.md``, "PaddleNLP plugins"), though still a Python loop over T. ``fast_scan=False`` keeps
PaddleNLP's own loop; tests check that both give the same logits and gradients. With PaddleNLP's
CUDA kernels installed, PaddleNLP uses them either way.

``step`` is PaddleNLP's own recurrent decode (its ``MambaCache``: conv window and SSM state per
layer), so the check ``step`` == ``forward`` also compares PaddleNLP's decode with the scan here.

paddlenlp is imported when the model is built, not when this module is imported, so seqlab lists
``pnlp_mamba`` without the ``paddlenlp`` extra and says how to install it when it is chosen.

Defaults: 3 layers, C = 32, expand 2 (I = 64), d_state 16, d_conv 4, dt_rank 2 at V = 12::

    embedding (tied with the head)          12 * 32 =    384
    per layer: in_proj 32*128, conv 64*4+64, x_proj 64*(2+2*16), dt_proj 2*64+64,
               A_log 64*16, D 64, out_proj 64*32, norm 32           =  9,952  (x 3 = 29,856)
    final norm                                                       32
                                                             total  30,272
"""

from __future__ import annotations

import logging
from typing import Optional

import paddle

from seqlab.model import Model
from seqlab.models._paddlenlp import PADDLENLP, import_paddlenlp

F = paddle.nn.functional


class PaddleNLPMamba(Model):
    """PaddleNLP's MambaForCausalLM: selective state-space RNN (paddlenlp extra).

    Args:
        vocab_size: Number of token ids (12 for digit reversal).
        n_layer: Number of Mamba blocks.
        n_embd: Model width C (PaddleNLP's hidden_size).
        d_state: SSM state size N per channel (PaddleNLP's state_size).
        expand: Inner width I = expand * n_embd.
        d_conv: Width of the causal depthwise convolution (PaddleNLP's conv_kernel).
        dt_rank: Rank of the time-step projection; None means ceil(n_embd / 16).
        fast_scan: Train with the time-major scan (same maths, much faster on CPU); False runs
            PaddleNLP's own fallback loop.
    """

    documented_params: int = 30_272
    requires = PADDLENLP

    def __init__(
        self,
        vocab_size: int = 12,
        n_layer: int = 3,
        n_embd: int = 32,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        dt_rank: Optional[int] = None,
        fast_scan: bool = True,
    ):
        super().__init__()
        if fast_scan:
            # Its "falling back to the naive implementation" warning is about the loop replaced here.
            logging.getLogger("PaddleNLP").addFilter(_drop_fast_path_warning)
        mamba = import_paddlenlp(type(self), "paddlenlp.transformers.mamba.modeling")
        config = mamba.MambaConfig(
            vocab_size=vocab_size,
            hidden_size=n_embd,
            state_size=d_state,
            num_hidden_layers=n_layer,
            expand=expand,
            conv_kernel=d_conv,
            time_step_rank="auto" if dt_rank is None else dt_rank,
            tie_word_embeddings=True,
        )
        self.vocab_size, self.n_layer = vocab_size, n_layer
        self.lm = mamba.MambaForCausalLM(config)
        if fast_scan:
            mixer_class = _time_major_mixer_class(mamba.MambaMixer)
            for block in self.lm.backbone.layers:
                block.mixer.__class__ = mixer_class  # same parameters; only slow_forward differs

    def forward(self, tokens):
        return self.lm(input_ids=tokens, use_cache=False, return_dict=True).logits  # [B, T, V]

    def state_size(self, seq_len: int) -> int:
        # PaddleNLP's MambaCache, per layer: a d_conv-wide conv window and the I x N SSM state.
        config = self.lm.config
        return self.n_layer * config.intermediate_size * (config.conv_kernel + config.state_size)

    # -- RNN mode ---------------------------------------------------------------------------------

    def init_state(self, batch_size: int):
        """A zero ``MambaCache``: per layer conv window ``[B, I, d_conv]`` and SSM state ``[B, I, N]``."""
        from paddlenlp.transformers.mamba.modeling import MambaCache

        return MambaCache(self.lm.config, batch_size, dtype=paddle.float32)

    def step(self, tokens, state):
        """One token per sequence: ``tokens`` int64 ``[B]`` -> (logits ``[B, V]``, new state).

        PaddleNLP updates its cache in place; the given ``state`` is copied first, so it can be
        reused (e.g. to branch a generation).
        """
        cache = _copy_cache(state)
        out = self.lm(input_ids=tokens.reshape([-1, 1]), cache=cache, use_cache=True, return_dict=True)
        return out.logits[:, 0], out.cache


def _drop_fast_path_warning(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("The fast path is not available")


def _copy_cache(cache):
    new = type(cache).__new__(type(cache))
    new.__dict__.update(cache.__dict__)
    new.conv_states = {i: t.clone() for i, t in cache.conv_states.items()}
    new.ssm_states = {i: t.clone() for i, t in cache.ssm_states.items()}
    return new


_MIXER_CLASSES: dict[type, type] = {}


def _time_major_mixer_class(base: type) -> type:
    """``base`` (PaddleNLP's MambaMixer) with a time-major scan when called without a cache."""
    if base not in _MIXER_CLASSES:

        class TimeMajorScanMambaMixer(base):
            def slow_forward(self, input_states, cache=None):
                if cache is not None:  # decoding: PaddleNLP's own cached path
                    return super().slow_forward(input_states, cache)
                return _time_major_scan_forward(self, input_states)

        _MIXER_CLASSES[base] = TimeMajorScanMambaMixer
    return _MIXER_CLASSES[base]


def _time_major_scan_forward(mixer, x):
    """PaddleNLP's ``MambaMixer.slow_forward`` without a cache, with the scan laid out [T, ...].

    Shapes: B batch, T time, C width, I inner width, N state size, R dt rank.
    """
    Bsz, T = x.shape[0], x.shape[1]
    u, gate = mixer.in_proj(x).chunk(2, axis=-1)  # [B, T, I] each
    u = mixer.conv1d(u.transpose([0, 2, 1]))[..., :T]  # causal: padding d_conv-1, keep the first T
    u = mixer.act(u).transpose([0, 2, 1])  # [B, T, I]
    dt, Bs, Cs = paddle.split(
        mixer.x_proj(u), [mixer.time_step_rank, mixer.ssm_state_size, mixer.ssm_state_size], axis=-1
    )  # [B, T, R], [B, T, N], [B, T, N]
    dt = F.softplus(mixer.dt_proj(dt))  # [B, T, I]
    A = -paddle.exp(mixer.A_log.cast("float32"))  # [I, N]
    I, N = A.shape
    dt_tm = dt.transpose([1, 0, 2])  # [T, B, I]
    # The two [T, B, I, N] outer products are K=1 matmuls, not broadcast multiplies: Paddle's CPU
    # gradient of a broadcast multiply is a slow reduction (measured on the whole step:
    # benchmarks/RESULTS.md, "PaddleNLP plugins").
    dtA = paddle.matmul(dt_tm.reshape([T * Bsz, I]).t().unsqueeze(-1), A.unsqueeze(1))  # [I, T*B, N]
    decay = paddle.exp(dtA.reshape([I, T, Bsz, N]).transpose([1, 2, 0, 3]))  # exp(dt A): [T, B, I, N]
    drive = paddle.matmul(
        (dt_tm * u.transpose([1, 0, 2])).unsqueeze(-1), Bs.transpose([1, 0, 2]).unsqueeze(2)
    )  # dt u B: [T, B, I, 1] @ [T, B, 1, N] -> [T, B, I, N]
    readout = Cs.transpose([1, 0, 2]).unsqueeze(-1)  # [T, B, N, 1]
    h = paddle.zeros([Bsz, I, N], dtype=decay.dtype)
    ys = []
    for decay_t, drive_t, readout_t in zip(*(paddle.unbind(a, 0) for a in (decay, drive, readout))):
        h = decay_t * h + drive_t  # [B, I, N]
        ys.append(paddle.matmul(h, readout_t).squeeze(-1))  # C_t h_t: [B, I]
    y = paddle.stack(ys, 0)  # [T, B, I]
    y = (y.transpose([1, 0, 2]) + u * mixer.D) * mixer.act(gate)  # [B, T, I]
    return mixer.out_proj(y)  # [B, T, C]
