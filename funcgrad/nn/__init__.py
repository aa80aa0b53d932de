"""funcgrad.nn: pure layers. Each layer is ``init_*(key, ...) -> params`` plus a pure apply.

Parameters are plain pytrees (dicts and lists of arrays), so ``funcgrad.grad``, ``jax.jit``,
``jax.vmap`` and optax see nothing special. Inputs are batch first and channels last.

    params = nn.init_dense(key, 784, 10)
    logits = nn.dense(params, x)                      # x: (N, 784) -> (N, 10)
    loss = nn.softmax_cross_entropy(logits, labels)  # labels: (N,) int

Activations are ``jax.nn``'s (``jax.nn.relu``, ``jax.nn.gelu``, ...); optimisers are optax's.
"""

from . import initializers as initializers
from .attention import causal_self_attention as causal_self_attention
from .attention import init_causal_self_attention as init_causal_self_attention
from .conv import conv1d as conv1d
from .conv import conv2d as conv2d
from .conv import init_conv1d as init_conv1d
from .conv import init_conv2d as init_conv2d
from .dense import dense as dense
from .dense import init_dense as init_dense
from .dense import init_mlp as init_mlp
from .dense import mlp as mlp
from .embedding import dropout as dropout
from .embedding import embedding as embedding
from .embedding import init_embedding as init_embedding
from .losses import accuracy as accuracy
from .losses import mean_absolute_error as mean_absolute_error
from .losses import mean_squared_error as mean_squared_error
from .losses import nll_loss as nll_loss
from .losses import sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy
from .losses import softmax_cross_entropy as softmax_cross_entropy
from .norm import batch_norm as batch_norm
from .norm import init_batch_norm as init_batch_norm
from .norm import init_layer_norm as init_layer_norm
from .norm import layer_norm as layer_norm
from .pooling import avg_pool as avg_pool
from .pooling import max_pool as max_pool
from .recurrent import gru as gru
from .recurrent import gru_cell as gru_cell
from .recurrent import init_gru as init_gru
from .recurrent import init_gru_cell as init_gru_cell
