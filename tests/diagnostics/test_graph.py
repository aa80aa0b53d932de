"""draw_graph: values, cotangents per use and fan-out sums; a planted rule shows up in it."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import primitives as p

from funcgrad.diagnostics import draw_graph

from ._util import planted_rule

HERE = os.path.basename(__file__)


def difference_of_squares(x, y):
    return (x + y) * (x - y)


def _by_title(pic):
    return {n.title: n for n in pic.nodes}


def test_teaching_example_shows_fan_out_sums(tmp_path):
    paths = [str(tmp_path / "dos.svg"), str(tmp_path / "dos.png")]
    pic = draw_graph(
        difference_of_squares, 3.0, 2.0, argnums=(0, 1), arg_names=["x", "y"], path=paths
    )
    nodes = _by_title(pic)
    assert nodes["x"].grad == "grad 6 = 1 + 5" and nodes["y"].grad == "grad -4 = 1 + (-5)"
    assert nodes["add"].value == "5" and nodes["sub"].value == "1" and nodes["mul"].value == "5"
    out_x = sorted(e.grad for e in pic.edges if e.src == nodes["x"].id)
    assert out_x == ["1", "5"]  # one edge per use, each with its own contribution
    assert HERE in nodes["mul"].where
    for path in paths:
        assert os.path.getsize(path) > 5000
    with open(paths[0]) as fh:
        assert "<svg" in fh.read(2000)


def test_picture_shows_funcgrad_cotangents_so_a_wrong_rule_is_visible():
    def wrong_sub(g, ans, x, y):  # planted fault: the minus sign is lost
        return (g, g)

    with planted_rule(p.sub_p, wrong_sub):
        pic = draw_graph(difference_of_squares, 3.0, 2.0, argnums=(0, 1), arg_names=["x", "y"])
    assert _by_title(pic)["y"].grad == "grad 6 = 1 + 5"  # jax.grad says -4


def two_layer(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    return jnp.mean((h @ params["w2"]) ** 2)


def test_two_layer_network_labels_arrays_with_shape_and_stats():
    k = jax.random.split(jax.random.key(0), 3)
    params = {
        "w1": jax.random.normal(k[0], (3, 4), jnp.float32),
        "b1": jnp.zeros(4, jnp.float32),
        "w2": jax.random.normal(k[1], (4, 2), jnp.float32),
    }
    x = jax.random.normal(k[2], (8, 3), jnp.float32)
    pic = draw_graph(two_layer, params, x, arg_names=["params", "x"])
    nodes = _by_title(pic)
    assert pic.mode == "none" and nodes["tanh"].value.startswith("f32[8,4] mean")
    g = jax.grad(two_layer)(params, x)
    want = f"grad |g| {np.linalg.norm(np.asarray(g['w2'])):.2g}"
    assert nodes["params['w2']"].grad == want
    assert nodes["x"].grad == "" and nodes["x"].kind == "input"  # not differentiated


def _block(params, x):
    def layer_norm(h):
        mu = jnp.mean(h, -1, keepdims=True)
        return (h - mu) / jnp.sqrt(jnp.var(h, -1, keepdims=True) + 1e-5)

    def attention(h):
        q, k, v = h @ params["wq"], h @ params["wk"], h @ params["wv"]
        a = jax.nn.softmax(q @ k.T / np.sqrt(q.shape[-1]), axis=-1)
        return (a @ v) @ params["wo"]

    def mlp(h):
        return jax.nn.gelu(h @ params["w1"]) @ params["w2"]

    h = x + attention(layer_norm(x))
    h = h + mlp(layer_norm(h))
    return jnp.mean(h**2)


def test_transformer_block_collapses_by_function():
    k = jax.random.split(jax.random.key(1), 8)
    d = 8
    params = {
        n: jax.random.normal(k[i], (d, d), jnp.float32) / np.sqrt(d)
        for i, n in enumerate(["wq", "wk", "wv", "wo", "w1", "w2"])
    }
    x = jax.random.normal(k[7], (4, d), jnp.float32)
    pic = draw_graph(_block, params, x, max_nodes=30)
    # "auto" tried every operation, then nested jits, each over 30 boxes, then functions:
    assert pic.mode == "function" and len(pic.nodes) <= 30
    titles = [n.title for n in pic.nodes]
    for fn in ("attention", "mlp", "layer_norm"):
        assert any(t.startswith(f"{fn} (") for t in titles), titles
    assert sum(t.startswith("layer_norm (") for t in titles) == 2  # two calls, two boxes
