"""ServiceContext.derived: values derived from immutable artifacts, computed once per key."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def test_derived_values_are_computed_once_and_evicted_least_recently_used(ctx):
    calls = []
    lock = threading.Lock()

    def slow(value):
        def compute():
            with lock:
                calls.append(value)
            time.sleep(0.05)
            return value
        return compute

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ctx.derived(("map", "m1", "c1"), slow("v1")), range(4)))
    assert results == ["v1"] * 4 and calls == ["v1"]  # concurrent callers share one computation
    ctx.derived_cache_size = 2
    ctx.derived(("map", "m2", "c2"), slow("v2"))
    ctx.derived(("map", "m1", "c1"), slow("again"))  # still cached; now the most recent
    ctx.derived(("map", "m3", "c3"), slow("v3"))  # evicts m2
    assert ctx.derived(("map", "m1", "c1"), slow("again")) == "v1"
    assert ctx.derived(("map", "m2", "c2"), slow("v2 again")) == "v2 again"
    assert calls == ["v1", "v2", "v3", "v2 again"]
