"""Tables that hold the same rows: every column equal, floating-point ones to float32 rounding.

torch's thread count follows the machine's load (bolt_tasks/core/threads.py) and is 1 in a Ray
task. On CPUs whose small matrix products split their sums across threads (the AVX2 AMD EPYC of
2026-12-03: one q projection of 7 positions differs by 1.7e-6 between 1 and 2 threads), the same
rows computed at another thread count differ in their last bits, so a log-prob, and what is
computed from it, agrees to float32 rounding, not to the bit. Everything else (token ids, texts,
rewards, counts, offsets of float lists) must be equal.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

RTOL, ATOL = 1e-5, 1e-6


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False).astype(np.float64)


def assert_same_rows(got: pa.Table, want: pa.Table, name: str) -> None:
    assert got.schema.equals(want.schema), (name, got.schema, want.schema)
    assert got.num_rows == want.num_rows, name
    for column in want.column_names:
        found, expected = got[column], want[column]
        kind = expected.type
        if pa.types.is_list(kind) and pa.types.is_floating(kind.value_type):
            assert pc.list_value_length(found).equals(pc.list_value_length(expected)), f"{name}.{column}"
            found, expected = pc.list_flatten(found), pc.list_flatten(expected)
            kind = kind.value_type
        if pa.types.is_floating(kind):
            np.testing.assert_allclose(_floats(found), _floats(expected), rtol=RTOL, atol=ATOL,
                                       equal_nan=True, err_msg=f"{name}.{column}")
        else:
            assert found.equals(expected), f"{name}.{column}"
