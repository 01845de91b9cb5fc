"""runtime.util.multiprocessing.Pool, as Ray's drop-in for multiprocessing.Pool: the same calls
give the same results as the standard library's Pool would, spread over actors; errors come
back as the function raised them; a closed pool refuses work.

(The functions are defined inside the tests: they travel by value, as a script's own functions
do; a module the workers cannot import would need a runtime_env working_dir, as in Ray.)"""

from __future__ import annotations

import pytest


def test_the_pool_maps_like_the_standard_librarys(cluster) -> None:
    from runtime.util.multiprocessing import Pool

    def square(x):
        return x * x

    def add(a, b):
        return a + b

    with Pool(2) as pool:
        assert pool.map(square, range(10)) == [x * x for x in range(10)]
        assert pool.map(square, range(10), chunksize=3) == [x * x for x in range(10)]
        assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
        assert list(pool.imap(square, range(5))) == [0, 1, 4, 9, 16]
        assert sorted(pool.imap_unordered(square, range(5))) == [0, 1, 4, 9, 16]
        assert pool.apply(add, (2, 3)) == 5
        result = pool.apply_async(add, (4,), {"b": 5})
        assert result.get(timeout=30) == 9 and result.ready() and result.successful()
        assert pool.map_async(square, [1, 2, 3]).get(timeout=30) == [1, 4, 9]


def test_errors_come_back_as_raised_and_a_closed_pool_refuses_work(cluster) -> None:
    from runtime.util.multiprocessing import Pool

    def boom(x):
        raise ValueError(f"bad input {x}")

    pool = Pool(2)
    with pytest.raises(ValueError, match="bad input 3"):
        pool.map(boom, [3])
    failing = pool.apply_async(boom, (4,))
    failing.wait(30)
    assert failing.ready() and not failing.successful()
    pool.close()
    with pytest.raises(ValueError, match="closed"):
        pool.apply(boom, (1,))
    pool.join()


def test_the_initializer_runs_in_every_process(cluster) -> None:
    from runtime.util.multiprocessing import Pool

    def remember(value):
        import os

        os.environ["POOL_TEST_OFFSET"] = str(value)

    def with_offset(x):
        import os

        return x + int(os.environ["POOL_TEST_OFFSET"])

    with Pool(2, initializer=remember, initargs=(100,)) as pool:
        assert pool.map(with_offset, range(4), chunksize=1) == [100, 101, 102, 103]
