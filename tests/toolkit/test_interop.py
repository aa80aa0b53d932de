"""Models written with Equinox and Flax differentiate with funcgrad and match jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcgrad

F64 = jnp.float64


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), F64)


def assert_grads_match(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    leaves = jax.tree.leaves(want)
    assert leaves and any(np.any(np.asarray(w) != 0) for w in leaves)
    for g, w in zip(jax.tree.leaves(got), leaves, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_equinox_models_differentiate_with_funcgrad():
    eqx = pytest.importorskip("equinox")
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)

    class Net(eqx.Module):
        conv: eqx.nn.Conv1d
        norm: eqx.nn.LayerNorm
        mlp: eqx.nn.MLP

        def __call__(self, x):  # x: (C_in=2, L=10), one example (Equinox layers are unbatched)
            h = jax.nn.gelu(self.conv(x))  # (4, 8)
            h = self.norm(h.reshape(-1))  # (32,)
            return self.mlp(h)

    net = Net(
        conv=eqx.nn.Conv1d(2, 4, kernel_size=3, key=k1, dtype=F64),
        norm=eqx.nn.LayerNorm(32, dtype=F64),
        mlp=eqx.nn.MLP(32, 3, width_size=8, depth=2, activation=jnp.tanh, key=k2, dtype=F64),
    )
    x, y = _normal(1, (5, 2, 10)), _normal(2, (5, 3))

    # Differentiate the arrays only; the rest of the module (activations, ints) stays static.
    params, static = eqx.partition(net, eqx.is_inexact_array)

    def loss(params, x, y):
        model = eqx.combine(params, static)
        return jnp.mean((jax.vmap(model)(x) - y) ** 2)

    got = jax.jit(funcgrad.grad(loss))(params, x, y)
    assert_grads_match(got, jax.jit(jax.grad(loss))(params, x, y))
    # The same gradient as Equinox's own filtered gradient of the whole module.
    want = eqx.filter_jit(eqx.filter_grad(lambda m, x, y: jnp.mean((jax.vmap(m)(x) - y) ** 2)))(
        net, x, y
    )
    assert_grads_match(got, eqx.filter(want, eqx.is_inexact_array))

    # One jitted optax step on funcgrad's gradient, as a user would write it.
    opt = optax.adam(1e-2)

    @eqx.filter_jit
    def step(params, opt_state):
        value, grads = funcgrad.value_and_grad(loss)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    opt_state = opt.init(params)
    first = None
    for _ in range(5):
        params, opt_state, value = step(params, opt_state)
        first = value if first is None else first
    assert float(value) < float(first)


def test_flax_linen_model_differentiates_with_funcgrad():
    linen = pytest.importorskip("flax.linen")

    class Net(linen.Module):
        @linen.compact
        def __call__(self, x):  # x: (N, L, C)
            h = linen.Conv(4, kernel_size=(3,), param_dtype=F64)(x)
            h = linen.LayerNorm(param_dtype=F64)(jax.nn.relu(h))
            return linen.Dense(3, param_dtype=F64)(h.reshape(h.shape[0], -1))

    net = Net()
    x, y = _normal(1, (5, 10, 2)), _normal(2, (5, 3))
    variables = net.init(jax.random.PRNGKey(0), x)

    def loss(variables, x, y):
        return jnp.mean((net.apply(variables, x) - y) ** 2)

    got = jax.jit(funcgrad.grad(loss))(variables, x, y)
    assert_grads_match(got, jax.jit(jax.grad(loss))(variables, x, y))
