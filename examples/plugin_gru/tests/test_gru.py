"""The plugin's own tests: seqlab's shared model checks, plus what is special to the GRU.

    python -m pytest examples/plugin_gru/tests
"""

import numpy as np
import paddle

from seqlab.testing import assert_causal, make_tokens, run_model_checks
from seqlab_gru import GRU


def test_gru_passes_seqlab_checks():
    run_model_checks(GRU)                            # the defaults, documented_params included
    run_model_checks(GRU, hidden_size=16, num_layers=1)


def test_deeper_gru_is_causal_on_longer_rows():
    assert_causal(GRU, num_layers=3, seq_len=40)


def test_rnn_mode_matches_forward():
    paddle.seed(0)
    model = GRU()
    model.eval()
    tokens = make_tokens(model.vocab_size, batch_size=2, seq_len=10)
    full = model(tokens).numpy()
    state = model.init_state(2)
    for t in range(10):
        logits, state = model.step(tokens[:, t], state)
        np.testing.assert_allclose(logits.numpy(), full[:, t], atol=1e-5)
