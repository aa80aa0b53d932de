"""funcgrad.nn: every layer's gradient equals jax.grad (float64), forward values, bad input."""

import functools
import inspect
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcgrad
from funcgrad import nn

F64 = jnp.float64


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), F64)


def _keys(n, seed=0):
    return jax.random.split(jax.random.PRNGKey(seed), n)


# Each case builds (apply, params, inputs): apply(params, *inputs) -> array. The test
# differentiates sum(apply(...) * ct) for a random cotangent ct with respect to the params and
# every floating input, so transposition errors cannot cancel as they can in grad(sum(f)).
def case_dense():
    return nn.dense, nn.init_dense(_keys(1)[0], 5, 3, dtype=F64), (_normal(1, (4, 2, 5)),)


def case_dense_no_bias():
    return nn.dense, nn.init_dense(_keys(1)[0], 5, 3, bias=False, dtype=F64), (_normal(1, (4, 5)),)


def case_mlp():
    apply = functools.partial(nn.mlp, activation=jnp.tanh, final_activation=jax.nn.softplus)
    return apply, nn.init_mlp(_keys(1)[0], [5, 7, 6, 3], dtype=F64), (_normal(1, (4, 5)),)


def case_conv1d_stride_padding():
    apply = functools.partial(nn.conv1d, stride=2, padding=1)
    return apply, nn.init_conv1d(_keys(1)[0], 2, 3, 5, dtype=F64), (_normal(1, (2, 12, 2)),)


def case_conv1d_same_dilated():
    apply = functools.partial(nn.conv1d, padding="SAME", dilation=2)
    return apply, nn.init_conv1d(_keys(1)[0], 2, 3, 3, dtype=F64), (_normal(1, (2, 11, 2)),)


def case_conv2d_stride_pairs():
    apply = functools.partial(nn.conv2d, stride=(2, 1), padding=((1, 0), (0, 1)))
    params = nn.init_conv2d(_keys(1)[0], 2, 3, (3, 2), dtype=F64)
    return apply, params, (_normal(1, (2, 7, 6, 2)),)


def case_conv2d_same():
    apply = functools.partial(nn.conv2d, stride=2, padding="SAME")
    return apply, nn.init_conv2d(_keys(1)[0], 3, 4, 3, dtype=F64), (_normal(1, (2, 6, 5, 3)),)


def _no_params(fn):
    return lambda params, x: fn(x)


def case_max_pool1d_same():
    apply = _no_params(functools.partial(nn.max_pool, window=3, stride=2, padding="SAME"))
    return apply, {}, (_normal(1, (2, 9, 3)),)


def case_max_pool2d():
    return _no_params(functools.partial(nn.max_pool, window=2)), {}, (_normal(1, (2, 6, 6, 3)),)


def case_avg_pool1d_padded():
    apply = _no_params(functools.partial(nn.avg_pool, window=3, stride=2, padding=1))
    return apply, {}, (_normal(1, (2, 9, 3)),)


def case_avg_pool2d():
    apply = _no_params(functools.partial(nn.avg_pool, window=(2, 3), stride=1))
    return apply, {}, (_normal(1, (2, 5, 6, 2)),)


def case_layer_norm():
    params = {"scale": _normal(2, (6,)), "bias": _normal(3, (6,))}
    return nn.layer_norm, params, (_normal(1, (3, 4, 6)),)


def case_batch_norm_training():
    _, state = nn.init_batch_norm(4, dtype=F64)

    def apply(params, x):
        return nn.batch_norm(params, state, x, training=True)[0]

    params = {"scale": _normal(2, (4,)), "bias": _normal(3, (4,))}
    return apply, params, (_normal(1, (5, 3, 4)),)


def case_batch_norm_eval():
    state = {"mean": _normal(4, (4,)), "var": jnp.exp(_normal(5, (4,)))}

    def apply(params, x):
        return nn.batch_norm(params, state, x, training=False)[0]

    params = {"scale": _normal(2, (4,)), "bias": _normal(3, (4,))}
    return apply, params, (_normal(1, (5, 4)),)


def case_embedding():
    ids = jnp.array([[1, 4, 4], [0, 9, 1]])  # repeated ids: their cotangents must add up

    def apply(params):
        return nn.embedding(params, ids)

    return apply, nn.init_embedding(_keys(1)[0], 10, 3, dtype=F64), ()


def case_dropout():
    key = _keys(1)[0]
    return _no_params(lambda x: nn.dropout(key, x, 0.3, training=True)), {}, (_normal(1, (4, 7)),)


def case_causal_self_attention():
    params = nn.init_causal_self_attention(_keys(1)[0], 8, 2, dtype=F64)
    return nn.causal_self_attention, params, (_normal(1, (2, 5, 8)),)


def case_gru_cell():
    params = nn.init_gru_cell(_keys(1)[0], 3, 4, dtype=F64)
    return nn.gru_cell, params, (_normal(1, (2, 4)), _normal(2, (2, 3)))


def case_gru_scan():
    def apply(params, xs, h0):
        hs, h_last = nn.gru(params, xs, h0)
        return jnp.concatenate([hs.reshape(-1), 2.0 * h_last.reshape(-1)])

    params = nn.init_gru(_keys(1)[0], 3, 4, dtype=F64)
    return apply, params, (_normal(1, (2, 6, 3)), _normal(2, (2, 4)))


def _loss_case(loss, pred_shape, target):
    return _no_params(lambda p: loss(p, target)), {}, (_normal(1, pred_shape),)


def case_softmax_cross_entropy():
    return _loss_case(nn.softmax_cross_entropy, (6, 5), jnp.array([0, 4, 2, 2, 1, 3]))


def case_nll_loss():
    def apply(params, logits):
        return nn.nll_loss(jax.nn.log_softmax(logits), jnp.array([0, 4, 2, 1]))

    return apply, {}, (_normal(1, (4, 5)),)


def case_sigmoid_binary_cross_entropy():
    return _loss_case(nn.sigmoid_binary_cross_entropy, (6,), jnp.array([0.0, 1, 1, 0, 1, 0]))


def case_mean_squared_error():
    return _loss_case(nn.mean_squared_error, (3, 2), _normal(7, (3, 2)))


def case_mean_absolute_error():
    return _loss_case(nn.mean_absolute_error, (3, 2), _normal(7, (3, 2)))


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


def test_every_layer_has_a_gradient_case():
    """Each public apply function of funcgrad.nn appears in some case above (by source)."""
    source = inspect.getsource(sys.modules[__name__])
    applies = [n for n, v in vars(nn).items() if inspect.isfunction(v) and not n.startswith("init")]
    missing = [n for n in applies if n != "accuracy" and f"nn.{n}" not in source]
    assert not missing, f"no gradient case for {missing}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_gradient_matches_jax(name):
    apply, params, inputs = CASES[name]()
    out = apply(params, *inputs)
    assert jnp.result_type(out) == F64
    ct = _normal(99, np.shape(out))

    def objective(params, *inputs):
        return jnp.sum(apply(params, *inputs) * ct)

    argnums = tuple(range(1 + len(inputs)))
    # Jitted: one XLA program each is faster to build than eager op-by-op dispatch.
    got = jax.jit(funcgrad.grad(objective, argnums=argnums))(params, *inputs)
    want = jax.jit(jax.grad(objective, argnums=argnums))(params, *inputs)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    assert any(np.any(np.asarray(w) != 0) for w in jax.tree.leaves(want)), "vacuous case"


# ---- forward values -----------------------------------------------------------------------


def test_conv1d_matches_direct_sum():
    params = nn.init_conv1d(_keys(1)[0], 2, 3, 4, dtype=F64)
    x = _normal(1, (2, 9, 2))
    got = nn.conv1d(params, x, stride=2, padding=1)
    xp = np.pad(np.asarray(x), ((0, 0), (1, 1), (0, 0)))
    w, b = np.asarray(params["w"]), np.asarray(params["b"])
    out_len = (9 + 2 - 4) // 2 + 1
    want = np.stack(
        [np.einsum("nkc,kco->no", xp[:, 2 * t : 2 * t + 4], w) + b for t in range(out_len)], 1
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_avg_pool_padding_averages_real_cells_only():
    x = jnp.arange(1.0, 6.0).reshape(1, 5, 1)  # 1 2 3 4 5, padded 0 | ... | 0
    got = nn.avg_pool(x, 3, stride=2, padding=1)[0, :, 0]
    np.testing.assert_allclose(got, [1.5, 3.0, 4.5])


def test_max_pool_same_keeps_length_over_stride():
    x = _normal(3, (1, 7, 2))
    got = nn.max_pool(x, 3, stride=2, padding="SAME")
    assert got.shape == (1, 4, 2)
    np.testing.assert_allclose(got[0, 1], np.max(np.asarray(x)[0, 1:4], axis=0))


def test_layer_norm_normalises_last_axis():
    y = nn.layer_norm(nn.init_layer_norm(6, dtype=F64), _normal(1, (3, 6)) * 5 + 2)
    np.testing.assert_allclose(jnp.mean(y, -1), 0, atol=1e-12)
    np.testing.assert_allclose(jnp.var(y, -1), 1, rtol=1e-5)


def test_batch_norm_returns_new_state_and_never_mutates():
    params, state = nn.init_batch_norm(3, dtype=F64)
    before = jax.tree.map(np.array, state)
    x = _normal(1, (8, 3)) * 2 + 1
    y, new_state = nn.batch_norm(params, state, x, training=True, momentum=0.8)
    for k in state:
        np.testing.assert_array_equal(state[k], before[k])
    xn = np.asarray(x)
    np.testing.assert_allclose(new_state["mean"], 0.2 * xn.mean(0), rtol=1e-12)
    np.testing.assert_allclose(new_state["var"], 0.8 + 0.2 * xn.var(0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(jnp.mean(y, 0), 0, atol=1e-12)
    y_eval, same = nn.batch_norm(params, new_state, x, training=False)
    assert same is new_state
    mean, var = np.asarray(new_state["mean"]), np.asarray(new_state["var"])
    want = (xn - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(y_eval, want, rtol=1e-12)


def test_dropout_is_off_at_evaluation_and_keyed_in_training():
    x = jnp.ones((200, 50))
    assert nn.dropout(None, x, 0.5, training=False) is x
    k1, k2 = _keys(2)
    a, b = nn.dropout(k1, x, 0.5, training=True), nn.dropout(k1, x, 0.5, training=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, nn.dropout(k2, x, 0.5, training=True))
    assert set(np.unique(a).tolist()) == {0.0, 2.0}
    assert abs(float(jnp.mean(a)) - 1.0) < 0.05  # inverted dropout keeps the expectation


def test_causal_attention_ignores_the_future():
    params = nn.init_causal_self_attention(_keys(1)[0], 8, 4, dtype=F64)
    x = _normal(1, (2, 6, 8))
    x_changed = x.at[:, 4:].set(_normal(2, (2, 2, 8)))
    y, y_changed = nn.causal_self_attention(params, x), nn.causal_self_attention(params, x_changed)
    np.testing.assert_allclose(y[:, :4], y_changed[:, :4], rtol=1e-12)
    assert not np.allclose(y[:, 4:], y_changed[:, 4:])


def test_gru_scan_equals_a_loop_of_cells():
    params = nn.init_gru(_keys(1)[0], 3, 5, dtype=F64)
    xs = _normal(1, (2, 7, 3))
    hs, h_last = nn.gru(params, xs)
    h = jnp.zeros((2, 5), F64)
    for t in range(7):
        h = nn.gru_cell(params, h, xs[:, t])
        np.testing.assert_allclose(hs[:, t], h, rtol=1e-12)
    np.testing.assert_allclose(h_last, h, rtol=1e-12)


# ---- bad input ----------------------------------------------------------------------------

K = jax.random.PRNGKey(0)
BAD_INPUT = [
    (
        lambda: nn.dense(nn.init_dense(K, 784, 10), jnp.ones((32, 28, 28))),
        r"dense expected x of shape (..., 784), got (32, 28, 28). Flatten the feature axes",
    ),
    (
        lambda: nn.conv1d(nn.init_conv1d(K, 1, 4, 3), jnp.ones((8, 40))),
        r"conv1d expected x of shape (*, *, 1), got (8, 40). Inputs are channels-last",
    ),
    (
        lambda: nn.conv2d(nn.init_conv2d(K, 3, 4, 3), jnp.ones((2, 8, 8, 1))),
        r"conv2d expected x of shape (*, *, *, 3), got (2, 8, 8, 1)",
    ),
    (
        lambda: nn.conv1d(nn.init_conv1d(K, 1, 4, 3), jnp.ones((8, 40, 1)), padding="FULL"),
        r"conv1d expected padding 'SAME', 'VALID', an int or 1 (lo, hi) pairs, got 'FULL'",
    ),
    (
        lambda: nn.max_pool(jnp.ones((8,)), 2),
        r"max_pool expected x of shape (N, *spatial, C) with at least one spatial axis, got (8,)",
    ),
    (
        lambda: nn.layer_norm(nn.init_layer_norm(4), jnp.ones((2, 5))),
        r"layer_norm expected x of shape (..., 4), got (2, 5)",
    ),
    (
        lambda: nn.batch_norm(*nn.init_batch_norm(4), jnp.ones((2, 5)), training=True),
        r"batch_norm expected x of shape (..., 4), got (2, 5)",
    ),
    (
        lambda: nn.embedding(nn.init_embedding(K, 10, 3), jnp.array([3, 10])),
        r"embedding expected ids in [0, 10) for a table of 10 rows, got values in [3, 10]",
    ),
    (
        lambda: nn.embedding(nn.init_embedding(K, 10, 3), jnp.array([1.0])),
        r"embedding expected ids to hold integer indices, got dtype float",
    ),
    (
        lambda: nn.dropout(K, jnp.ones(3), 1.0, training=True),
        r"dropout expected rate in [0, 1), got 1.0",
    ),
    (
        lambda: nn.dropout(None, jnp.ones(3), 0.5, training=True),
        r"dropout with training=True needs a PRNG key, got key=None",
    ),
    (
        lambda: nn.init_causal_self_attention(K, 10, 3),
        r"init_causal_self_attention expected num_heads to divide features, got features=10",
    ),
    (
        lambda: nn.causal_self_attention(
            nn.init_causal_self_attention(K, 8, 2), jnp.ones((2, 5, 7))
        ),
        r"causal_self_attention expected x of shape (..., *, 8), got (2, 5, 7)",
    ),
    (
        lambda: nn.gru(nn.init_gru(K, 1, 4), jnp.ones((2, 40))),
        r"gru expected xs of shape (*, *, 1), got (2, 40). Sequences are batch first",
    ),
    (
        lambda: nn.gru_cell(nn.init_gru_cell(K, 3, 4), jnp.ones((2, 5)), jnp.ones((2, 3))),
        r"gru_cell expected h of shape (2, 4), got (2, 5)",
    ),
    (
        lambda: nn.init_mlp(K, [3]),
        r"init_mlp expected sizes=[D_in, ..., D_out] with at least two widths, got [3]",
    ),
    (
        lambda: nn.dense({"weights": jnp.ones((2, 2))}, jnp.ones(2)),
        r"dense expected params with keys ['w'] (as init_dense returns), got keys ['weights']",
    ),
    (
        lambda: nn.softmax_cross_entropy(jnp.ones((4, 10)), jnp.ones((4, 1), jnp.int32)),
        r"softmax_cross_entropy expected labels of shape (4,) (logits' shape without the class",
    ),
    (
        lambda: nn.mean_squared_error(jnp.ones(4), jnp.ones((4, 1))),
        r"mean_squared_error expected predictions and targets of the same shape, "
        r"got (4,) and (4, 1)",
    ),
]


@pytest.mark.parametrize("call, message", BAD_INPUT, ids=[m[:30] for _, m in BAD_INPUT])
def test_bad_input_says_what_was_expected(call, message):
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        call()
