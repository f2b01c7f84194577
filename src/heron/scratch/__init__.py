"""Numpy-only reference implementations of the course's algorithms.

Convolution (im2col), pooling, dense, batch norm, dropout, softmax and losses,
a LeNet-5 trained with SGD, `scan`, a vanilla RNN and a GRU with hand-written
backpropagation through time. Nothing here imports torch: the tests check
every gradient against PyTorch autograd on the same numbers.
"""

from heron.scratch.charrnn import CharRNN, CharRNNConfig, Vocab, train_char_rnn
from heron.scratch.conv import (
    col2im,
    conv1d,
    conv2d,
    conv2d_backward,
    conv2d_forward,
    conv2d_naive,
    conv3d,
    im2col,
)
from heron.scratch.filters import (
    apply_filter,
    classic_filters,
    random_filters,
    to_grayscale,
)
from heron.scratch.functional import (
    cross_entropy,
    cross_entropy_grad,
    euclidean,
    euclidean_grad,
    log_softmax,
    mse,
    mse_grad,
    relu,
    relu_deriv,
    sigmoid,
    sigmoid_deriv,
    softmax,
    tanh,
    tanh_deriv,
)
from heron.scratch.gru import (
    gru_backward,
    gru_cell_backward,
    gru_cell_forward,
    gru_forward,
)
from heron.scratch.layers import (
    batchnorm_backward,
    batchnorm_eval,
    batchnorm_forward,
    dense_backward,
    dense_forward,
    dropout_backward,
    dropout_forward,
    update_running_stats,
)
from heron.scratch.lenet import lenet5, load_digits_32, train_lenet
from heron.scratch.optim import SGD, Adam, clip_by_norm, clip_by_value
from heron.scratch.pool import (
    avg_pool2d,
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool,
    global_avg_pool_backward,
    max_pool2d,
    max_pool2d_backward,
    max_pool2d_forward,
)
from heron.scratch.rnn import rnn_backward, rnn_forward, scan
from heron.scratch.shapes import conv_output_size

__all__ = [
    "Adam",
    "CharRNN",
    "CharRNNConfig",
    "SGD",
    "Vocab",
    "apply_filter",
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "batchnorm_backward",
    "batchnorm_eval",
    "batchnorm_forward",
    "classic_filters",
    "clip_by_norm",
    "clip_by_value",
    "col2im",
    "conv1d",
    "conv2d",
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_naive",
    "conv3d",
    "conv_output_size",
    "cross_entropy",
    "cross_entropy_grad",
    "dense_backward",
    "dense_forward",
    "dropout_backward",
    "dropout_forward",
    "euclidean",
    "euclidean_grad",
    "global_avg_pool",
    "global_avg_pool_backward",
    "gru_backward",
    "gru_cell_backward",
    "gru_cell_forward",
    "gru_forward",
    "im2col",
    "lenet5",
    "load_digits_32",
    "log_softmax",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "mse",
    "mse_grad",
    "random_filters",
    "relu",
    "relu_deriv",
    "rnn_backward",
    "rnn_forward",
    "scan",
    "sigmoid",
    "sigmoid_deriv",
    "softmax",
    "tanh",
    "tanh_deriv",
    "to_grayscale",
    "train_char_rnn",
    "train_lenet",
    "update_running_stats",
]
