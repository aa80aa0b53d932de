"""The VJP table, one module per family. Importing this package registers every rule."""

from . import (  # noqa: F401
    collectives,
    contractions,
    control_flow,
    conv,
    cumulative,
    custom_lin,
    decompositions,
    elementwise,
    fft,
    indexing,
    linalg,
    misc,
    reductions,
    special,
    structural,
    windows,
)
