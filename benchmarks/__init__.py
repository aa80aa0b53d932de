"""funcgrad's benchmark suite: funcgrad against jax.grad, PyTorch and HIPS autograd.

    python -m benchmarks --quick            # seconds: tiny sizes, smoke test
    python -m benchmarks --out bench_out    # the full table, JSON and plot

See docs/performance.md for the latest results and how to run on a GPU.
"""
