"""The public API against JAX's: structure, dtypes, composition with jit/vmap/grad, errors."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcgrad


@pytest.fixture(autouse=True)
def _numpy_style_broadcasting():
    # The issue's example loss adds a bias with NumPy rank promotion, as users write it.
    with jax.numpy_rank_promotion("allow"):
        yield


def loss(params, x, y):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] - y) ** 2)


def _setup(dtype=jnp.float64):
    k = jax.random.split(jax.random.key(0), 4)
    params = {
        "w1": jax.random.normal(k[0], (5, 8), dtype),
        "b1": jnp.full((8,), 0.1, dtype),
        "w2": jax.random.normal(k[1], (8, 2), dtype),
    }
    return params, jax.random.normal(k[2], (16, 5), dtype), jax.random.normal(k[3], (16, 2), dtype)


def tree_allclose(a, b, rtol=1e-10, atol=1e-12):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.shape == y.shape and x.dtype == y.dtype, (x.shape, x.dtype, y.shape, y.dtype)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_issue_example_grad_check_and_jit():
    params, x, y = _setup()
    tree_allclose(funcgrad.grad(loss)(params, x, y), jax.grad(loss)(params, x, y))
    report = funcgrad.check_grads(loss, params, x, y)
    assert report.ok and "w1" in str(report)
    step = jax.jit(funcgrad.value_and_grad(loss))
    v, g = step(params, x, y)
    v_ref, g_ref = jax.value_and_grad(loss)(params, x, y)
    np.testing.assert_allclose(v, v_ref, rtol=1e-12)
    tree_allclose(g, g_ref)


@pytest.mark.parametrize("argnums", [0, 1, (0, 2), (2, 0, 1)])
def test_argnums_like_jax(argnums):
    params, x, y = _setup()
    tree_allclose(
        funcgrad.grad(loss, argnums=argnums)(params, x, y),
        jax.grad(loss, argnums=argnums)(params, x, y),
    )


def test_has_aux_and_value_and_grad():
    params, x, y = _setup()

    def f(p):
        return loss(p, x, y), {"norm": jnp.sum(p["w1"] ** 2)}

    (v, aux), g = funcgrad.value_and_grad(f, has_aux=True)(params)
    (v_ref, aux_ref), g_ref = jax.value_and_grad(f, has_aux=True)(params)
    tree_allclose(aux, aux_ref)
    tree_allclose(g, g_ref)
    g2, aux2 = funcgrad.grad(f, has_aux=True)(params)
    tree_allclose(g2, g_ref)


def test_pytrees_of_registered_kinds():
    Pair = collections.namedtuple("Pair", "a b")
    p = {"t": (jnp.ones(3), [jnp.arange(2.0)]), "n": Pair(jnp.float64(2.0), jnp.ones((2, 2)))}

    def f(p):
        return jnp.sum(p["t"][0] * p["n"].a) + jnp.sum(p["t"][1][0] ** 3) + p["n"].b.sum()

    tree_allclose(funcgrad.grad(f)(p), jax.grad(f)(p))


def test_allow_int_gives_float0_like_jax():
    f = lambda x, n: jnp.sum(x**2) * n  # noqa: E731
    x, n = jnp.arange(3.0), jnp.int32(3)
    g = funcgrad.grad(f, argnums=(0, 1), allow_int=True)(x, n)
    g_ref = jax.grad(f, argnums=(0, 1), allow_int=True)(x, n)
    assert g[1].dtype == g_ref[1].dtype == jax.dtypes.float0
    np.testing.assert_allclose(g[0], g_ref[0])


def test_vjp_integer_input_gets_float0():
    _, pull = funcgrad.vjp(lambda x, i: x * i, jnp.ones(3), jnp.arange(3))
    gx, gi = pull(jnp.ones(3))
    assert gi.dtype == jax.dtypes.float0 and gi.shape == (3,)


def test_float32_dtypes_preserved():
    params, x, y = _setup(jnp.float32)
    g = funcgrad.grad(loss)(params, x, y)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(g))
    tree_allclose(g, jax.grad(loss)(params, x, y), rtol=1e-5, atol=1e-6)


def test_jit_vmap_per_example_gradients():
    params, x, y = _setup()
    per_ex = jax.vmap(funcgrad.grad(loss), in_axes=(None, 0, 0))
    per_ex_ref = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))
    tree_allclose(
        jax.jit(per_ex)(params, x[:, None], y[:, None]), per_ex_ref(params, x[:, None], y[:, None])
    )


def test_grad_of_grad_and_jacfwd_of_grad():
    f = lambda x: jnp.sum(jnp.sin(x) * x**3 + jnp.tanh(x))  # noqa: E731
    x = jnp.linspace(-1.0, 1.0, 5)
    gg = funcgrad.grad(lambda x: jnp.sum(funcgrad.grad(f)(x) ** 2))(x)
    gg_ref = jax.grad(lambda x: jnp.sum(jax.grad(f)(x) ** 2))(x)
    np.testing.assert_allclose(gg, gg_ref, rtol=1e-10)
    np.testing.assert_allclose(
        jax.jacfwd(funcgrad.grad(f))(x), jax.jacfwd(jax.grad(f))(x), rtol=1e-10
    )
    np.testing.assert_allclose(funcgrad.hessian(f)(x), jax.hessian(f)(x), rtol=1e-10)


def test_jacrev_structure_like_jax():
    def f(p, x):
        return {"y": jnp.tanh(p["w"] @ x), "s": jnp.sum(p["w"]) * x[0]}

    p, x = {"w": jnp.ones((2, 3)) * 0.3}, jnp.arange(3.0)
    tree_allclose(funcgrad.jacrev(f)(p, x), jax.jacrev(f)(p, x))
    tree_allclose(funcgrad.jacrev(f, argnums=(0, 1))(p, x), jax.jacrev(f, argnums=(0, 1))(p, x))


# ---------------------------------------------------------------- errors


def test_error_non_scalar_output_names_shape_and_suggests_vjp():
    with pytest.raises(TypeError, match=r"scalar output, got shape \(3,\).*funcgrad.vjp"):
        funcgrad.grad(jnp.sin)(jnp.ones(3))


def test_error_missing_rule_names_primitive_line_and_fix():
    prim = jax.extend.core.Primitive("my_mystery_op")
    prim.def_impl(lambda x: x * 2)
    prim.def_abstract_eval(lambda x: x)

    def f(x):
        return jnp.sum(prim.bind(x))  # the line the error must point at

    with pytest.raises(funcgrad.MissingRuleError) as err:
        funcgrad.grad(f)(jnp.ones(3))
    msg = str(err.value)
    assert "my_mystery_op" in msg and "register_vjp" in msg
    assert "test_api.py" in msg and "adding-a-rule" in msg


def test_registering_a_rule_for_a_new_primitive():
    prim = jax.extend.core.Primitive("scaled_square")
    prim.def_impl(lambda x, *, scale: scale * x * x)
    prim.def_abstract_eval(lambda x, *, scale: x)

    @funcgrad.register_vjp(prim)
    def scaled_square_vjp(g, ans, x, *, scale):
        del ans
        return (g * 2 * scale * x,)

    x = jnp.arange(3.0)
    np.testing.assert_allclose(
        funcgrad.grad(lambda x: jnp.sum(prim.bind(x, scale=3.0)))(x), 6.0 * x
    )


def test_error_rule_returning_wrong_shape_names_the_rule():
    prim = jax.extend.core.Primitive("bad_shape_op")
    prim.def_impl(lambda x: x)
    prim.def_abstract_eval(lambda x: x)

    @funcgrad.register_vjp(prim)
    def bad_vjp(g, ans, x):
        return (jnp.sum(g),)

    with pytest.raises(funcgrad.RuleError, match=r"bad_shape_op.*float64\[\].*float64\[3\]"):
        funcgrad.grad(lambda x: jnp.sum(prim.bind(x)))(jnp.ones(3))


def test_error_non_array_leaf():
    with pytest.raises(TypeError, match=r"args\[0\]\['act'\] is a str"):
        funcgrad.grad(lambda p: jnp.sum(p["w"]))({"w": jnp.ones(2), "act": "relu"})


def test_error_integer_input_without_allow_int():
    with pytest.raises(TypeError, match="argument 0 has dtype int32.*allow_int=True"):
        funcgrad.grad(lambda x: jnp.sum(x * 1.0))(jnp.arange(3, dtype=jnp.int32))


def _aux_fn(x):
    return jnp.sum(x**2), {"tag": "train", "step": 3, "none": None, "lr": 0.5, "x": x}


@pytest.mark.parametrize("x", [2.0, jnp.ones(2)])
def test_has_aux_returns_non_array_leaves_as_jax_does(x):
    ours_g, ours_aux = funcgrad.grad(_aux_fn, has_aux=True)(x)
    ref_g, ref_aux = jax.grad(_aux_fn, has_aux=True)(x)
    np.testing.assert_allclose(ours_g, ref_g)
    assert jax.tree.structure(ours_aux) == jax.tree.structure(ref_aux)
    for key in ("tag", "step", "none", "lr"):
        assert ours_aux[key] == ref_aux[key] and type(ours_aux[key]) is type(ref_aux[key])
    np.testing.assert_allclose(ours_aux["x"], ref_aux["x"])
    out, _, aux = funcgrad.vjp(_aux_fn, x, has_aux=True)
    assert aux["tag"] == "train" and aux["none"] is None


def test_weakly_typed_input_gets_a_weakly_typed_gradient():
    f = lambda x: x * 3.0  # noqa: E731
    for x in (2.0, jnp.float32(2.0)):
        ours, ref = funcgrad.grad(f)(x), jax.grad(f)(x)
        assert jax.typeof(ours) == jax.typeof(ref), (x, jax.typeof(ours), jax.typeof(ref))
    g = funcgrad.grad(f)(2.0)
    assert (jnp.ones(3, jnp.bfloat16) * g).dtype == jnp.bfloat16
    (_, pull) = funcgrad.vjp(f, 2.0)
    assert jax.typeof(pull(1.0)[0]).weak_type


@pytest.mark.parametrize(
    "api, fun",
    [(funcgrad.jacrev, jnp.argmax), (funcgrad.grad, lambda x: jnp.argmax(x))],
)
def test_integer_outputs_get_jaxs_kind_of_message(api, fun):
    with pytest.raises(TypeError, match="requires real-valued outputs.*got int"):
        api(fun)(jnp.ones(3))


def test_complex_inputs_real_loss_use_jaxs_convention():
    z = jnp.asarray([3 + 4j, -1 + 0.5j])
    loss = lambda z: jnp.sum(jnp.real(z * jnp.conj(z)) + jnp.imag(z) * 2.0)  # noqa: E731
    np.testing.assert_allclose(funcgrad.grad(loss)(z), jax.grad(loss)(z))
    v, g = funcgrad.value_and_grad(lambda z: jnp.abs(z[0]) ** 2)(z)
    np.testing.assert_allclose(g, jax.grad(lambda z: jnp.abs(z[0]) ** 2)(z))
    with pytest.raises(TypeError, match="requires real-valued outputs.*complex.*holomorphic=True"):
        funcgrad.grad(lambda z: jnp.sum(z * z))(z)


def test_holomorphic_grad_value_and_grad_jacrev_vjp():
    f = lambda z: z * z + 2.0 * z  # noqa: E731
    z = 1.5 - 0.5j
    np.testing.assert_allclose(
        funcgrad.grad(f, holomorphic=True)(z), jax.grad(f, holomorphic=True)(z)
    )
    v, g = funcgrad.value_and_grad(f, holomorphic=True)(z)
    np.testing.assert_allclose(g, jax.grad(f, holomorphic=True)(z))
    zs = jnp.asarray([1 + 1j, 2j])
    np.testing.assert_allclose(
        funcgrad.jacrev(f, holomorphic=True)(zs), jax.jacrev(f, holomorphic=True)(zs)
    )
    out, pull = funcgrad.vjp(f, zs)
    ref_out, ref_pull = jax.vjp(f, zs)
    ct = jnp.asarray([0.5 - 1j, 2 + 0j])
    np.testing.assert_allclose(pull(ct)[0], ref_pull(ct)[0])
    with pytest.raises(TypeError, match="holomorphic=True requires inputs with complex dtype"):
        funcgrad.grad(f, holomorphic=True)(1.0)
    with pytest.raises(TypeError, match="holomorphic=True requires outputs with complex dtype"):
        funcgrad.grad(lambda z: jnp.abs(z), holomorphic=True)(1j)


def test_error_vjp_cotangent_wrong_structure_shape_dtype():
    _, pull = funcgrad.vjp(lambda x: (x, x.sum()), jnp.ones(3))
    with pytest.raises(TypeError, match="structure"):
        pull(jnp.ones(3))
    with pytest.raises(TypeError, match=r"cotangent leaf 0 has type float64\[4\]"):
        pull((jnp.ones(4), jnp.float64(1.0)))
    with pytest.raises(TypeError, match=r"float32\[3\].*needs float64\[3\]"):
        pull((jnp.ones(3, jnp.float32), jnp.float64(1.0)))


def test_error_bad_argnums():
    with pytest.raises(ValueError, match="argnums=3.*2 positional"):
        funcgrad.grad(lambda x, y: x * y, argnums=3)(1.0, 2.0)


def test_check_grads_raises_with_table_on_wrong_rule():
    from jax.extend.core import primitives as p

    from funcgrad._registry import VJP_RULES

    saved = VJP_RULES[p.sin_p]

    @funcgrad.register_vjp(p.sin_p)
    def broken_sin_vjp(g, ans, x, *, accuracy):  # planted fault: sin' = sin
        del ans, accuracy
        return (g * jnp.sin(x),)

    try:
        with pytest.raises(funcgrad.GradientMismatchError, match=r"args\[0\].*MISMATCH"):
            funcgrad.check_grads(lambda x: jnp.sum(jnp.sin(x) * x), jnp.linspace(0.5, 1.5, 4))
    finally:
        VJP_RULES[p.sin_p] = saved
