"""The plugin's own tests: seqlab's shared model checks, plus what is special to the GRU.

python -m pytest examples/plugin_gru/tests
"""

from seqlab.testing import assert_causal, assert_step_matches_forward, run_model_checks
from seqlab_gru import GRU


def test_gru_passes_seqlab_checks():
    run_model_checks(GRU)  # the defaults, documented_params included
    run_model_checks(GRU, hidden_size=16, num_layers=1)


def test_deeper_gru_is_causal_on_longer_rows():
    assert_causal(GRU, num_layers=3, seq_len=40)


def test_rnn_mode_matches_forward():
    # run_model_checks runs this too (the GRU has RNN mode); here on a deeper stack as well.
    assert assert_step_matches_forward(GRU) <= 1e-5
    assert assert_step_matches_forward(GRU, num_layers=3, hidden_size=24, seq_len=100) <= 1e-5
